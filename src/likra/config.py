"""Typed configuration: dataclasses with the spec's defaults, overridable from YAML and the CLI."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from likra.data.examples import FEWSHOT_SEED
from likra.errors import LikraError
from likra.model.heads import LoraSettings
from likra.training.trainer import TrainSettings

DEFAULT_EVAL_MODES = ["base", "sft", "likra", "negbase"]


@dataclass
class TrainConfig:
    """`likra train`: both heads on one base model, same questions, one negative per question."""

    model: str = "smollm2-135m"
    data: str = "arc-train"
    source: str = "auto"
    limit: int | None = None
    negatives: str = "one"
    negative_seed: int = 0
    dtype: str = "auto"
    out: str | None = None
    overwrite: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


@dataclass
class EvalConfig:
    """`likra eval`: every head run once, every mode derived from the cached log-likelihoods."""

    run: str | None = None
    model: str | None = None
    data: str = "arc_challenge:validation"
    source: str = "auto"
    modes: list[str] = field(default_factory=lambda: list(DEFAULT_EVAL_MODES))
    weight: float = 1.0
    shots: int = 0
    fewshot_data: str | None = None
    fewshot_seed: int = FEWSHOT_SEED
    limit: int | None = None
    dtype: str = "auto"
    batch_tokens: int | None = None
    out: str | None = None


def _coerce(value: Any, hint: Any, where: str):
    """`value` converted to the type `hint` names (YAML reads `1e-4` as a string), or a LikraError."""
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise LikraError(f"{where}: expected a mapping, got {value!r}")
        return update_dataclass(hint(), value, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _coerce(value, option, where)
            except LikraError:
                continue
        raise LikraError(f"{where}: expected {' or '.join(_name(a) for a in args)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise LikraError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise LikraError(f"{where}: expected {_name(hint)}, got {value!r}")


def _name(hint) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def update_dataclass(obj, values: dict, where: str = "config"):
    """Set the fields of `obj` named in `values` (nested dicts for nested dataclasses); unknown keys fail."""
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise LikraError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            update_dataclass(current, value, f"{where}.{key}")
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{where}.{key}"))
    return obj


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LikraError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise LikraError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise LikraError(f"{path}: the top level must be a mapping")
    return data

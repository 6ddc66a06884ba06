"""One configuration story: settings are dataclasses whose fields carry their help text; command-line flags,
YAML keys and validation all come from those fields.

- `settings` makes a dataclass a settings class: unknown keys, NaN and infinity are refused.
- `option(default, help=...)` declares a field with its help text (and extra flag spellings, choices).
- Ranges live on the type: `batch_size: PositiveInt`, `contamination: Fraction`.
- `add_flags(parser, cls)` turns the fields into flags (`--batch-size`, nested `--lora-r`, ...).
- `config_from_args(cls, args)` merges defaults, the `--config` YAML file and the given flags, and
  validates the result; `check(cfg)` re-validates a settings object built in Python.

Validation is pydantic's (v2, a dependency of the HF/lm-eval stack already): it validates plain nested
dataclasses in place, converts what YAML leaves as strings (`1e-4`, `"8"`) in its lax mode, enforces the
ranges declared on the types, and names the offending key (`train.batch_size`), which the one-line
`likra: error:` needs. transformers' `HfArgumentParser` was the other candidate; it neither nests
dataclasses (`lora:`, `train:`) nor converts YAML values, so likra would have kept a coercer of its own.
This module imports nothing of likra's above `errors` and `limits`, so every layer may declare settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from likra.errors import LikraError

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]

_PYDANTIC = ConfigDict(extra="forbid", allow_inf_nan=False)


def settings(cls: type) -> type:
    """`@settings` = `@dataclass` that refuses unknown keys, NaN and infinity when validated."""
    cls = dataclass(cls)
    cls.__pydantic_config__ = _PYDANTIC
    return cls


def option(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Any = MISSING,
    flags: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
    cli: bool = True,
    prefix: str | None = None,
) -> Any:
    """A settings field. `flags`: extra spellings (`--lr`); `cli=False`: YAML only; `prefix`: for a nested
    settings field, the prefix of its flags (default `<field>-`, e.g. `--lora-r`)."""
    metadata = {"help": help, "flags": flags, "choices": choices, "cli": cli, "prefix": prefix}
    return field(default=default, default_factory=default_factory, metadata=metadata)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_settings(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _is_list(hint: Any) -> bool:
    if typing.get_origin(hint) is list:
        return True
    return any(typing.get_origin(a) is list for a in typing.get_args(hint))


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _is_bool(hint: Any) -> bool:
    """bool, or bool | None (a tri-state flag: --x, --no-x, or not given)."""
    return hint is bool or set(typing.get_args(hint)) == {bool, type(None)}


def default_of(cls: type, name: str) -> Any:
    """The default value of setting `name` of the settings class `cls` (MISSING where it has none)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return _field_default(f)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def _default_text(value: Any) -> str:
    if value is MISSING:
        return ""
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return "" if value is None or value == "" else f" (default: {value})"


@dataclass(frozen=True)
class Flag:
    """One generated flag: its spellings, the key path it sets, and the field it comes from."""

    names: tuple[str, ...]
    path: tuple[str, ...]
    field: dataclasses.Field
    hint: Any
    dest: str
    default: Any = MISSING  # the enclosing section's default (a DPO head's LoRA is not the MLE heads' LoRA)

    @property
    def is_list(self) -> bool:
        return _is_list(self.hint)


def flags_of(
    cls: type,
    prefix: str = "",
    _path: tuple[str, ...] = (),
    _flag_prefix: str | None = None,
    _defaults: Any = None,
) -> list[Flag]:
    """The flags of every field of `cls`, nested settings flattened with their prefix; `prefix` goes before
    every flag (`dpo-` makes `--dpo-beta`) and keeps their destinations apart from other settings'. A nested
    field's default is its enclosing section's (`_defaults`: that section's default instance)."""
    flag_prefix = prefix if _flag_prefix is None else _flag_prefix
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        default = getattr(_defaults, f.name) if _defaults is not None else _field_default(f)
        if _is_settings(hint):
            if not f.metadata.get("cli", True):
                continue
            sub = f.metadata.get("prefix")
            inner = default if dataclasses.is_dataclass(default) else None
            out += flags_of(
                hint, prefix, _path + (f.name,), flag_prefix + (f"{f.name}-" if sub is None else sub), inner
            )
        elif f.metadata.get("cli", True):
            # Extra spellings live under the same prefix: `--lr` of a settings class flagged `dpo-` is `--dpo-lr`.
            aliases = tuple(
                a if a.startswith(f"--{flag_prefix}") else f"--{flag_prefix}{a[2:]}"
                for a in f.metadata.get("flags", ())
            )
            out.append(
                Flag(
                    (f"--{flag_prefix}{f.name.replace('_', '-')}", *aliases),
                    _path + (f.name,),
                    f,
                    hint,
                    prefix + "__".join(_path + (f.name,)),
                    default,
                )
            )
    return out


def add_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One flag per field of `cls`; values stay strings and are validated with the rest of the configuration."""
    for flag in flags_of(cls, prefix):
        dest = flag.dest
        text = flag.field.metadata.get("help", "") + _default_text(flag.default)
        if _is_bool(flag.hint):
            parser.add_argument(*flag.names, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            choices = flag.field.metadata.get("choices")
            if choices:
                metavar = "{" + ",".join(choices) + "}" + ("[,...]" if flag.is_list else "")
            else:
                metavar = "A,B,..." if flag.is_list else flag.path[-1].upper()
            # a list flag's value is "a,b": its items are checked against the choices after splitting
            choices = None if flag.is_list else choices
            parser.add_argument(*flag.names, dest=dest, default=None, metavar=metavar, choices=choices, help=text)


def flag_values(cls: type, args: argparse.Namespace, prefix: str = "") -> tuple[dict, dict[tuple[str, ...], str]]:
    """(nested dict of the flags that were given, key path -> flag spelling for messages)."""
    values: dict = {}
    names = {}
    given = vars(args)
    for flag in flags_of(cls, prefix):
        value = given.get(flag.dest)
        if value is None:
            continue
        if flag.is_list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif (
            isinstance(value, str)
            and value.strip().lower() in ("none", "null")
            and _optional(flag.hint)
            and value.strip() not in (flag.field.metadata.get("choices") or ())  # a choice named none is a value
        ):
            value = None
        node = values
        for key in flag.path[:-1]:
            node = node.setdefault(key, {})
        node[flag.path[-1]] = value
        names[flag.path] = flag.names[0]
    return values, names


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, nested mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _with_section_defaults(cls: type, values: dict) -> dict:
    """`values` with every nested section given in part completed from that field's default instance, not from
    its class: `--dpo-lora-r 4` keeps the DPO adapter's other LoRA settings (alpha, modules), not the MLE heads'."""
    out = dict(values)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        given = out.get(f.name)
        if not (isinstance(given, dict) and _is_settings(hints[f.name])):
            continue
        default = _field_default(f)
        if dataclasses.is_dataclass(default):
            given = merge(dataclasses.asdict(default), given)
        out[f.name] = _with_section_defaults(hints[f.name], given)
    return out


def _valid_keys(cls: type, loc: tuple) -> list[str]:
    for key in loc[:-1]:
        hint = _hints(cls).get(key) if isinstance(key, str) else None
        if not _is_settings(hint):
            return []
        cls = hint
    return sorted(f.name for f in dataclasses.fields(cls))


def _check_choices(obj: Any, where: str, flag_names: dict, path: tuple[str, ...] = ()) -> None:
    """Refuse a value (or an item of a list) outside a field's `choices` (flags of single values are checked by
    argparse; lists, YAML and Python here)."""
    from likra.limits import shorten

    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_choices(value, where, flag_names, path + (f.name,))
            continue
        choices = f.metadata.get("choices")
        for item in value if isinstance(value, list) else [value]:
            if choices and item is not None and item not in choices:
                key = flag_names.get(path + (f.name,)) or ".".join(path + (f.name,))
                raise LikraError(f"{where}{key}: {shorten(repr(item))} is not one of {', '.join(map(str, choices))}")


def _accepts_bool(hint: Any) -> bool:
    if hint is bool or hint is Any:
        return True
    if typing.get_origin(hint) is Annotated:
        return _accepts_bool(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts_bool(a) for a in typing.get_args(hint))
    return False


def _element_hint(hint: Any) -> Any:
    """The element type of a list hint (`list[X]`, `list[X] | None`, ...)."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is list:
            return (typing.get_args(candidate) or (Any,))[0]
    return Any


def _check_plain(cls: type, values: dict, prefix: str, flag_names: dict, path: tuple = ()) -> None:
    """What pydantic's lax mode would let through: a YAML boolean where a number (or text) is expected
    (`batch_size: true` would be 1), and text that is not valid Unicode (a lone surrogate)."""
    from likra.limits import shorten

    hints = _hints(cls)
    for key, value in values.items():
        hint = hints.get(key) if isinstance(key, str) else None
        if hint is None:
            continue  # an unknown key: pydantic names it
        here = path + (key,)
        name = flag_names.get(here) or ".".join(here)
        if _is_settings(hint) and isinstance(value, dict):
            _check_plain(hint, value, prefix, flag_names, here)
            continue
        items, item_hint = (
            (value, _element_hint(hint)) if isinstance(value, list) and _is_list(hint) else ([value], hint)
        )
        for item in items:
            if isinstance(item, bool) and not _accepts_bool(item_hint):
                raise LikraError(
                    f"{prefix}{name}: {str(item).lower()} is a boolean; give a value of this setting's type"
                )
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise LikraError(f"{prefix}{name}: {shorten(ascii(item), 40)} is not valid Unicode text") from None


def validate(cls: type, values: dict, where: str | None, flag_names: dict | None = None) -> Any:
    """An instance of settings class `cls` from a (nested) dict, or a one-line LikraError naming the key
    (after `where`, e.g. the YAML file; None for the command line, whose flags name themselves)."""
    from likra.limits import shorten

    prefix = f"{where}: " if where else ""
    if not isinstance(values, dict):
        raise LikraError(f"{prefix}expected a mapping of settings, got {type(values).__name__}")
    _check_plain(cls, values, prefix, flag_names or {})
    values = _with_section_defaults(cls, values)
    try:
        out = TypeAdapter(cls).validate_python(values)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        path = tuple(k for k in loc if isinstance(k, str))
        key = shorten((flag_names or {}).get(path) or ".".join(map(str, loc)) or "value")
        if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            valid = _valid_keys(cls, loc)
            raise LikraError(
                f"{prefix}unknown key {shorten(repr('.'.join(map(str, loc))))}"
                + (f"; valid keys: {', '.join(valid)}" if valid else "")
            ) from None
        raise LikraError(
            f"{prefix}{key}: {shorten(err['msg'].lower())}, got {shorten(repr(err.get('input')))}"
        ) from None
    _check_choices(out, prefix, flag_names or {})
    return out


def check(cfg: Any) -> Any:
    """Re-validate a settings object built in Python (ranges, finite numbers); returns it."""
    validate(type(cfg), dataclasses.asdict(cfg), type(cfg).__name__)
    return cfg


def load_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping, read within `likra.limits` (size, nesting, aliases, duplicate keys)."""
    from likra.limits import MAX_YAML_BYTES, mib, parse_yaml

    path = Path(path)
    if not path.is_file():
        raise LikraError(f"{path}: no such config file")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise LikraError(f"{path}: a config file of more than {mib(MAX_YAML_BYTES)}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise LikraError(f"{path}: not a UTF-8 text file") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LikraError(f"{path}: the top level must be a mapping")
    return data


def config_from_args(
    cls: type, args: argparse.Namespace, yaml_values: dict | None = None, prefix: str = "", where: str | None = None
) -> Any:
    """Defaults, then the YAML file (`args.config`, or `yaml_values` already read; `where` names it in
    messages), then the given flags (those made by `add_flags(parser, cls, prefix)`)."""
    if yaml_values is None:
        yaml_values = load_yaml(args.config) if getattr(args, "config", None) else {}
    if yaml_values:
        validate(cls, yaml_values, where or str(getattr(args, "config", None) or "config"))
    flags, names = flag_values(cls, args, prefix)
    return validate(cls, merge(yaml_values, flags), None, names)

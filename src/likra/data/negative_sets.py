"""Negative sets as a registry, and the data recipe each head names: resolved once, built once, recorded as built.

A head's data (`--heads name=objective:<data>`, YAML `heads: [{name, objective, data}]`) is

    data   := 'gold' | ('negatives' | 'pairs') ':' set ['?' param ('&' param)*]
    param  := key '=' value

`gold` is the correct answers; `negatives:<set>` a negative set; `pairs:<set>` gold against that set (preference
objectives). Examples: `negatives:random_question`, `negatives:near_miss?contamination=0.25`,
`pairs:other_benchmark?pool=mmlu/anatomy:test`. Every set takes `contamination` (the fraction of its
negatives replaced by the questions' gold answers, nested across rates: `negatives.contaminate`); a set's own
parameters are listed by `likra info` (e.g. `negatives:near_miss?per_question=all`). Unknown sets, parameters and
values are one line before anything loads.

A set is data: its name, help, its own parameters (name -> (type, default, help)), and a builder
`build(records, seed, inputs, params) -> pairs`; `register_negative_set` adds one from any file or plug-in. What a
set needs from the layers above (another benchmark's records, the base model's choice scores) comes through
`SetInputs`, so the builders stay pure and seeded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from likra.data.negatives import (
    PER_QUESTION,
    Pairs,
    contaminate,
    near_miss,
    other_benchmark,
    random_other_question,
    ranked_distractor,
)
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.io import slug
from likra.limits import shorten
from likra.registry import Registry, caller_origin

DATA_KINDS = ("gold", "negatives", "pairs")
DEFAULT_POOL = "hellaswag:validation"


@dataclass(frozen=True)
class SetInputs:
    """What a set may need from the layers above, asked for only when a set needs it: `load_pool(spec)` the records
    of another benchmark; `base_scores(records)` the base model's score of every choice (per character, acc_norm's
    convention)."""

    load_pool: Callable[[str], Sequence[MCRecord]] | None = None
    base_scores: Callable[[Sequence[MCRecord]], Sequence[np.ndarray]] | None = None

    def pool(self, spec: str) -> Sequence[MCRecord]:
        if self.load_pool is None:
            raise LikraError(f"negatives from {spec!r} need another benchmark's records, and none can be loaded here")
        return self.load_pool(spec)

    def scores(self, records: Sequence[MCRecord]) -> Sequence[np.ndarray]:
        if self.base_scores is None:
            raise LikraError("mined negatives (hardest, easiest) need the base model's scores, and none are at hand")
        return self.base_scores(records)


@dataclass(frozen=True)
class NegativeSet:
    """A kind of negative: `build(records, seed, inputs, params)` returns one (record, text) pair per question
    (more for near_miss with per_question=all), aligned with `records`; `params` maps each of its own parameters to
    (type: float, int, str or a tuple of the allowed strings; default; help)."""

    name: str
    help: str
    build: Callable[[Sequence[MCRecord], int, SetInputs, Mapping[str, Any]], Pairs]
    params: Mapping[str, tuple[Any, Any, str]] = field(default_factory=dict)


NEGATIVE_SETS: Registry[NegativeSet] = Registry("negative set", NegativeSet)
# Taken by every set: applied to what the set built.
COMMON_PARAMS: dict[str, tuple[type, Any, str]] = {
    "contamination": (float, 0.0, "fraction of the negatives replaced by the questions' gold answers (0-1)"),
}


def register_negative_set(negative_set: NegativeSet) -> NegativeSet:
    """Add a negative set (a plug-in's too); a name registered twice names both origins."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", negative_set.name):
        raise LikraError(f"negative set name {negative_set.name!r} must be letters, digits and '_'")
    clash = set(negative_set.params) & set(COMMON_PARAMS)
    if clash:
        raise LikraError(f"negative set {negative_set.name!r}: parameter(s) {sorted(clash)} are every set's own")
    NEGATIVE_SETS.register(negative_set.name, negative_set, caller_origin())
    return negative_set


def _parse_value(set_name: str, key: str, kind: type | tuple[str, ...], text: str) -> Any:
    where = f"negatives:{set_name} parameter {key}"
    if isinstance(kind, tuple):
        if text not in kind:
            raise LikraError(f"{where}: {shorten(repr(text))} is not one of {', '.join(kind)}")
        return text
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise LikraError(f"{where}: {shorten(repr(text))} is not a number") from None
        if not math.isfinite(value):
            raise LikraError(f"{where}: {text!r} is not a finite number")
        if key == "contamination" and not 0 <= value <= 1:
            raise LikraError(f"{where}: {text!r} is not a fraction in [0, 1]")
        return value
    if kind is int:
        if not re.fullmatch(r"-?\d+", text):
            raise LikraError(f"{where}: {shorten(repr(text))} is not an integer")
        return int(text)
    if not text:
        raise LikraError(f"{where}: give a value")
    return text


@dataclass(frozen=True)
class DataRecipe:
    """A head's training data, resolved: its kind, its negative set, and every parameter of that set with the value
    used (defaults included), in the set's order."""

    kind: str
    set: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def negatives(self) -> DataRecipe | None:
        """The negative set this recipe draws on (as a `negatives:` recipe; `pairs:` share it), or None for gold."""
        return None if self.set is None else DataRecipe("negatives", self.set, self.params)

    @property
    def spec(self) -> str:
        """The canonical text: the kind, the set, and the parameters that differ from their defaults."""
        if self.set is None:
            return self.kind
        defaults = {k: d for k, (_, d, _) in all_params(NEGATIVE_SETS[self.set]).items()}
        given = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params if v != defaults.get(k)]
        return f"{self.kind}:{self.set}" + ("?" + "&".join(given) if given else "")

    @property
    def variant(self) -> str | None:
        """The set's name in folder and file names (as curve folders of earlier versions named it): the set, the
        pool of other_benchmark, the contamination rate when there is one."""
        if self.set is None:
            return None
        values = self.values
        name = self.set + (f"-{slug(values['pool'])}" if "pool" in values else "")
        return name + (f"-contaminated{values['contamination']:g}" if values.get("contamination") else "")

    def to_json(self) -> dict:
        return {"kind": self.kind, **({"set": self.set, "params": self.values} if self.set else {})}


def all_params(negative_set: NegativeSet) -> dict[str, tuple[Any, Any, str]]:
    return {**negative_set.params, **COMMON_PARAMS}


def describe_set(negative_set: NegativeSet) -> str:
    """`name(param=default, ...)` for `likra info` (every set also takes contamination=0)."""
    own = ", ".join(f"{k}={d}" for k, (_, d, _) in negative_set.params.items())
    return f"{negative_set.name}({own})" if own else negative_set.name


def parse_recipe(data: str, defaults: Mapping[str, Any] | None = None) -> DataRecipe:
    """The recipe of a head's `data` text (grammar in the module docstring), every parameter resolved; `defaults`
    overrides the sets' own defaults (a curve's --negative-pool and --contamination for its sets)."""
    if not isinstance(data, str) or not data.strip():
        raise LikraError(f"head data must be gold, negatives:<set> or pairs:<set>, got {shorten(repr(data))}")
    text = data.strip()
    kind, colon, rest = text.partition(":")
    if kind not in DATA_KINDS or (kind == "gold") == bool(colon):
        raise LikraError(
            f"head data {shorten(repr(text))}: write gold, negatives:<set> or pairs:<set> "
            f"(sets: {', '.join(NEGATIVE_SETS.names())})"
        )
    if kind == "gold":
        return DataRecipe("gold")
    name, question, query = rest.partition("?")
    if name not in NEGATIVE_SETS:
        raise LikraError(
            f"head data {shorten(repr(text))}: unknown negative set {shorten(repr(name))}; "
            f"known: {', '.join(NEGATIVE_SETS.names())}"
        )
    negative_set = NEGATIVE_SETS[name]
    accepted = all_params(negative_set)
    values = {k: d for k, (_, d, _) in accepted.items()}
    values.update({k: v for k, v in (defaults or {}).items() if k in accepted})
    if question:
        if not query:
            raise LikraError(f"head data {shorten(repr(text))}: nothing after '?' (write key=value&key=value)")
        seen = set()
        for part in query.split("&"):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise LikraError(f"head data {shorten(repr(text))}: {shorten(repr(part))} is not key=value")
            if key not in accepted:
                raise LikraError(
                    f"head data {shorten(repr(text))}: negative set {name!r} takes no parameter {shorten(repr(key))}; "
                    f"it takes {', '.join(accepted)}"
                )
            if key in seen:
                raise LikraError(f"head data {shorten(repr(text))}: parameter {key!r} is given twice")
            seen.add(key)
            values[key] = _parse_value(name, key, accepted[key][0], value)
    return DataRecipe(kind, name, tuple((k, values[k]) for k in accepted))


def build_set(recipe: DataRecipe, records: Sequence[MCRecord], seed: int, inputs: SetInputs = SetInputs()) -> Pairs:
    """The negative pairs of `recipe`'s set for `records`, drawn with `seed`, contaminated as it says."""
    if recipe.set is None:
        raise LikraError("gold data has no negative set")
    values = recipe.values
    pairs = NEGATIVE_SETS[recipe.set].build(records, seed, inputs, values)
    if values.get("contamination"):
        pairs, _ = contaminate(records, pairs, values["contamination"], seed)
    return pairs


register_negative_set(
    NegativeSet(
        "near_miss",
        "another choice of the same question (the paper's near-misses)",
        lambda records, seed, inputs, p: near_miss(records, seed, p["per_question"]),
        {"per_question": (PER_QUESTION, "one", "one incorrect choice per question, or all of them")},
    )
)
register_negative_set(
    NegativeSet(
        "random_question",
        "a choice of a random other question of the same data (implausible negatives)",
        lambda records, seed, inputs, p: random_other_question(records, seed),
    )
)
register_negative_set(
    NegativeSet(
        "other_benchmark",
        "a choice of a random record of another benchmark (far negatives)",
        lambda records, seed, inputs, p: other_benchmark(records, inputs.pool(p["pool"]), seed),
        {"pool": (str, DEFAULT_POOL, "the data spec of the other benchmark")},
    )
)
register_negative_set(
    NegativeSet(
        "hardest",
        "the incorrect choice the base model scores highest per character (second-best)",
        lambda records, seed, inputs, p: ranked_distractor(records, inputs.scores(records), hardest=True),
    )
)
register_negative_set(
    NegativeSet(
        "easiest",
        "the incorrect choice the base model scores lowest per character (worst)",
        lambda records, seed, inputs, p: ranked_distractor(records, inputs.scores(records), hardest=False),
    )
)

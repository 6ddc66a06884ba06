"""Score modes: weighted combinations of per-head summed answer log-likelihoods (never renormalised).

A mode is data: a list of terms (coefficient, head, whether the negative weight w scales it), a label and a
colour for figures, and the head whose greedy flags stand for the mode's. The registry holds the paper's
modes; `register_mode` adds one (from any file); `--modes` also takes expressions over head names, e.g.
`positive-0.5*negative`, `base-w*negative_random_question` or `dpo-base`:

    expression := ['+'|'-'] term (('+'|'-') term)*
    term       := [number '*'] ['w' '*'] head

A coefficient is a plain decimal number of at most `MAX_COEFFICIENT` (1e6): larger ones only overflow scores.

Every mode is computed from one pass per head; nothing here knows what a head was trained on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from likra.errors import LikraError
from likra.limits import shorten
from likra.model.heads import BASE
from likra.registry import Registry, caller_origin


@dataclass(frozen=True)
class Term:
    coefficient: float
    head: str
    weighted: bool = False  # multiplied by the negative weight w


@dataclass(frozen=True)
class Mode:
    """score = sum of coefficient (x w where weighted) x log p_head, per choice."""

    name: str
    terms: tuple[Term, ...]
    label: str = ""
    color: str | None = None

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.head for t in self.terms))

    @property
    def weighted(self) -> bool:
        """Whether the mode weighs a head by w (`--weight`): likra, negbase, expressions with `w*`."""
        return any(t.weighted for t in self.terms)

    @property
    def greedy_head(self) -> str:
        """The head whose greedy flags the mode reports (its first head)."""
        return self.terms[0].head

    def score(self, ll: Mapping[str, np.ndarray], weight: float = 1.0) -> np.ndarray:
        """Per-choice score of one question; `ll` maps head -> summed log-likelihoods of its choices."""
        total = None
        for t in self.terms:
            c = t.coefficient * weight if t.weighted else t.coefficient
            value = ll[t.head] if c == 1 else c * ll[t.head]
            total = value if total is None else total + value
        return total


MODES: Registry[Mode] = Registry("mode", Mode)


def register_mode(mode: Mode) -> Mode:
    """Add `mode` to the registry (a name registered twice is an error naming both origins); returns it."""
    MODES.register(mode.name, mode, caller_origin())
    return mode


for _mode in (
    Mode("base", (Term(1, BASE),), "base model", "gray"),
    Mode("sft", (Term(1, "positive"),), "SFT (positive head)", "tab:blue"),
    Mode("likra", (Term(1, "positive"), Term(-1, "negative", True)), "Likra (pos - neg)", "tab:red"),
    Mode("negbase", (Term(1, BASE), Term(-1, "negative", True)), "Base-Likra (base - neg)", "tab:green"),
    Mode("pos_base", (Term(1, "positive"), Term(-1, BASE)), "pos - base", "tab:purple"),
):
    register_mode(_mode)

MAX_COEFFICIENT = 1e6
_TERM = re.compile(r"\s*([+-])?\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?(?:(w)\s*\*\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*")


def parse_expression(text: str) -> Mode:
    """A mode from an expression over head names (see the module docstring)."""
    pos, terms = 0, []
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None or match.end() == pos or (terms and not match.group(1)):
            raise LikraError(
                f"mode {shorten(repr(text))}: cannot read it after {shorten(repr(text[:pos]))}; write a registered "
                f"mode ({', '.join(MODES)}) or an expression like positive-0.5*negative"
            )
        sign, number, w, head = match.groups()
        if head == "w":
            raise LikraError(f"mode {shorten(repr(text))}: 'w' is the negative weight, not a head")
        coefficient = float(number) if number else 1.0
        if not math.isfinite(coefficient) or coefficient > MAX_COEFFICIENT:
            raise LikraError(
                f"mode {shorten(repr(text))}: coefficient {shorten(number, 24)} is out of range; "
                "a coefficient is a decimal number from 0 to 1e6"
            )
        terms.append(Term(-coefficient if sign == "-" else coefficient, head, bool(w)))
        pos = match.end()
    if not terms:
        raise LikraError("empty mode")
    return Mode(text.replace(" ", ""), tuple(terms), text.replace(" ", ""))


def get_mode(name: str) -> Mode:
    """A registered mode, or the mode an expression describes."""
    return MODES.get(name) if name in MODES else parse_expression(name)


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """The mode names, each known or a valid expression; a LikraError otherwise."""
    if not modes:
        raise LikraError(f"no modes given; choose from {', '.join(MODES)} or expressions over head names")
    for m in modes:
        get_mode(m)
    return tuple(modes)


def check_heads(modes: Sequence[str], heads: Sequence[str], where: str = "the model") -> None:
    """One line when a mode needs a head that `heads` lacks; a bare word that is neither a registered mode nor one of
    the heads is called an unknown mode (a plug-in's mode given without its plug-in)."""
    have = set(heads) | {BASE}
    for mode in modes:
        missing = [h for h in get_mode(mode).heads if h not in have]
        if not missing:
            continue
        named = ", ".join(sorted(have - {BASE})) or "none"
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", mode) and mode not in MODES:
            raise LikraError(
                f"unknown mode {mode!r}: not a registered mode ({', '.join(MODES)}) nor a head of {where} ({named});"
                " a plug-in's mode needs its --plugin"
            )
        hint = " (give --modes naming its heads, e.g. a head's name or positive-w*<head>)" if mode in MODES else ""
        raise LikraError(f"mode {mode!r} needs head(s) {', '.join(missing)}; {where} has {named}{hint}")


def heads_for(modes: Sequence[str]) -> tuple[str, ...]:
    """The heads to run (each once) so that every mode in `modes` can be computed; base first."""
    needed = dict.fromkeys(h for m in check_modes(modes) for h in get_mode(m).heads)
    return tuple(sorted(needed, key=lambda h: h != BASE))


def mode_score(mode: str, ll: Mapping[str, np.ndarray], weight: float = 1.0) -> np.ndarray:
    """Per-choice score of one question in mode `mode` (a name or an expression)."""
    found = get_mode(mode)
    missing = [h for h in found.heads if h not in ll]
    if missing:
        raise LikraError(f"mode {mode!r} needs head(s) {', '.join(missing)}; scored: {', '.join(ll)}")
    return found.score(ll, weight)


def question_scores(mode: str, per_head: Mapping[str, Sequence[np.ndarray]], weight: float = 1.0) -> list[np.ndarray]:
    """`mode_score` for every question of `per_head` ({head: [per-question arrays]})."""
    found = get_mode(mode)
    missing = [h for h in found.heads if h not in per_head]
    if missing:
        raise LikraError(f"mode {mode!r} needs head(s) {', '.join(missing)}; scored: {', '.join(per_head)}")
    n = len(next(iter(per_head.values())))
    return [found.score({h: per_head[h][i] for h in found.heads}, weight) for i in range(n)]


def mode_label(name: str) -> str:
    found = MODES.get(name) if name in MODES else None
    return found.label if found and found.label else name


def mode_color(name: str) -> str | None:
    return MODES.get(name).color if name in MODES else None

"""Score modes: pure functions of per-head summed answer log-likelihoods (never renormalised)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from likra.errors import LikraError
from likra.model.heads import BASE, NEGATIVE, POSITIVE

MODE_HEADS: dict[str, tuple[str, ...]] = {
    "base": (BASE,),
    "sft": (POSITIVE,),
    "likra": (POSITIVE, NEGATIVE),
    "negbase": (BASE, NEGATIVE),
    "pos_base": (POSITIVE, BASE),
}
MODES = tuple(MODE_HEADS)


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in modes if m not in MODE_HEADS]
    if unknown:
        raise LikraError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    return tuple(modes)


def heads_for(modes: Sequence[str]) -> tuple[str, ...]:
    """The heads to run (each once) so that every mode in `modes` can be computed."""
    needed = {h for m in check_modes(modes) for h in MODE_HEADS[m]}
    return tuple(h for h in (BASE, POSITIVE, NEGATIVE) if h in needed)


def mode_score(mode: str, ll: Mapping[str, np.ndarray], weight: float = 1.0) -> np.ndarray:
    """Per-choice score of one question: `ll` maps head -> summed log-likelihoods of its choices.

    likra = pos - w*neg; negbase = base - w*neg; sft = pos; base = base; pos_base = pos - base."""
    if mode == "base":
        return ll[BASE]
    if mode == "sft":
        return ll[POSITIVE]
    if mode == "likra":
        return ll[POSITIVE] - weight * ll[NEGATIVE]
    if mode == "negbase":
        return ll[BASE] - weight * ll[NEGATIVE]
    if mode == "pos_base":
        return ll[POSITIVE] - ll[BASE]
    raise LikraError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def question_scores(mode: str, per_head: Mapping[str, Sequence[np.ndarray]], weight: float = 1.0) -> list[np.ndarray]:
    """`mode_score` for every question of `per_head` ({head: [per-question arrays]})."""
    n = len(next(iter(per_head.values())))
    return [mode_score(mode, {h: v[i] for h, v in per_head.items()}, weight) for i in range(n)]

"""Accuracy metrics over multiple-choice scores: acc and acc_norm, tie-aware, with 95% intervals."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Metric:
    """Mean of per-question credits with its standard error and a normal 95% interval."""

    value: float
    n: int
    stderr: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict:
        return asdict(self)


def tie_credit(scores: np.ndarray, gold: int) -> float:
    """1/k if the gold choice is among the k choices sharing the top score, else 0."""
    top = np.flatnonzero(scores == scores.max())
    return 1.0 / len(top) if gold in top else 0.0


def summarise(credits: Sequence[float]) -> Metric:
    credits = np.asarray(credits, dtype=np.float64)
    n = len(credits)
    if n == 0:
        return Metric(float("nan"), 0, float("nan"), float("nan"), float("nan"))
    mean = float(credits.mean())
    stderr = float(credits.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return Metric(mean, n, stderr, max(0.0, mean - Z95 * stderr), min(1.0, mean + Z95 * stderr))


def accuracy(scores: Sequence[np.ndarray], golds: Sequence[int]) -> Metric:
    """acc: argmax of the summed score, ties shared."""
    return summarise([tie_credit(np.asarray(s), g) for s, g in zip(scores, golds)])


def accuracy_norm(scores: Sequence[np.ndarray], golds: Sequence[int], choice_texts: Sequence[Sequence[str]]) -> Metric:
    """acc_norm: argmax of score / character length of the choice text (lm-eval's convention)."""
    normed = [
        np.asarray(s) / np.array([max(len(c), 1) for c in texts], dtype=np.float64)
        for s, texts in zip(scores, choice_texts)
    ]
    return accuracy(normed, golds)

"""Accuracy metrics over multiple-choice scores: acc and acc_norm, tie-aware, with 95% intervals.

An accuracy is a proportion, so its interval is Wilson's score interval (it stays inside [0, 1] and does not
collapse to a point at 0 or 1 on small sets, as the normal "Wald" interval does); the standard error beside it
is the sample one, as lm-eval reports it. A question whose gold choice shares the top score with k-1 others
counts 1/k, so the proportion is the mean credit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from likra.data.records import MCRecord
from likra.scoring.modes import question_scores

Z95 = 1.959963984540054
METRICS = ("acc", "acc_norm")


@dataclass(frozen=True)
class Metric:
    """Mean of per-question credits with its standard error and Wilson's 95% score interval."""

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


def wilson_interval(proportion: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion observed over `n` trials (scipy's
    `binomtest(k, n).proportion_ci(method="wilson")` for k = proportion * n)."""
    if n <= 0:
        return float("nan"), float("nan")
    z2 = z * z
    centre = (proportion + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(max(proportion * (1 - proportion), 0.0) / n + z2 / (4 * n * n))
    # The interval always holds the observed proportion (rounding at 0 and 1 could leave it a hair outside).
    return max(0.0, min(centre - half, proportion)), min(1.0, max(centre + half, proportion))


def summarise(credits: Sequence[float]) -> Metric:
    """The mean credit (an accuracy), its sample standard error and its Wilson 95% interval."""
    credits = np.asarray(credits, dtype=np.float64)
    n = len(credits)
    if n == 0:
        return Metric(float("nan"), 0, float("nan"), float("nan"), float("nan"))
    mean = float(credits.mean())
    stderr = float(credits.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return Metric(mean, n, stderr, *wilson_interval(mean, n))


def credits(scores: Sequence[np.ndarray], golds: Sequence[int]) -> np.ndarray:
    """Per-question credit of the argmax (1, 0, or 1/k when the gold shares the top score with k-1 others)."""
    return np.array([tie_credit(np.asarray(s), g) for s, g in zip(scores, golds)], dtype=np.float64)


def accuracy(scores: Sequence[np.ndarray], golds: Sequence[int]) -> Metric:
    """acc: argmax of the summed score, ties shared."""
    return summarise([tie_credit(np.asarray(s), g) for s, g in zip(scores, golds)])


def accuracy_norm(scores: Sequence[np.ndarray], golds: Sequence[int], choice_texts: Sequence[Sequence[str]]) -> Metric:
    """acc_norm: argmax of score / character length of the choice text (lm-eval's convention)."""
    return accuracy(per_character(scores, choice_texts), golds)


def per_character(scores: Sequence[np.ndarray], choice_texts: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Each choice's score divided by its character length (at least 1): what acc_norm ranks."""
    return [
        np.asarray(s) / np.array([max(len(c), 1) for c in texts], dtype=np.float64)
        for s, texts in zip(scores, choice_texts)
    ]


def mode_credits(
    per_head: dict[str, list[np.ndarray]], records: Sequence[MCRecord], modes: Sequence[str], weight: float
) -> dict[str, dict[str, np.ndarray]]:
    """{mode: {"acc": per-question credits, "acc_norm": ...}}: what `mode_metrics` summarises, question by question
    (a curve's intervals over seeds and questions need them)."""
    golds = [r.gold for r in records]
    texts = [r.choices for r in records]
    out = {}
    for mode in modes:
        scores = question_scores(mode, per_head, weight)
        out[mode] = {"acc": credits(scores, golds), "acc_norm": credits(per_character(scores, texts), golds)}
    return out


def metrics_of(by_mode: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    """{mode: {"acc": Metric json, "acc_norm": Metric json}} of per-question credits (`mode_credits`)."""
    return {mode: {metric: summarise(c).to_json() for metric, c in of.items()} for mode, of in by_mode.items()}


def mode_metrics(
    per_head: dict[str, list[np.ndarray]], records: Sequence[MCRecord], modes: Sequence[str], weight: float
) -> dict[str, dict]:
    """{mode: {"acc": Metric json, "acc_norm": Metric json}} from cached per-head log-likelihoods."""
    return metrics_of(mode_credits(per_head, records, modes, weight))

"""The statistics a reviewer asks for, as pure functions of per-question scores and credits.

- Paired differences: two modes are scored on the same questions, so their difference is measured per
  question: the mean difference of credits with a paired bootstrap interval (seeded, vectorised) and an
  exact McNemar test on the questions where exactly one of the two is right.
- Trivial baselines: chance (the mean of 1/k), and picking the shortest or the longest answer by characters
  or by tokens, tie-aware like every accuracy here; a gain a length rule also gives is not learning.
- Calibration: a softmax over a question's choice scores (or length-normalised scores) is a probability of
  each choice; expected calibration error (top-label, equal-width bins) and the multi-class Brier score.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.scoring.metrics import METRICS, accuracy, credits, per_character, summarise
from likra.scoring.modes import question_scores

DEFAULT_RESAMPLES = 10_000
DEFAULT_PAIRS = ("likra:sft", "negbase:base", "sft:base")  # mode pairs a:b tested when both are evaluated
ECE_BINS = 15


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-question difference a - b with a paired bootstrap 95% interval and McNemar's exact p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_mcnemar: float
    n: int
    a_only: int  # questions a gets right and b does not
    b_only: int

    def to_json(self) -> dict:
        return asdict(self)


def bootstrap_interval(
    values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, chunk: int = 2_000_000
) -> tuple[float, float]:
    """Percentile 95% interval of the mean of `values` over `resamples` seeded resamples with replacement,
    drawn in chunks so that memory stays bounded for large evaluation sets."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk // n)
    means = []
    for start in range(0, resamples, per_chunk):
        size = min(per_chunk, resamples - start)
        means.append(values[rng.integers(0, n, size=(size, n))].mean(axis=1))
    lo, hi = np.quantile(np.concatenate(means), [0.025, 0.975])
    return float(lo), float(hi)


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[float, int, int]:
    """(two-sided exact p-value, #a right and b wrong, #b right and a wrong): the binomial test of the
    discordant questions against 1/2."""
    a_correct, b_correct = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    a_only, b_only = int((a_correct & ~b_correct).sum()), int((b_correct & ~a_correct).sum())
    n = a_only + b_only
    if n == 0:
        return 1.0, a_only, b_only
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail), a_only, b_only


def paired_difference(
    a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> PairedDifference:
    """a - b over the same questions, from per-question credits (see `credits`); a question counts as right
    for McNemar when its credit is 1 (no shared top score)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired credits need the same questions, got {a.shape} and {b.shape}")
    lo, hi = bootstrap_interval(a - b, resamples, seed)
    p, a_only, b_only = mcnemar_exact(a == 1.0, b == 1.0)
    return PairedDifference(float((a - b).mean()) if len(a) else float("nan"), lo, hi, p, len(a), a_only, b_only)


# -- trivial baselines -----------------------------------------------------------------------------
def length_rule_scores(lengths: Sequence[Sequence[int]], longest: bool) -> list[np.ndarray]:
    """Scores that make the argmax pick the longest (or shortest) choice."""
    sign = 1.0 if longest else -1.0
    return [sign * np.asarray(x, dtype=np.float64) for x in lengths]


def trivial_baselines(
    golds: Sequence[int], choice_texts: Sequence[Sequence[str]], choice_tokens: Sequence[Sequence[int]] | None = None
) -> dict[str, dict]:
    """{rule: Metric json}: chance (mean 1/k) and shortest/longest answer by characters (and by tokens when
    the token counts are given); the same rule serves acc and acc_norm."""
    out = {"chance": summarise([1.0 / len(t) for t in choice_texts]).to_json()}
    units = {"chars": [[len(c) for c in t] for t in choice_texts]}
    if choice_tokens is not None:
        units["tokens"] = [list(t) for t in choice_tokens]
    for unit, lengths in units.items():
        for longest in (False, True):
            rule = f"{'longest' if longest else 'shortest'}_{unit}"
            out[rule] = accuracy(length_rule_scores(lengths, longest), golds).to_json()
    return out


def length_rule_warnings(metrics: dict[str, dict], baselines: dict[str, dict], metric: str = "acc_norm") -> list[str]:
    """One line per mode whose value lies within its own interval of the best length rule's."""
    rules = {k: v for k, v in baselines.items() if k != "chance"}
    if not rules:
        return []
    best_rule, best = max(rules.items(), key=lambda kv: kv[1]["value"])
    lines = []
    for mode, m in metrics.items():
        value = m[metric]
        if value["ci_low"] <= best["value"] <= value["ci_high"] or value["value"] <= best["value"]:
            lines.append(
                f"{mode} {metric} {value['value']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}] is within its "
                f"interval of (or below) the {best_rule.replace('_', ' by ')} rule ({best['value']:.3f})"
            )
    return lines


# -- calibration -------------------------------------------------------------------------------------
def choice_probabilities(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Softmax over each question's choice scores."""
    out = []
    for s in scores:
        s = np.asarray(s, dtype=np.float64)
        e = np.exp(s - s.max())
        out.append(e / e.sum())
    return out


@dataclass(frozen=True)
class Calibration:
    ece: float
    brier: float
    bins: list[dict]  # per bin: lower, upper, count, confidence, accuracy

    def to_json(self) -> dict:
        return asdict(self)


def calibration(probabilities: Sequence[np.ndarray], golds: Sequence[int], n_bins: int = ECE_BINS) -> Calibration:
    """Expected calibration error of the top choice (equal-width confidence bins, weighted by count) and the
    multi-class Brier score (mean over questions of sum_k (p_k - [k = gold])^2)."""
    conf = np.array([p.max() for p in probabilities], dtype=np.float64)
    correct = np.array([float(int(np.argmax(p)) == g) for p, g in zip(probabilities, golds)])
    brier = float(np.mean([((p - np.eye(len(p))[g]) ** 2).sum() for p, g in zip(probabilities, golds)]))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for k in range(n_bins):
        members = which == k
        count = int(members.sum())
        if count:
            gap = abs(conf[members].mean() - correct[members].mean())
            ece += gap * count / len(conf)
        bins.append(
            {
                "lower": float(edges[k]),
                "upper": float(edges[k + 1]),
                "count": count,
                "confidence": float(conf[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return Calibration(float(ece), brier, bins)


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided `level` quantile of Student's t with `df` degrees of freedom (12.71 for df = 1,
    4.30 for 2, 1.96 in the limit)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def across_seeds(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, 95% CI low, high) of per-seed values alone: Student's t interval with n - 1 degrees of freedom on the
    seeds' standard error. It ignores the variation between questions (each seed's value is itself a mean over
    questions): curves use `seeds_and_questions`; this is for a value with no questions behind it."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = t_quantile(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class SeedMean:
    """The mean of per-question values over seeds and questions, with a 95% interval that counts both sources of
    variation; `df`: the degrees of freedom of its t quantile; `seed_share`: the share of the mean's variance that
    comes from seed to seed (0 when the seeds vary no more than their questions' noise explains)."""

    value: float
    ci_low: float
    ci_high: float
    seeds: int
    questions: int
    df: float
    seed_share: float


def seeds_and_questions(values: np.ndarray, bounded: bool = True, level: float = 0.95) -> SeedMean:
    """Mean and interval of `values` (seeds x questions: a credit, or a paired difference of two modes' credits per
    question) over both seeds and questions, which are crossed (every seed answers the same questions).

    The variance of the grand mean is sigma_seed^2/S + sigma_question^2/Q + sigma_residual^2/(SQ), estimated from
    the two-way analysis of variance's mean squares (components below 0 set to 0), with Satterthwaite's degrees of
    freedom for the t quantile (few seeds make it small, and the interval wide). `bounded` (accuracies): the
    interval is made on the logit scale, so it stays inside [0, 1]; else (differences) it is clipped to [-1, 1].
    It has zero width only when every value is the same. One seed: the interval is over questions alone (the
    seed's variation is not measured). Coverage against simulated curves is in tests/test_stats.py."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 1:
        raise LikraError(f"seeds_and_questions needs a seeds x questions array, got shape {x.shape}")
    n_seeds, n_questions = x.shape
    mean = float(x.mean())
    low_end = 0.0 if bounded else -1.0
    if n_questions < 2:  # one question: only the seeds vary
        _, low, high = across_seeds(x[:, 0])
        low, high = (max(low, low_end), min(high, 1.0)) if n_seeds > 1 else (low, high)
        return SeedMean(mean, low, high, n_seeds, n_questions, float(max(n_seeds - 1, 0)), float(n_seeds > 1))
    if n_seeds == 1:
        terms = [(float(x[0].var(ddof=1)), n_questions - 1)]
        seed_part = 0.0
    else:
        seeds, questions = x.mean(axis=1), x.mean(axis=0)
        ms_seed = n_questions * float(((seeds - mean) ** 2).sum()) / (n_seeds - 1)
        ms_question = n_seeds * float(((questions - mean) ** 2).sum()) / (n_questions - 1)
        residual = x - seeds[:, None] - questions[None, :] + mean
        ms_residual = float((residual**2).sum()) / ((n_seeds - 1) * (n_questions - 1))
        # S*Q*variance = ms_residual + (ms_seed - ms_residual) + (ms_question - ms_residual), each component >= 0:
        # every mean square once, with its net coefficient (Satterthwaite's df needs them merged)
        kept_seed, kept_question = ms_seed > ms_residual, ms_question > ms_residual
        terms = [(ms_seed, n_seeds - 1)] * kept_seed + [(ms_question, n_questions - 1)] * kept_question
        net = 1 - kept_seed - kept_question
        if net:
            terms.append((net * ms_residual, (n_seeds - 1) * (n_questions - 1)))
        seed_part = max(ms_seed - ms_residual, 0.0)
    combined = sum(ms for ms, _ in terms)
    variance = combined / (n_seeds * n_questions)
    if variance <= 0:
        return SeedMean(mean, mean, mean, n_seeds, n_questions, float("inf"), 0.0)
    df = combined**2 / sum(ms**2 / df for ms, df in terms)
    t = t_quantile(df, level) if math.isfinite(df) else t_quantile(10**9, level)
    share = seed_part / combined
    if bounded and 0 < mean < 1:
        centre, spread = math.log(mean / (1 - mean)), t * math.sqrt(variance) / (mean * (1 - mean))
        low, high = (1 / (1 + math.exp(-(centre + sign * spread))) for sign in (-1, 1))
    else:
        half = t * math.sqrt(variance)
        low, high = mean - half, mean + half
        low, high = max(low, low_end), min(high, 1.0)
    return SeedMean(mean, low, high, n_seeds, n_questions, float(df), float(share))


def few_seeds_note(seeds: int) -> str | None:
    """The one line a curve of fewer than 3 seeds prints beside its intervals; None from 3 seeds on."""
    if seeds == 1:
        return "1 seed: intervals are over questions only; the variation from seed to seed is not measured (--seeds 3+)"
    if seeds == 2:
        return (
            "2 seeds: the seed-to-seed part of each interval rests on one degree of freedom (wide, or too narrow when"
            " the two seeds happen to agree); use --seeds 3 or more"
        )
    return None


# -- every statistic of an evaluation ---------------------------------------------------------------------
def parse_pairs(pairs: Sequence[str], modes: Sequence[str]) -> list[tuple[str, str]]:
    """`a:b` pairs of evaluated modes: a pair naming a mode that is not evaluated is skipped (said in a warning,
    unless it is one of the default pairs)."""
    out = []
    for pair in pairs:
        a, sep, b = pair.partition(":")
        if not sep or not a or not b:
            raise LikraError(f"pair {pair!r}: write two modes as a:b (e.g. likra:sft)")
        if a in modes and b in modes:
            out.append((a, b))
        elif pair not in DEFAULT_PAIRS:
            absent = ", ".join(m for m in (a, b) if m not in modes)
            logging.getLogger(__name__).warning("pair %s: %s not evaluated (--modes): skipped", pair, absent)
    return out


def mode_statistics(
    per_head: dict[str, list[np.ndarray]],
    records: Sequence[MCRecord],
    modes: Sequence[str],
    weight: float,
    pairs: Sequence[tuple[str, str]] = (),
    choice_tokens: Sequence[Sequence[int]] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Paired differences of `pairs` (acc and acc_norm), calibration of every mode, trivial baselines."""
    golds, texts = [r.gold for r in records], [r.choices for r in records]
    scores = {m: {"acc": question_scores(m, per_head, weight)} for m in {*modes, *(x for p in pairs for x in p)}}
    for s in scores.values():
        s["acc_norm"] = per_character(s["acc"], texts)
    paired = [
        {
            "a": a,
            "b": b,
            "metric": metric,
            **paired_difference(
                credits(scores[a][metric], golds), credits(scores[b][metric], golds), resamples, seed
            ).to_json(),
        }
        for a, b in pairs
        for metric in METRICS
    ]
    calib = {
        m: {metric: calibration(choice_probabilities(scores[m][metric]), golds).to_json() for metric in METRICS}
        for m in modes
    }
    return {"paired": paired, "calibration": calib, "baselines": trivial_baselines(golds, texts, choice_tokens)}

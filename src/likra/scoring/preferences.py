"""Pairwise preference accuracy, as RewardBench reports reward models: the share of pairs whose chosen
response scores above the rejected one (a tie counts 1/2), in every mode, three ways:

- `summed`: the mode's score summed over the response tokens (= acc of the two-choice question);
- `per_token`: the score divided by the response's token count (RewardBench's length-normalised variant);
- `per_char`: the score divided by the response's character count (= acc_norm, lm-eval's convention).

Each comes with a seeded percentile bootstrap 95% interval of the mean, and every pair's scores are kept.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from likra.data.records import MCRecord
from likra.scoring.metrics import tie_credit
from likra.scoring.modes import question_scores
from likra.scoring.stats import DEFAULT_RESAMPLES, bootstrap_interval

NORMALISATIONS = ("summed", "per_token", "per_char")


def _summary(credits: np.ndarray, resamples: int, seed: int) -> dict:
    lo, hi = bootstrap_interval(credits, resamples, seed)
    return {"value": float(credits.mean()), "n": int(len(credits)), "ci_low": lo, "ci_high": hi}


def preference_results(
    per_head: dict[str, list[np.ndarray]],
    records: Sequence[MCRecord],
    modes: Sequence[str],
    weight: float,
    choice_tokens: Sequence[Sequence[int]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """{"accuracy": {mode: {normalisation: {value, n, ci_low, ci_high}}}, "pairs": [per-pair scores]}.
    Records are preference pairs: choice 0 chosen, choice 1 rejected."""
    chars = [np.array([max(len(c), 1) for c in r.choices], dtype=np.float64) for r in records]
    tokens = [np.array([max(t, 1) for t in ts], dtype=np.float64) for ts in choice_tokens]
    accuracy, scores_by_mode = {}, {}
    for mode in modes:
        summed = [np.asarray(s, dtype=np.float64) for s in question_scores(mode, per_head, weight)]
        scores_by_mode[mode] = summed
        variants = {
            "summed": summed,
            "per_token": [s / t for s, t in zip(summed, tokens)],
            "per_char": [s / c for s, c in zip(summed, chars)],
        }
        accuracy[mode] = {
            name: _summary(np.array([tie_credit(s, r.gold) for s, r in zip(vals, records)]), resamples, seed)
            for name, vals in variants.items()
        }
    pairs = [
        {
            "id": r.id,
            "tokens": {"chosen": int(ts[0]), "rejected": int(ts[1])},
            "chars": {"chosen": len(r.choices[0]), "rejected": len(r.choices[1])},
            "scores": {
                mode: {"chosen": float(scores_by_mode[mode][i][0]), "rejected": float(scores_by_mode[mode][i][1])}
                for mode in modes
            },
        }
        for i, (r, ts) in enumerate(zip(records, choice_tokens))
    ]
    return {"accuracy": accuracy, "pairs": pairs}


def format_preferences(result: dict, data: dict | None = None) -> str:
    """The pairwise-accuracy table printed under `likra eval`'s table for preference data."""
    head = f"{'pairwise accuracy':<18}" + "".join(f" {n:>9} {'95% CI':>14}" for n in NORMALISATIONS)
    lines = ["", head]
    for mode, by_norm in result["accuracy"].items():
        cells = "".join(
            f" {by_norm[n]['value']:9.3f} [{by_norm[n]['ci_low']:.3f}, {by_norm[n]['ci_high']:.3f}]"
            for n in NORMALISATIONS
        )
        lines.append(f"{mode:<18}{cells}")
    if data and data.get("max_length") is not None:
        lines.append(
            f"(max_length {data['max_length']} tokens: {data['skipped_too_long']} pairs skipped as too long, "
            f"{data['prompts_cut_from_left']} prompts cut from the left)"
        )
    return "\n".join(lines)

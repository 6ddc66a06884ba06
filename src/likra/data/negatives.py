"""Negative training sets for the Likra negative head, one builder per kind of negative the paper studies.

Every builder is pure and seeded: given the same records (and pool/scores) and seed it returns the same
list of (question record, negative answer text) pairs, aligned with `records` (same order, one pair per
question unless `per_question="all"`). A negative text is never the question's gold answer, compared after
`.strip()`, and never empty. A record for which a kind has no usable negative text raises `LikraError`
naming the record, instead of being dropped.

Kinds (registered as negative sets, with their parameters, in `likra.data.negative_sets`):

- ``near_miss``: another choice of the same question (the default sampler of `examples.negative_pairs`;
  same random draws, so the two agree for every record that passes `validate_record`).
- ``random_question``: "implausible" -- any choice of a different, randomly drawn question of the same list.
- ``other_benchmark``: "far" -- any choice of a randomly drawn record of another benchmark (`pool`).
- ``hardest`` / ``easiest``: the incorrect choice a base model scores highest ("second-best") or lowest
  ("worst"), given per-choice scores; ties go to the lowest choice index.

For the two foreign kinds a drawn text is rejected and redrawn when it equals (after `.strip()`) any choice
of the question itself, the gold included.

`contaminate` then turns a seeded, nested fraction of any negative set into the questions' gold answers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from likra.data.records import MCRecord
from likra.errors import LikraError

Pairs = list[tuple[MCRecord, str]]

PER_QUESTION = ("one", "all")

# Rejection draws tried before the foreign kinds fall back to listing every acceptable text.
_MAX_DRAWS = 64


def _gold_text(rec: MCRecord) -> str:
    if not isinstance(rec.gold, int) or not 0 <= rec.gold < len(rec.choices):
        raise LikraError(f"record {rec.id!r} has gold index {rec.gold!r} out of range for {len(rec.choices)} choice(s)")
    return rec.choices[rec.gold].strip()


def near_miss_indices(rec: MCRecord) -> list[int]:
    """Indices of the incorrect choices usable as negatives: not the gold, not the gold's text, not empty."""
    gold = _gold_text(rec)
    return [i for i, c in enumerate(rec.choices) if i != rec.gold and c.strip() and c.strip() != gold]


def _check_per_question(per_question: str) -> None:
    if per_question not in PER_QUESTION:
        raise LikraError(f"negatives per question must be 'one' or 'all', got {per_question!r}")


def near_miss(records: Sequence[MCRecord], seed: int, per_question: str = "one") -> Pairs:
    """One seeded random incorrect choice of each question ("one"), or every incorrect choice ("all")."""
    _check_per_question(per_question)
    rng = random.Random(seed)
    pairs: Pairs = []
    for rec in records:
        wrong = near_miss_indices(rec)
        if not wrong:
            raise LikraError(f"record {rec.id!r} has fewer than 2 distinct choice texts: no near-miss negative to draw")
        chosen = wrong if per_question == "all" else [rng.choice(wrong)]
        pairs.extend((rec, rec.choices[i]) for i in chosen)
    return pairs


def _draw_foreign(rec: MCRecord, sources: Sequence[MCRecord], skip: int | None, rng: random.Random, what: str) -> str:
    """A choice of a uniformly drawn record of `sources` (not the one at index `skip`), redrawn while its text
    is empty or one of `rec`'s own choices; after `_MAX_DRAWS` rejections, a uniform draw among all
    acceptable texts, or LikraError if there is none."""
    _gold_text(rec)
    banned = {c.strip() for c in rec.choices} | {""}
    n = len(sources) - (skip is not None)
    if n > 0:
        for _ in range(_MAX_DRAWS):
            j = rng.randrange(n)
            if skip is not None and j >= skip:
                j += 1
            other = sources[j]
            if other.choices:
                text = rng.choice(other.choices)
                if text.strip() not in banned:
                    return text
    valid = [c for j, other in enumerate(sources) if j != skip for c in other.choices if c.strip() not in banned]
    if not valid:
        raise LikraError(f"record {rec.id!r}: no {what} text differs from the question's own choices")
    return rng.choice(valid)


def random_other_question(records: Sequence[MCRecord], seed: int) -> Pairs:
    """For each question, any choice (gold or not) of another randomly drawn question of `records`."""
    rng = random.Random(seed)
    return [(rec, _draw_foreign(rec, records, i, rng, "other-question")) for i, rec in enumerate(records)]


def other_benchmark(records: Sequence[MCRecord], pool: Sequence[MCRecord], seed: int) -> Pairs:
    """For each question, any choice (gold or not) of a randomly drawn record of `pool` (another benchmark)."""
    if not pool:
        raise LikraError("other_benchmark negatives need a non-empty pool of records from another benchmark")
    rng = random.Random(seed)
    return [(rec, _draw_foreign(rec, pool, None, rng, "pool")) for rec in records]


def ranked_distractor(records: Sequence[MCRecord], scores: Sequence[np.ndarray], hardest: bool) -> Pairs:
    """The incorrect choice with the highest score (`hardest=True`, "second-best") or the lowest (`False`,
    "worst"); `scores[i]` holds one score per choice of `records[i]` (e.g. a base model's log-likelihood).
    Ties go to the lowest choice index; the gold's own score is ignored."""
    if len(scores) != len(records):
        raise LikraError(f"got scores for {len(scores)} question(s) but {len(records)} record(s)")
    pairs: Pairs = []
    for rec, row in zip(records, scores):
        s = np.asarray(row, dtype=float)
        if s.ndim != 1 or s.shape[0] != len(rec.choices):
            raise LikraError(f"record {rec.id!r} has {len(rec.choices)} choices but scores of shape {s.shape}")
        if np.isnan(s).any():
            raise LikraError(f"record {rec.id!r} has a NaN choice score")
        wrong = near_miss_indices(rec)
        if not wrong:
            raise LikraError(f"record {rec.id!r} has fewer than 2 distinct choice texts: no distractor to rank")
        best = wrong[0]
        for i in wrong[1:]:
            if (s[i] > s[best]) if hardest else (s[i] < s[best]):
                best = i
        pairs.append((rec, rec.choices[best]))
    return pairs


def contaminate(
    records: Sequence[MCRecord], negatives: Sequence[tuple[MCRecord, str]], rate: float, seed: int
) -> tuple[Pairs, list[int]]:
    """Replace exactly `round(rate * len(negatives))` negatives by their own question's gold answer.

    The replaced positions are the first ones of a seeded permutation of the negatives, so for one seed
    (and one length) the set replaced at a smaller rate is a subset of the one at a larger rate. Every
    negative's question must be one of `records` (by id). Returns (new pairs, sorted replaced indices);
    `round` is Python's (halves go to the even count: 2.5 -> 2)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or math.isnan(rate) or not 0 <= rate <= 1:
        raise LikraError(f"contamination rate must be a number in [0, 1], got {rate!r}")
    ids = {rec.id for rec in records}
    for rec, _ in negatives:
        if rec.id not in ids:
            raise LikraError(f"negative for record {rec.id!r} does not belong to the given records")
    order = list(range(len(negatives)))
    random.Random(seed).shuffle(order)
    replaced = sorted(order[: round(rate * len(negatives))])
    out = list(negatives)
    for i in replaced:
        rec = out[i][0]
        _gold_text(rec)
        out[i] = (rec, rec.choices[rec.gold])
    return out, replaced

"""Records -> tokenized training examples, with one prompt/answer token boundary shared by training
and scoring.

Boundary rule (lm-eval's): a trailing space of the context moves into the continuation; the pair is
tokenized whole and split at the length of the tokenized context, so the answer tokens are exactly
those a model scores after the context. A BOS token is prepended to the context when the tokenizer
adds one by default (Llama-2/Mistral); it belongs to the context and is never a label.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from likra.data.records import MCRecord
from likra.errors import LikraError

IGNORE_INDEX = -100
FEWSHOT_SEED = 1234  # the seeded few-shot order shared by likra eval, likra curve and the lm-eval tasks


def bos_ids(tokenizer) -> list[int]:
    """[bos] if the tokenizer prepends BOS to plain text by default, else []."""
    probe = tokenizer("a").input_ids
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and probe and probe[0] == bos else []


def encode_pair(tokenizer, context: str, continuation: str, add_bos: bool = True) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) for scoring/training `continuation` after `context`.

    An empty context becomes the EOS token (lm-eval's rule), so the first answer token always has a
    position that predicts it."""
    trailing = len(context) - len(context.rstrip(" "))
    if trailing:
        context, continuation = context[:-trailing], context[-trailing:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    context_ids = tokenizer(context, add_special_tokens=False).input_ids
    answer_ids = whole[len(context_ids) :]
    if whole[: len(context_ids)] != context_ids:
        # The tokenizer merged across the boundary: keep the answer as scored after this context.
        answer_ids = tokenizer(continuation, add_special_tokens=False).input_ids
    if not answer_ids:
        raise LikraError(f"continuation {continuation!r} tokenizes to nothing after {context[-40:]!r}")
    context_ids = (bos_ids(tokenizer) if add_bos else []) + context_ids
    return context_ids or [tokenizer.eos_token_id], answer_ids


@dataclass(frozen=True)
class Example:
    """One training sequence: prompt tokens (no loss) followed by answer tokens (loss)."""

    question_id: str
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]

    @property
    def input_ids(self) -> list[int]:
        return [*self.prompt_ids, *self.answer_ids]

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * len(self.prompt_ids) + list(self.answer_ids)


def tokenize_answers(tokenizer, pairs: Sequence[tuple[MCRecord, str]], max_length: int | None = None) -> list[Example]:
    """Tokenize (record, answer text) pairs; prompts are cut from the left to fit `max_length`."""
    examples = []
    for rec, answer in pairs:
        prompt_ids, answer_ids = encode_pair(tokenizer, rec.prompt, rec.answer(answer))
        if max_length is not None and len(prompt_ids) + len(answer_ids) > max_length:
            keep = max(max_length - len(answer_ids), 1)
            prompt_ids = prompt_ids[-keep:]
        examples.append(Example(rec.id, tuple(prompt_ids), tuple(answer_ids)))
    return examples


def positive_pairs(records: Sequence[MCRecord]) -> list[tuple[MCRecord, str]]:
    return [(rec, rec.choices[rec.gold]) for rec in records]


def negative_pairs(records: Sequence[MCRecord], seed: int, per_question: str = "one") -> list[tuple[MCRecord, str]]:
    """The default negative set: near-misses (another choice of the same question), seeded."""
    from likra.data.negatives import near_miss

    return near_miss(records, seed, per_question)


def fewshot_prefix(shots: Sequence[MCRecord]) -> str:
    """k solved examples joined by blank lines, ending with the blank line before the question."""
    if not shots:
        return ""
    return "".join(f"{rec.prompt}{rec.continuation(rec.gold)}\n\n" for rec in shots)


def shot_order(pool: Sequence[MCRecord], seed: int, exclude_ids: set[str]) -> list[MCRecord]:
    """The few-shot pool in a seeded order, without evaluated ids; k shots are its first k."""
    candidates = [rec for rec in pool if rec.id not in exclude_ids]
    random.Random(seed).shuffle(candidates)
    return candidates


def draw_shots(pool: Sequence[MCRecord], k: int, seed: int, exclude_ids: set[str]) -> list[MCRecord]:
    """k seeded few-shot examples from `pool`, none of whose ids are evaluated."""
    ordered = shot_order(pool, seed, exclude_ids)
    if k > len(ordered):
        raise LikraError(f"asked for {k} shots but the few-shot pool has only {len(ordered)} usable records")
    return ordered[:k]

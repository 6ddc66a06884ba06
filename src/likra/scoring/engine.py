"""The scoring engine: summed answer log-likelihood of every choice under every head, fast.

How it avoids the straightforward way's waste:
- each question is ONE packed row `[context | choice 1 | choice 2 | ...]` with a tree attention mask
  (every choice sees the context and itself, never another choice) and position ids that restart
  after the context for each choice, so the context runs once per head and is shared by its choices;
- a few-shot prefix common to all questions runs once per head; its KV cache is reused by every batch;
- the output projection and log-softmax run only at the positions that predict answer tokens;
- rows are sorted by length and batched under a token budget, so padding is small;
- every head runs once; all score modes and negative weights are derived afterwards (scoring.modes).
Log-softmax is taken per head in fp32 and summed over the answer; nothing is renormalised.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from likra.data.examples import bos_ids, encode_pair
from likra.data.records import MCRecord
from likra.model.heads import unwrap_lm, use_head


@dataclass(frozen=True)
class QuestionTokens:
    """A question's context tokens (after any shared prefix) and each choice's answer tokens."""

    context_ids: tuple[int, ...]
    choice_ids: tuple[tuple[int, ...], ...]

    @property
    def row_length(self) -> int:
        return len(self.context_ids) + sum(map(len, self.choice_ids))


def tokenize_questions(tokenizer, records: Sequence[MCRecord], prefix: str = "") -> tuple[tuple[int, ...], list[QuestionTokens]]:
    """(shared prefix ids, per-question tokens). BOS, when the tokenizer uses one, opens the prefix, or
    each context when there is no prefix."""
    prefix_ids = tuple(bos_ids(tokenizer) + tokenizer(prefix, add_special_tokens=False).input_ids) if prefix else ()
    questions = []
    for rec in records:
        choices = []
        for i in range(len(rec.choices)):
            # The context tokens depend on the prompt alone, so every choice shares them.
            context_ids, answer_ids = encode_pair(tokenizer, rec.prompt, rec.continuation(i), add_bos=not prefix_ids)
            choices.append(tuple(answer_ids))
        questions.append(QuestionTokens(tuple(context_ids), tuple(choices)))
    return prefix_ids, questions


def _decoder_and_head(model):
    lm = unwrap_lm(model)
    return lm.get_decoder(), lm.get_output_embeddings(), getattr(lm.config, "final_logit_softcapping", None)


def answer_logprobs(hidden: torch.Tensor, lm_head, targets: torch.Tensor, softcap: float | None = None,
                    chunk: int = 1024) -> torch.Tensor:
    """log p(target) for each row of `hidden` (N, d): output projection + fp32 log-softmax, in chunks."""
    out = []
    for start in range(0, hidden.shape[0], chunk):
        logits = lm_head(hidden[start:start + chunk]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        out.append(torch.log_softmax(logits, dim=-1).gather(1, targets[start:start + chunk, None]).squeeze(1))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


@dataclass
class PackedBatch:
    input_ids: torch.Tensor      # (B, T)
    position_ids: torch.Tensor   # (B, T)
    segments: torch.Tensor       # (B, T): 0 context, j+1 choice j, -1 padding
    predictor_rows: torch.Tensor  # (N,) row of the hidden state predicting each answer token
    predictor_cols: torch.Tensor  # (N,)
    targets: torch.Tensor        # (N,) the answer token ids
    choice_of_target: torch.Tensor  # (N,) flat choice index (within the batch) each target belongs to
    n_choices: int


def pack_questions(questions: Sequence[QuestionTokens], prefix_len: int) -> PackedBatch:
    """Lay out questions as tree-packed rows and list which hidden state predicts which answer token."""
    width = max(q.row_length for q in questions)
    ids = torch.zeros(len(questions), width, dtype=torch.long)
    pos = torch.zeros(len(questions), width, dtype=torch.long)
    seg = torch.full((len(questions), width), -1, dtype=torch.long)
    rows, cols, targets, owners = [], [], [], []
    flat_choice = 0
    for r, q in enumerate(questions):
        lc = len(q.context_ids)
        ids[r, :lc] = torch.tensor(q.context_ids)
        pos[r, :lc] = torch.arange(prefix_len, prefix_len + lc)
        seg[r, :lc] = 0
        start = lc
        for j, ans in enumerate(q.choice_ids):
            n = len(ans)
            ids[r, start:start + n] = torch.tensor(ans)
            pos[r, start:start + n] = torch.arange(prefix_len + lc, prefix_len + lc + n)
            seg[r, start:start + n] = j + 1
            predictors = [lc - 1, *range(start, start + n - 1)]
            rows += [r] * n
            cols += predictors
            targets += list(ans)
            owners += [flat_choice] * n
            flat_choice += 1
            start += n
    return PackedBatch(ids, pos, seg, torch.tensor(rows), torch.tensor(cols), torch.tensor(targets),
                       torch.tensor(owners), flat_choice)


def tree_attention_mask(segments: torch.Tensor, prefix_len: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive (B, 1, T, prefix+T) mask: causal, a choice sees the context and itself, all see the prefix."""
    seg_q = segments[:, :, None]
    seg_k = segments[:, None, :]
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    allowed = causal & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))
    if prefix_len:
        allowed = torch.cat([allowed.new_ones(*allowed.shape[:2], prefix_len), allowed], dim=2)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def plan_batches(questions: Sequence[QuestionTokens], max_batch_tokens: int) -> list[list[int]]:
    """Question indices in batches, longest rows first, each batch's padded size <= max_batch_tokens."""
    order = sorted(range(len(questions)), key=lambda i: -questions[i].row_length)
    batches, current = [], []
    for i in order:
        width = questions[current[0]].row_length if current else questions[i].row_length
        if current and (len(current) + 1) * width > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def default_batch_tokens(model, device: torch.device) -> int:
    """A token budget per forward pass: fixed on CPU, from free memory on CUDA."""
    if device.type != "cuda":
        return 4096
    free, _ = torch.cuda.mem_get_info(device)
    cfg = unwrap_lm(model).config
    hidden = getattr(cfg, "hidden_size", 4096)
    inter = getattr(cfg, "intermediate_size", 4 * hidden)
    per_token = (4 * hidden + 2 * inter) * 4  # live activations of one layer, with slack, in bytes
    return int(min(max(free * 0.4 / per_token, 512), 65536))


class ScoringEngine:
    """Scores questions under several heads of one model; see the module docstring."""

    def __init__(self, model, max_batch_tokens: int | None = None, progress: bool = False):
        self.model = model
        self.device = next(model.parameters()).device
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(model, self.device)
        self.progress = progress

    @torch.inference_mode()
    def loglikelihoods(self, questions: Sequence[QuestionTokens], heads: Sequence[str],
                       prefix_ids: Sequence[int] = ()) -> dict[str, list[np.ndarray]]:
        """{head: [per-question array of summed answer log-likelihoods, one per choice]}."""
        batches = plan_batches(questions, self.max_batch_tokens)
        result = {}
        for head in heads:
            with use_head(self.model, head):
                result[head] = self._score_all(questions, batches, tuple(prefix_ids), head)
        return result

    def _score_all(self, questions, batches, prefix_ids, head) -> list[np.ndarray]:
        decoder, lm_head, softcap = _decoder_and_head(self.model)
        prefix_cache = None
        if prefix_ids:
            out = decoder(input_ids=torch.tensor([prefix_ids], device=self.device), use_cache=True)
            prefix_cache = out.cache
        scores: list[np.ndarray | None] = [None] * len(questions)
        iterator = batches
        if self.progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc=f"scoring {head}", unit="batch", leave=False)
        for batch in iterator:
            for i, s in zip(batch, self._score_batch([questions[i] for i in batch], decoder, lm_head, softcap,
                                                     prefix_cache, len(prefix_ids))):
                scores[i] = s
        return scores

    def _score_batch(self, questions, decoder, lm_head, softcap, prefix_cache, prefix_len):
        packed = pack_questions(questions, prefix_len)
        dtype = lm_head.weight.dtype
        mask = tree_attention_mask(packed.segments.to(self.device), prefix_len, dtype)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(questions))
        hidden = decoder(
            input_ids=packed.input_ids.to(self.device), position_ids=packed.position_ids.to(self.device),
            attention_mask=mask, cache=cache, use_cache=cache is not None,
        ).last_hidden_state
        picked = hidden[packed.predictor_rows.to(self.device), packed.predictor_cols.to(self.device)]
        token_lp = answer_logprobs(picked, lm_head, packed.targets.to(self.device), softcap)
        sums = torch.zeros(packed.n_choices, dtype=torch.float64, device=self.device)
        sums.index_add_(0, packed.choice_of_target.to(self.device), token_lp.double())
        sums = sums.cpu().numpy()
        out, k = [], 0
        for q in questions:
            out.append(sums[k:k + len(q.choice_ids)])
            k += len(q.choice_ids)
        return out

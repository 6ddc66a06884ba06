"""The scoring engine: summed answer log-likelihood of every choice under every head, fast.

How it avoids the straightforward way's waste:
- each question is laid out once as `[context | choice 1 | choice 2 | ...]` with a tree attention mask
  (every choice sees the context and itself, never another choice) and position ids that restart
  after the context for each choice, so the context runs once per head and is shared by its choices;
- a choice's last token is never fed: it is scored from the position before it and predicts nothing
  itself (a one-token answer costs no position at all);
- several questions share a row (first-fit decreasing packing, block-diagonal mask), so the padding
  that plain length-sorted batches would compute is almost gone;
- a few-shot prefix common to all questions runs once per head; its KV cache is reused by every batch;
- the output projection and log-softmax run only at the positions that predict answer tokens;
- rows are batched under a token budget sized to the device;
- under `accelerate launch`, each process scores its share of the questions and all gather the result;
- every head runs once, in fp32 (no TF32) with its LoRA folded into the weights (no adapter matmuls); all score
  modes and negative weights are derived afterwards (scoring.modes).
Log-softmax is taken per head in fp32 and summed over the answer; nothing is renormalised.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from likra.data.examples import encode_pair
from likra.data.records import MCRecord
from likra.distributed import all_gather, rank_and_world
from likra.errors import LikraError
from likra.model.heads import execution_device, folded_head, unwrap_lm, use_head
from likra.model.precision import exact_fp32_matmuls
from likra.packing import first_fit_decreasing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuestionTokens:
    """A question's context tokens (after any shared prefix) and each choice's answer tokens."""

    context_ids: tuple[int, ...]
    choice_ids: tuple[tuple[int, ...], ...]

    @property
    def row_length(self) -> int:
        """Positions the question takes in a row: its context, and each choice but its last token."""
        return len(self.context_ids) + sum(len(c) - 1 for c in self.choice_ids)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all sequences, leaving each at least one token."""
    if not sequences:
        return 0
    first = sequences[0]
    limit = min(len(s) for s in sequences) - 1
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


def tokenize_questions(
    tokenizer, records: Sequence[MCRecord], prefix: str = "", max_length: int | None = None
) -> tuple[tuple[int, ...], list[QuestionTokens]]:
    """(shared prefix ids, per-question tokens). Each context is `prefix + prompt` tokenized whole, as
    lm-eval does (a BOS opens it when the tokenizer uses one); with a few-shot prefix, the longest token
    prefix common to all contexts is split off to be computed once. With `max_length` (the model's
    positions), a context too long for its longest answer loses tokens from the left, as in training and
    in lm-eval; an answer that alone does not fit is a LikraError."""
    contexts, answers = [], []
    cut = 0
    for rec in records:
        choices = []
        for i in range(len(rec.choices)):
            # The context tokens depend on the prompt alone, so every choice shares them.
            context_ids, answer_ids = encode_pair(tokenizer, prefix + rec.prompt, rec.continuation(i))
            choices.append(tuple(answer_ids))
        if max_length is not None:
            room = max_length - max(map(len, choices))
            if room < 1:
                raise LikraError(
                    f"question {rec.id!r}: an answer of {max(map(len, choices))} tokens does not fit the "
                    f"model's {max_length} positions"
                )
            if len(context_ids) > room:
                context_ids, cut = context_ids[-room:], cut + 1
        contexts.append(tuple(context_ids))
        answers.append(tuple(choices))
    if cut:
        log.warning(
            "%d of %d questions: context cut from the left to fit the model's %d positions",
            cut,
            len(records),
            max_length,
        )
    shared = common_prefix_length(contexts) if prefix else 0
    prefix_ids = contexts[0][:shared] if shared else ()
    return prefix_ids, [QuestionTokens(ctx[shared:], ans) for ctx, ans in zip(contexts, answers)]


def _decoder_and_head(model):
    lm = unwrap_lm(model)
    return lm.get_decoder(), lm.get_output_embeddings(), getattr(lm.config, "final_logit_softcapping", None)


def answer_logprobs(
    hidden: torch.Tensor, lm_head, targets: torch.Tensor, softcap: float | None = None, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(target), target is the argmax) for each row of `hidden` (N, d): output projection and
    fp32 log-softmax, in chunks so the (N, vocab) logits never exist at once."""
    logprobs, greedy = [], []
    for start in range(0, hidden.shape[0], chunk):
        logits = lm_head(hidden[start : start + chunk]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        target = targets[start : start + chunk, None].to(logits.device)
        logprobs.append(torch.log_softmax(logits, dim=-1).gather(1, target).squeeze(1))
        greedy.append(logits.gather(1, target).squeeze(1) >= logits.max(dim=-1).values)
    if not logprobs:
        return hidden.new_zeros(0, dtype=torch.float32), torch.zeros(0, dtype=torch.bool, device=hidden.device)
    return torch.cat(logprobs), torch.cat(greedy)


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    question: torch.Tensor  # (B, T): question slot within its row, -1 padding
    segment: torch.Tensor  # (B, T): 0 context, j+1 choice j
    predictor_rows: torch.Tensor  # (N,) row of the hidden state predicting each answer token
    predictor_cols: torch.Tensor  # (N,)
    targets: torch.Tensor  # (N,) the answer token ids
    choice_of_target: torch.Tensor  # (N,) flat choice index (within the batch) each target belongs to
    n_choices: int


def pack_questions(rows: Sequence[Sequence[QuestionTokens]], prefix_len: int) -> PackedBatch:
    """Lay out rows of questions (each `[context | choice 1 | choice 2 ...]`, several per row; a choice
    without its last token) and list which hidden state predicts which answer token. Choices are
    numbered in row order. Built in plain lists and converted once (no tensor per piece)."""
    width = max(sum(q.row_length for q in row) for row in rows)
    ids, pos, question, segment = [], [], [], []
    pred_rows, pred_cols, targets, owners = [], [], [], []
    flat_choice = 0
    for r, row in enumerate(rows):
        r_ids, r_pos, r_question, r_segment = [], [], [], []
        for slot, q in enumerate(row):
            lc = len(q.context_ids)
            if lc == 0:
                raise ValueError("a question needs at least one context token to predict its first answer token")
            last_context = len(r_ids) + lc - 1
            r_ids += q.context_ids
            r_pos += range(prefix_len, prefix_len + lc)
            r_segment += [0] * lc
            for j, ans in enumerate(q.choice_ids):
                n = len(ans)
                fed = n - 1  # the last answer token predicts nothing: it is scored, never fed
                start = len(r_ids)
                r_ids += ans[:fed]
                r_pos += range(prefix_len + lc, prefix_len + lc + fed)
                r_segment += [j + 1] * fed
                pred_rows += [r] * n
                pred_cols += [last_context, *range(start, start + fed)]
                targets += ans
                owners += [flat_choice] * n
                flat_choice += 1
            r_question += [slot] * (len(r_ids) - len(r_question))
        pad = width - len(r_ids)
        ids.append(r_ids + [0] * pad)
        pos.append(r_pos + [0] * pad)
        question.append(r_question + [-1] * pad)
        segment.append(r_segment + [0] * pad)
    return PackedBatch(
        torch.tensor(ids, dtype=torch.long),
        torch.tensor(pos, dtype=torch.long),
        torch.tensor(question, dtype=torch.long),
        torch.tensor(segment, dtype=torch.long),
        torch.tensor(pred_rows, dtype=torch.long),
        torch.tensor(pred_cols, dtype=torch.long),
        torch.tensor(targets, dtype=torch.long),
        torch.tensor(owners, dtype=torch.long),
        flat_choice,
    )


def tree_attention_mask(
    question: torch.Tensor, segment: torch.Tensor, prefix_len: int, dtype: torch.dtype
) -> torch.Tensor:
    """Additive (B, 1, T, prefix+T) mask: causal within a question, a choice sees its question's context
    and itself (never another choice or question), everyone sees the shared prefix."""
    width = question.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=question.device).tril()
    same_question = question[:, :, None] == question[:, None, :]
    visible_segment = (segment[:, None, :] == 0) | (segment[:, None, :] == segment[:, :, None])
    allowed = causal & same_question & visible_segment & (question[:, None, :] >= 0)
    allowed |= torch.eye(width, dtype=torch.bool, device=question.device)  # padding sees itself: no empty rows
    if prefix_len:
        allowed = torch.cat([allowed.new_ones(*allowed.shape[:2], prefix_len), allowed], dim=2)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=question.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


MIN_BATCH_TOKENS = 256  # the smallest scoring budget an out-of-memory retry goes down to


def plan_batches(
    questions: Sequence[QuestionTokens], max_batch_tokens: int, row_width: int = 256
) -> list[list[list[int]]]:
    """Batches of rows of question indices. Questions are packed into rows of `row_width` tokens
    (or the longest question, if longer) by first-fit decreasing, so almost no padding is computed;
    each batch holds at most `max_batch_tokens` row tokens."""
    width = max([row_width, *(q.row_length for q in questions)])
    rows = first_fit_decreasing([q.row_length for q in questions], width)
    per_batch = max(1, max_batch_tokens // width)
    return [rows[k : k + per_batch] for k in range(0, len(rows), per_batch)]


def input_device(model) -> torch.device:
    """Where a batch's tensors go: the input embeddings' device (under a device map, that of the first
    layers; an embedding offloaded by accelerate runs on its hook's execution device)."""
    embeddings = unwrap_lm(model).get_input_embeddings()
    return execution_device(embeddings) or embeddings.weight.device


def plain_weights(model) -> bool:
    """Whether every weight is a plain floating-point tensor in memory (not quantized, not offloaded)."""
    return all(p.is_floating_point() and p.device.type != "meta" for p in model.parameters())


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

    def __init__(
        self,
        model,
        max_batch_tokens: int | None = None,
        progress: bool = False,
        fold_heads: bool | None = None,
        on_batch: Callable[[str, int, int], None] | None = None,
    ):
        self.model = model
        self.device = input_device(model)
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(model, self.device)
        self.progress = progress
        # Called after every batch with (head, batches done, batches of this head's pass), so that a caller's
        # progress display moves during a pass; the engine itself prints nothing but its optional tqdm bar.
        self.on_batch = on_batch
        # Folding LoRA into the weights saves the adapter matmuls; only exact enough in fp32, and only
        # possible where the weights are plain tensors in memory (not quantized, not offloaded).
        if fold_heads is None:
            fold_heads = next(model.parameters()).dtype == torch.float32 and plain_weights(model)
        self.fold_heads = fold_heads

    def loglikelihoods(
        self, questions: Sequence[QuestionTokens], heads: Sequence[str], prefix_ids: Sequence[int] = ()
    ) -> dict[str, list[np.ndarray]]:
        """{head: [per-question array of summed answer log-likelihoods, one per choice]}."""
        return {head: [ll for ll, _ in per_q] for head, per_q in self.score(questions, heads, prefix_ids).items()}

    @torch.inference_mode()
    def score(
        self, questions: Sequence[QuestionTokens], heads: Sequence[str], prefix_ids: Sequence[int] = ()
    ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """{head: [per question: (summed log-likelihood per choice, whether every answer token is the
        head's greedy choice)]}."""
        rank, world = rank_and_world()
        mine = list(range(rank, len(questions), world))  # under data parallelism each process takes a share
        local = {}
        for head in heads:
            with (folded_head if self.fold_heads else use_head)(self.model, head), exact_fp32_matmuls():
                local[head] = self._score_head([questions[i] for i in mine], tuple(prefix_ids), head)
        if world == 1:
            return local
        result = {head: [None] * len(questions) for head in heads}
        for their_ids, their_scores in all_gather((mine, local)):
            for head in heads:
                for i, score in zip(their_ids, their_scores[head]):
                    result[head][i] = score
        return result

    def _score_head(self, questions, prefix_ids, head) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every question under `head`; when the device runs out of memory, the token budget is halved and the
        head scored again (one warning), down to a budget of 256 tokens."""
        while True:
            batches = plan_batches(questions, self.max_batch_tokens) if questions else []
            try:
                return self._score_all(questions, batches, prefix_ids, head)
            except torch.OutOfMemoryError:
                if self.max_batch_tokens <= MIN_BATCH_TOKENS:
                    raise LikraError(
                        f"out of memory scoring head {head!r} even with {self.max_batch_tokens}-token batches; "
                        "use --device-map auto or --quantize 4bit"
                    ) from None
                self.max_batch_tokens = max(self.max_batch_tokens // 2, MIN_BATCH_TOKENS)
                log.warning(
                    "out of memory scoring head %s: token budget halved to %d, scoring it again",
                    head,
                    self.max_batch_tokens,
                )
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _score_all(self, questions, batches, prefix_ids, head) -> list[tuple[np.ndarray, np.ndarray]]:
        decoder, lm_head, softcap = _decoder_and_head(self.model)
        prefix_cache = None
        if prefix_ids:
            out = decoder(input_ids=torch.tensor([prefix_ids], device=self.device), use_cache=True)
            prefix_cache = out.cache
        order, sums, greedy = [], [], []
        iterator = batches
        if self.progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc=f"scoring {head}", unit="batch", leave=False)
        for done, batch in enumerate(iterator, start=1):
            rows = [[questions[i] for i in row] for row in batch]
            batch_sums, batch_greedy = self._score_batch(rows, decoder, lm_head, softcap, prefix_cache, len(prefix_ids))
            order += [i for row in batch for i in row]
            sums.append(batch_sums)
            greedy.append(batch_greedy)
            if self.on_batch is not None:
                self.on_batch(head, done, len(batches))
        # One copy to the host per head: the device never waits for Python between batches.
        all_sums = torch.cat(sums).cpu().numpy() if sums else np.zeros(0)
        all_greedy = torch.cat(greedy).cpu().numpy() if greedy else np.zeros(0, dtype=bool)
        scores: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(questions)
        k = 0
        for i in order:
            n = len(questions[i].choice_ids)
            scores[i] = (all_sums[k : k + n], all_greedy[k : k + n])
            k += n
        return scores

    def _score_batch(self, rows, decoder, lm_head, softcap, prefix_cache, prefix_len):
        """(summed log-likelihood, all-greedy flag) of every choice of the batch's rows, in row order, on the
        device."""
        packed = pack_questions(rows, prefix_len)
        dtype = lm_head.weight.dtype
        mask = tree_attention_mask(packed.question.to(self.device), packed.segment.to(self.device), prefix_len, dtype)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
        hidden = decoder(
            input_ids=packed.input_ids.to(self.device),
            position_ids=packed.position_ids.to(self.device),
            attention_mask=mask,
            cache=cache,
            use_cache=cache is not None,
        ).last_hidden_state
        # Under a device map the last layer (and the output projection) may sit on another device.
        picked = hidden[packed.predictor_rows.to(hidden.device), packed.predictor_cols.to(hidden.device)]
        token_lp, token_greedy = answer_logprobs(picked, lm_head, packed.targets, softcap)
        owners = packed.choice_of_target.to(token_lp.device)
        sums = torch.zeros(packed.n_choices, dtype=torch.float64, device=token_lp.device)
        sums.index_add_(0, owners, token_lp.double())
        misses = torch.zeros(packed.n_choices, dtype=torch.long, device=token_lp.device)
        misses.index_add_(0, owners, (~token_greedy).long())
        return sums, misses == 0

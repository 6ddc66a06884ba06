"""Free generation with two (or more) heads: the next token is chosen by a mode's combination of the heads'
next-token log-softmax, restricted to the tokens the mode's first head finds plausible.

Why this shape:
- A mode (scoring.modes) is a weighted sum of per-head log-likelihoods; applied to one next token instead of a
  whole answer it is `log p_pos(t) - w·log p_neg(t)` (likra) or `log p_base(t) - w·log p_neg(t)` (negbase), the
  expert/anti-expert combination of DExperts, contrastive decoding and proxy-tuning. The same registry serves
  scoring and generation, so any registered mode or expression over head names generates.
- Unrestricted, the ratio favours tokens that both heads find unlikely but the negative head finds even less
  likely (junk with a huge ratio). Contrastive decoding's adaptive plausibility constraint (Li et al. 2022)
  keeps only `{t : p_1(t) >= alpha·max p_1}` of the first head; with w = 0 the decoder is therefore exactly the
  first head's own greedy decoding (its argmax is always plausible).
- Every head has its own KV cache (the heads are different models under one set of base weights), so one step
  costs one single-token forward per head; prompts are computed once per head, and a prefix common to every
  prompt (a few-shot block) once per head for the whole call, its cache copied into each batch.
- Prompts of a batch are left-padded (positions count real tokens only), rows that finished (end of text,
  a stop string, or `max_new_tokens`) leave the batch and their caches.
- Sampling: `temperature` > 0 draws from softmax(score / temperature) over the plausible tokens, cut to the
  smallest top-p set; the combined score is not a normalised distribution, this softmax makes it one.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Annotated, Mapping, Sequence

import torch
from pydantic import Field

from likra.config import NonNegativeFloat, PositiveInt, check, option, settings
from likra.errors import LikraError
from likra.model.heads import HeadSwitch, available_heads, unwrap_lm
from likra.scoring.engine import common_prefix_length
from likra.scoring.modes import Mode, get_mode

log = logging.getLogger(__name__)

Alpha = Annotated[float, Field(gt=0, le=1)]
LOG_FLOOR = -1e4  # far below any finite fp32 log-softmax of a real model, far above -inf
MIN_SHARED_PREFIX = 16  # shorter common prefixes are not worth a separate pass


@settings
class GenerationSettings:
    """How `likra generate` (and lm-eval's generate_until) decode with a mode's heads."""

    mode: str = option("likra", help="a mode (likra, negbase, sft, base, pos_base) or an expression over heads")
    weight: float = option(1.0, help="negative-head weight w of the mode's weighted terms")
    alpha: Alpha = option(0.1, help="plausibility: keep tokens with p_first(t) >= alpha * max p_first, in (0, 1]")
    max_new_tokens: PositiveInt = option(64, help="tokens generated at most per prompt")
    temperature: NonNegativeFloat = option(0.0, help="0 = greedy; > 0 samples from softmax(score / temperature)")
    top_p: Alpha = option(1.0, help="sampling: keep the smallest set of plausible tokens with this much mass")
    seed: int = option(0, help="seed of the sampler")
    stop: list[str] = option(default_factory=list, help="stop strings (the text is cut before them)", cli=False)
    batch_size: PositiveInt = option(8, help="prompts decoded together")


@dataclass(frozen=True)
class Generation:
    """One prompt's result: the text (cut before a stop string), its tokens, and why it ended."""

    text: str
    token_ids: tuple[int, ...]
    finish: str  # "eos", "stop" or "length"

    def to_json(self) -> dict:
        return {"text": self.text, "tokens": len(self.token_ids), "finish": self.finish}


# -- small pieces (each tested on hand-made inputs) ---------------------------------------------------------


def plausible_mask(logprobs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Boolean mask of `{t : p(t) >= alpha·max p}` for each row of log-probabilities (..., V)."""
    if not 0 < alpha <= 1:
        raise LikraError(f"alpha must be in (0, 1], got {alpha}")
    return logprobs >= logprobs.max(dim=-1, keepdim=True).values + math.log(alpha)


def term_coefficients(mode: Mode, weight: float) -> dict[str, float]:
    """{head: its total coefficient in the mode at negative weight `weight`}; heads whose coefficient is 0
    are left out (they are not run), except the first head, which the plausibility mask always needs."""
    out: dict[str, float] = {}
    for t in mode.terms:
        out[t.head] = out.get(t.head, 0.0) + (t.coefficient * weight if t.weighted else t.coefficient)
    first = mode.greedy_head
    return {h: c for h, c in out.items() if c != 0 or h == first}


def combine_heads(coefficients: Mapping[str, float], logprobs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """sum over heads of coefficient x next-token log-softmax (a head with coefficient 0 adds nothing; a -inf
    log-probability, a token a head rules out entirely, counts as LOG_FLOOR so that -w x -inf never makes an
    infinite score or a NaN)."""
    total = None
    for head, c in coefficients.items():
        if c == 0:
            continue
        value = logprobs[head].clamp(min=LOG_FLOOR)
        value = value if c == 1 else c * value
        total = value if total is None else total + value
    if total is None:
        return torch.zeros_like(next(iter(logprobs.values())))
    return total


def restrict(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`scores` with the tokens outside `mask` at -inf."""
    return scores.masked_fill(~mask, float("-inf"))


def choose_tokens(
    scores: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Next token per row of restricted scores (B, V): argmax when `temperature` is 0, else a draw from
    softmax(scores / temperature) cut to the smallest set of tokens with cumulative mass >= top_p."""
    if temperature == 0:
        return scores.argmax(dim=-1)
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the tokens ranked above each
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the top token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, attention mask), both (B, T), rows padded on the left to the longest."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def eos_ids(model, tokenizer) -> set[int]:
    """End-of-text tokens: the tokenizer's and the model's generation config's."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    config_eos = getattr(getattr(unwrap_lm(model), "generation_config", None), "eos_token_id", None)
    if isinstance(config_eos, int):
        ids.add(config_eos)
    elif config_eos:
        ids.update(config_eos)
    return ids


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt as the scorer tokenizes a context (a BOS when the tokenizer uses one);
    an empty prompt is a LikraError."""
    from likra.data.examples import bos_ids

    bos = bos_ids(tokenizer)
    out = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise LikraError(f"prompt {i + 1}: empty prompt; give some text to continue")
        out.append(bos + tokenizer(prompt, add_special_tokens=False).input_ids)
    return out


def check_heads(model, mode: Mode) -> None:
    """A LikraError when the model lacks a head of `mode`."""
    have = available_heads(model)
    missing = [h for h in mode.heads if h not in have]
    if missing:
        raise LikraError(f"mode {mode.name!r} needs head(s) {', '.join(missing)}; the model has {', '.join(have)}")


class _NoHeads:
    """The head switch of a plain model (mode base only)."""

    def activate(self, head: str) -> None:
        pass

    def restore(self) -> None:
        pass


# -- the decoder ------------------------------------------------------------------------------------------


class HeadDecoder:
    """Decodes prompts with `settings.mode` over the heads of `model` (a run's PeftModel, or a plain model for
    single-head `base` decoding); see the module docstring."""

    def __init__(self, model, tokenizer, settings: GenerationSettings):
        check(settings)
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.mode = get_mode(settings.mode)
        check_heads(model, self.mode)
        self.coefficients = term_coefficients(self.mode, settings.weight)
        self.first = self.mode.greedy_head
        self.lm = unwrap_lm(model)
        if getattr(self.lm, "hf_device_map", None) and len(set(self.lm.hf_device_map.values())) > 1:
            raise LikraError("generation with a model spread by a device map is not supported: load it on one device")
        self.device = next(model.parameters()).device
        self.eos = eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos, default=0)
        self.max_positions = getattr(self.lm.config, "max_position_embeddings", None)

    def generate(self, prompts: Sequence[str]) -> list[Generation]:
        """One `Generation` per prompt, in order."""
        if not prompts:
            raise LikraError("no prompts to generate from")
        return self.generate_ids(encode_prompts(self.tokenizer, prompts))

    @torch.inference_mode()
    def generate_ids(self, prompt_ids: Sequence[Sequence[int]]) -> list[Generation]:
        """`generate` for prompts already tokenized."""
        s = self.settings
        rows = [list(r) for r in prompt_ids]
        if any(not r for r in rows):
            raise LikraError("empty prompt; give some text to continue")
        if self.max_positions:
            room = self.max_positions - s.max_new_tokens
            if room < 1:
                raise LikraError(f"max_new_tokens {s.max_new_tokens} leaves no room in {self.max_positions} positions")
            if any(len(r) > room for r in rows):
                log.warning("prompts longer than %d tokens are cut from the left", room)
                rows = [r[-room:] for r in rows]
        shared = common_prefix_length(rows) if len(rows) > 1 else 0
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
        generator = torch.Generator(device=self.device).manual_seed(s.seed) if s.temperature > 0 else None
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # similar lengths share a batch
        results: list[Generation | None] = [None] * len(rows)
        self.switch = HeadSwitch(self.model) if hasattr(self.model, "peft_config") else _NoHeads()
        try:
            prefix_caches = self._prefix_caches(rows[0][:shared]) if shared else None
            for start in range(0, len(order), s.batch_size):
                members = order[start : start + s.batch_size]
                batch = self._decode_batch([rows[i][shared:] for i in members], shared, prefix_caches, generator)
                for i, g in zip(members, batch):
                    results[i] = g
        finally:
            self.switch.restore()
        return results

    def _forward(self, head: str, input_ids, attention_mask, position_ids, cache):
        self.switch.activate(head)
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1), out.cache

    def _prefix_caches(self, prefix: Sequence[int]) -> dict:
        ids = torch.tensor([list(prefix)], device=self.device)
        caches = {}
        for head in self.coefficients:
            self.switch.activate(head)
            caches[head] = self.lm.get_decoder()(input_ids=ids, use_cache=True).cache
        return caches

    def _decode_batch(self, rows, shared: int, prefix_caches, generator) -> list[Generation]:
        s = self.settings
        ids, mask = left_pad(rows, self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        n = len(rows)
        if shared:
            mask = torch.cat([torch.ones(n, shared, dtype=mask.dtype, device=self.device), mask], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
        caches, logprobs = {}, {}
        for head in self.coefficients:
            cache = None
            if prefix_caches is not None:
                cache = copy.deepcopy(prefix_caches[head])
                cache.batch_repeat_interleave(n)
            logprobs[head], caches[head] = self._forward(head, ids, mask, positions, cache)
        next_position = positions[:, -1:] + 1
        alive = list(range(n))  # original row of each batch row still decoding
        generated: list[list[int]] = [[] for _ in range(n)]
        finish = ["length"] * n
        for step_number in range(s.max_new_tokens):
            scores = restrict(combine_heads(self.coefficients, logprobs), plausible_mask(logprobs[self.first], s.alpha))
            tokens = choose_tokens(scores, s.temperature, s.top_p, generator).tolist()
            keep = []
            for j, (row, token) in enumerate(zip(alive, tokens)):
                if token in self.eos:
                    finish[row] = "eos"
                    continue
                generated[row].append(token)
                if s.stop and find_stop(self.tokenizer.decode(generated[row]), s.stop) is not None:
                    finish[row] = "stop"
                    continue
                keep.append(j)
            if not keep or step_number == s.max_new_tokens - 1:
                break
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=self.device)
                for cache in caches.values():
                    cache.batch_select_indices(index)
                mask, next_position = mask[index], next_position[index]
                tokens = [tokens[j] for j in keep]
                alive = [alive[j] for j in keep]
            step = torch.tensor(tokens, device=self.device)[:, None]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            for head in self.coefficients:
                logprobs[head], caches[head] = self._forward(head, step, mask, next_position, caches[head])
            next_position = next_position + 1
        return [self._result(generated[i], finish[i]) for i in range(n)]

    def _result(self, tokens: list[int], finish: str) -> Generation:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = find_stop(text, self.settings.stop)
        if cut is not None:
            text = text[:cut]
        return Generation(text, tuple(tokens), finish)


def generate(model, tokenizer, prompts: Sequence[str], settings: GenerationSettings | None = None) -> list[Generation]:
    """Decode `prompts` with `settings` (default: likra, greedy, alpha 0.1, 64 tokens)."""
    return HeadDecoder(model, tokenizer, settings or GenerationSettings()).generate(prompts)

"""The straightforward decoder the fast one is tested against: one prompt at a time, every head runs the whole
sequence again at every step (no KV cache, no padding, no shared prefix). Same mode, mask and choice rules."""

from __future__ import annotations

from typing import Sequence

import torch

from likra.generation.decoder import (
    GenerationSettings,
    choose_tokens,
    combine_heads,
    eos_ids,
    plausible_mask,
    restrict,
    term_coefficients,
)
from likra.model.heads import unwrap_lm, use_head
from likra.scoring.modes import get_mode


@torch.inference_mode()
def reference_generate_ids(model, tokenizer, prompt_ids: Sequence[int], settings: GenerationSettings) -> list[int]:
    """Generated token ids of one prompt (end of text excluded; stop strings not applied), greedy or sampled."""
    mode = get_mode(settings.mode)
    coefficients = term_coefficients(mode, settings.weight)
    lm, eos = unwrap_lm(model), eos_ids(model, tokenizer)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed) if settings.temperature > 0 else None
    sequence, out = list(prompt_ids), []
    for _ in range(settings.max_new_tokens):
        ids = torch.tensor([sequence], device=device)
        logprobs = {}
        for head in coefficients:
            with use_head(model, head):
                logits = lm(input_ids=ids, use_cache=False).logits[:, -1].float()
            logprobs[head] = torch.log_softmax(logits, dim=-1)
        scores = restrict(
            combine_heads(coefficients, logprobs), plausible_mask(logprobs[mode.greedy_head], settings.alpha)
        )
        token = int(choose_tokens(scores, settings.temperature, settings.top_p, generator)[0])
        if token in eos:
            break
        out.append(token)
        sequence.append(token)
    return out

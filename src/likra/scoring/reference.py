"""The straightforward scorer (the authors' way), kept as the engine's correctness and speed baseline:
one padded forward pass per (question, choice) over prefix + context + answer, full-vocabulary
log-softmax at every position, answer positions summed."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from likra.model.heads import use_head
from likra.scoring.engine import QuestionTokens


@torch.inference_mode()
def reference_loglikelihoods(
    model,
    questions: Sequence[QuestionTokens],
    head: str,
    prefix_ids: Sequence[int] = (),
    batch_size: int = 8,
    pad_id: int = 0,
) -> list[np.ndarray]:
    device = next(model.parameters()).device
    sequences = []
    for qi, q in enumerate(questions):
        for ans in q.choice_ids:
            sequences.append((qi, [*prefix_ids, *q.context_ids], list(ans)))
    sums = [np.zeros(len(q.choice_ids)) for q in questions]
    seen = [0] * len(questions)
    with use_head(model, head):
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            width = max(len(c) + len(a) for _, c, a in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attn = torch.zeros(len(chunk), width, dtype=torch.long)
            for r, (_, ctx, ans) in enumerate(chunk):
                ids[r, : len(ctx) + len(ans)] = torch.tensor(ctx + ans)
                attn[r, : len(ctx) + len(ans)] = 1
            logprobs = torch.log_softmax(
                model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float(), -1
            )
            for r, (qi, ctx, ans) in enumerate(chunk):
                positions = torch.arange(len(ctx) - 1, len(ctx) + len(ans) - 1, device=device)
                lp = logprobs[r, positions, torch.tensor(ans, device=device)].double().sum().item()
                sums[qi][seen[qi]] = lp
                seen[qi] += 1
    return sums

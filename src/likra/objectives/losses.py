"""The answer-token loss, once: the logits that predict answer tokens, and the mean cross-entropy over them.

A batch's `labels` hold the answer tokens and IGNORE_INDEX elsewhere; position t predicts token t+1, so the
positions kept are those whose next label is an answer token. The output projection runs only there (a boolean
`logits_to_keep`), which saves the (tokens x vocabulary) product over every prompt token. The MLE heads use the
mean cross-entropy; the unlikelihood objective uses the same logits with a sign per token.
"""

from __future__ import annotations

import torch

from likra.data.examples import IGNORE_INDEX


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of the positions that predict an answer token, those tokens in order)."""
    predicts = torch.zeros_like(labels, dtype=torch.bool)
    predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return predicts, labels[:, 1:][predicts[:, :-1]]


def answer_logits(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (N, vocab) in fp32, targets (N,), position mask (B, T)) of the answer tokens of a batch."""
    predicts, targets = answer_positions(inputs["labels"])
    layout = {k: inputs[k] for k in ("attention_mask", "position_ids") if k in inputs}
    # No KV cache: with one, transformers would not derive packed rows' block-diagonal mask from their positions.
    logits = model(input_ids=inputs["input_ids"], logits_to_keep=predicts, use_cache=False, **layout).logits
    return logits.reshape(-1, logits.shape[-1]).float(), targets, predicts


def token_mean(loss_sum: torch.Tensor, n_tokens: int, num_items_in_batch=None) -> torch.Tensor:
    """`loss_sum` over the batch's tokens, or over every process's tokens of the optimizer step when the Trainer
    counts them (`num_items_in_batch`, gradient accumulation and data parallelism)."""
    denominator = num_items_in_batch if num_items_in_batch is not None else n_tokens
    if torch.is_tensor(denominator):
        denominator = denominator.to(loss_sum.device)
    return loss_sum / denominator


def answer_token_loss(model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of a batch."""
    logits, targets, _ = answer_logits(model, inputs)
    loss_sum = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return token_mean(loss_sum, targets.numel(), num_items_in_batch)

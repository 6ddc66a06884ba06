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


def answer_layout(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a collator adds so that the loss needs no host synchronisation on a GPU (the boolean selection of
    `answer_positions` makes the host wait for the device twice a step): per row the positions predicting an
    answer token, padded to the longest row by repeating its first one (`answer_positions`, (B, K)), which of
    the B*K entries are real, in row order (`answer_select`), each one's row (`answer_rows`) and target token
    (`answer_targets`)."""
    predicts, targets = answer_positions(labels)
    per_row = [torch.nonzero(row).squeeze(1) for row in predicts]
    k = max([len(p) for p in per_row] + [1])
    positions = torch.zeros(len(per_row), k, dtype=torch.long)
    select, rows = [], []
    for b, p in enumerate(per_row):
        if len(p):
            positions[b, : len(p)], positions[b, len(p) :] = p, p[0]
            select += range(b * k, b * k + len(p))
            rows += [b] * len(p)
    return {
        "answer_positions": positions,
        "answer_select": torch.tensor(select, dtype=torch.long),
        "answer_rows": torch.tensor(rows, dtype=torch.long),
        "answer_targets": targets,
    }


def answer_logits(model, inputs: dict, sync_free: bool | None = None) -> tuple[torch.Tensor, ...]:
    """(logits (N, vocab) in fp32, targets (N,), the row of each) of the answer tokens of a batch, in row order.

    With the collator's `answer_layout` (and by default only on a GPU), the output projection runs at the (B, K)
    gathered positions and the real ones are picked by index: no host synchronisation. Otherwise a boolean mask
    selects them: the same rows in the same order, kept on the CPU so that fp32 results stay bit for bit those
    of earlier versions (the projection of a differently shaped matrix may round differently)."""
    layout = {k: inputs[k] for k in ("attention_mask", "position_ids") if k in inputs}
    if sync_free is None:
        sync_free = "answer_positions" in inputs and inputs["input_ids"].device.type == "cuda"
    # No KV cache: with one, transformers would not derive packed rows' block-diagonal mask from their positions.
    if sync_free:
        keep = inputs["answer_positions"]
        logits = model(input_ids=inputs["input_ids"], logits_to_keep=keep, use_cache=False, **layout).logits
        logits = logits.reshape(-1, logits.shape[-1]).index_select(0, inputs["answer_select"])
        return logits.float(), inputs["answer_targets"], inputs["answer_rows"]
    predicts, targets = answer_positions(inputs["labels"])
    logits = model(input_ids=inputs["input_ids"], logits_to_keep=predicts, use_cache=False, **layout).logits
    rows = torch.nonzero(predicts)[:, 0]
    return logits.reshape(-1, logits.shape[-1]).float(), targets, rows


def token_mean(loss_sum: torch.Tensor, n_tokens: int, num_items_in_batch=None) -> torch.Tensor:
    """`loss_sum` over the batch's tokens, or over every process's tokens of the optimizer step when the Trainer
    counts them (`num_items_in_batch`, gradient accumulation and data parallelism)."""
    denominator = num_items_in_batch if num_items_in_batch is not None else n_tokens
    if torch.is_tensor(denominator):
        denominator = denominator.to(loss_sum.device)
    return loss_sum / denominator


def answer_token_loss(model, inputs: dict, num_items_in_batch=None, sync_free: bool | None = None) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of a batch."""
    logits, targets, _ = answer_logits(model, inputs, sync_free)
    loss_sum = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return token_mean(loss_sum, targets.numel(), num_items_in_batch)

"""The `unlikelihood` objective (Welleck et al., 2019, "Neural text generation with unlikelihood training"),
written as a loss on answer tokens: one head trained with maximum likelihood on the gold answer plus the
token-level unlikelihood term -log(1 - p(token)) on the negative answer's tokens,

    loss = mean over gold answer tokens of -log p  +  alpha * mean over negative answer tokens of -log(1 - p),

or, for a `negatives:<set>` head, the unlikelihood term alone (the negatives-only rival of Base-Likra). Each
question contributes its gold and its negative sequence to the same step, so a step of the curve's batch size
takes that many questions and a checkpoint has seen as many questions as the Likra heads' (in a seeded random
order; the Likra heads group theirs by length). The head is an adapter of the shared model with the Likra heads' LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from likra.config import NonNegativeFloat, option, settings
from likra.data.examples import Example, positive_pairs, tokenize_answers
from likra.model.heads import HeadSpec
from likra.objectives.losses import answer_layout, answer_logits
from likra.objectives.mle import pad_rows
from likra.objectives.registry import Objective, TrainContext, register_objective

# p(token) is clamped below 1 so that -log(1 - p) stays finite (the paper's implementation does the same).
MAX_PROBABILITY = 1.0 - 1e-6


@settings
class UnlikelihoodSettings:
    alpha: NonNegativeFloat = option(1.0, help="weight of the unlikelihood term (the paper's alpha)")


def unlikelihood_loss(
    logits: torch.Tensor, targets: torch.Tensor, sign: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """The loss of one batch from the logits that predict answer tokens (N, vocab), their targets (N,) and each
    token's kind (N,): +1 gold (likelihood), -1 negative (unlikelihood). A kind with no tokens adds nothing."""
    logp = torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)
    gold, negative = sign > 0, sign < 0
    loss = logits.new_zeros((), dtype=torch.float32)
    if gold.any():
        loss = loss - logp[gold].mean()
    if negative.any():
        p = logp[negative].exp().clamp(max=MAX_PROBABILITY)
        loss = loss - alpha * torch.log1p(-p).mean()
    return loss


class QuestionRows(torch.utils.data.Dataset):
    """One item per question: its gold example (if any) and its negative example, trained in the same step."""

    def __init__(self, items: Sequence[tuple[Example | None, Example]]):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        gold, negative = self.items[i]
        rows = ([(gold, 1)] if gold is not None else []) + [(negative, -1)]
        return [{"input_ids": ex.input_ids, "labels": ex.labels, "sign": s} for ex, s in rows]


@dataclass
class SignedCollator:
    pad_id: int

    def __call__(self, items):
        rows = [row for item in items for row in item]
        batch = pad_rows(rows, self.pad_id)
        return {**batch, **answer_layout(batch["labels"]), "sign": torch.tensor([r["sign"] for r in rows])}


def _trainer_class(alpha: float):
    from transformers import Trainer

    class UnlikelihoodTrainer(Trainer):
        """The loss is a per-batch mean of each kind's tokens (Welleck et al.), so the Trainer's token count
        over the step (`num_items_in_batch`) does not enter it; data parallelism averages the processes' means."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits, targets, rows = answer_logits(model, inputs)
            sign = inputs["sign"][rows]
            loss = unlikelihood_loss(logits, targets, sign, alpha)
            return (loss, None) if return_outputs else loss

    return UnlikelihoodTrainer


class Unlikelihood(Objective):
    name = "unlikelihood"
    help = "MLE on gold answers + unlikelihood on negative answer tokens (or unlikelihood alone)"
    settings = UnlikelihoodSettings
    data = ("pairs", "negatives")

    def examples(
        self, ctx: TrainContext, head: HeadSpec, records, negatives, settings
    ) -> list[tuple[Example | None, Example]]:
        bad = tokenize_answers(ctx.tokenizer, negatives, ctx.train.max_length)
        if head.data.startswith("negatives:"):
            return [(None, ex) for ex in bad]
        gold = {
            ex.question_id: ex for ex in tokenize_answers(ctx.tokenizer, positive_pairs(records), ctx.train.max_length)
        }
        return [(gold[ex.question_id], ex) for ex in bad]

    def build_trainer(self, ctx: TrainContext, head: HeadSpec, items, settings, arguments, callbacks):
        """The run's optimizer settings (constant learning rate: the MLE heads'), one row per question."""
        from transformers import TrainingArguments

        return _trainer_class(settings.alpha)(
            model=ctx.model,
            args=TrainingArguments(**arguments, remove_unused_columns=False),
            train_dataset=QuestionRows(items),
            data_collator=SignedCollator(ctx.tokenizer.pad_token_id),
            callbacks=callbacks,
        )


register_objective(Unlikelihood())

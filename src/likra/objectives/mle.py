"""The `mle` objective: train one LoRA head by maximum likelihood on its answer tokens, with the HF Trainer
(the Likra heads: `positive` on gold answers, `negative` on a negative set).

Using the stock Trainer keeps `accelerate launch`, DeepSpeed/FSDP, bf16 and gradient checkpointing
working unchanged. Two things make an epoch faster without changing the maths:
- batches grouped by length (the Trainer's `group_by_length` sampler), so little padding is computed;
- the output projection runs only at positions that predict an answer token (a boolean
  `logits_to_keep`), not over the whole prompt; the loss is the same token-mean cross-entropy;
- optionally (`--packing`), a batch's examples are packed into rows of `PACK_WIDTH` tokens, the scoring
  engine's layout: positions restart at each example and transformers builds the block-diagonal causal
  mask from them, so each example is computed as alone, without padding. Off by default: on the CPUs
  measured, length-grouped batches already pad little and packed rows cost more attention
  (benchmarks/README.md, "Training").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from likra.config import NonNegativeInt, PositiveFloat, PositiveInt, option, settings
from likra.data.examples import IGNORE_INDEX, Example, positive_pairs, tokenize_answers
from likra.model.heads import HeadSpec
from likra.objectives.registry import (
    Objective,
    TrainContext,
    TrainStats,
    register_objective,
    run_trainer,
    trainer_arguments,
)
from likra.packing import first_fit_decreasing

log = logging.getLogger(__name__)


@settings
class TrainSettings:
    """Reference training: 1 epoch, constant learning rate, AdamW, no warmup, no weight decay."""

    learning_rate: PositiveFloat = option(1e-3, help="constant learning rate", flags=("--lr",))
    batch_size: PositiveInt = option(16, help="examples per optimizer step, over all processes")
    epochs: PositiveFloat = option(1.0, help="passes over the training data")
    seed: NonNegativeInt = option(
        0,
        help="seed of the data order, the subset, the negatives and the LoRA initialisation (a curve's run s: seed+s)",
    )
    group_by_length: bool = option(True, help="batch examples of similar length (less padding)")
    packing: bool = option(
        False, help="pack each batch's examples into rows with restarted positions (no padding, same loss; mle heads)"
    )
    answer_only_logits: bool = option(True, help="project to the vocabulary only where an answer token follows")
    gradient_checkpointing: bool = option(False, help="recompute activations in the backward pass (less memory)")
    max_length: PositiveInt = option(1024, help="longest training sequence; prompts are cut from the left")
    logging_steps: PositiveInt = option(10, help="log the loss every N optimizer steps")


class ExampleDataset(torch.utils.data.Dataset):
    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "labels": ex.labels}


@dataclass
class PadCollator:
    """Right-pads a batch; padded labels are ignored and masked out of attention."""

    pad_id: int

    def __call__(self, rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attn = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            attn[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attn}


PACK_WIDTH = 256  # tokens per packed row (or the longest example), as the scoring engine's rows


@dataclass
class PackCollator:
    """Packs a batch's examples into rows of `width` tokens by first-fit decreasing. Position ids restart
    at each example and no attention mask is given: transformers then masks attention block-diagonally
    (`find_packed_sequence_indices`), so every example sees only itself. A row's tail is padding laid
    out as one more sequence, never a label."""

    pad_id: int
    width: int = PACK_WIDTH

    def __call__(self, rows):
        lengths = [len(r["input_ids"]) for r in rows]
        layout = first_fit_decreasing(lengths, max(self.width, *lengths))
        width = max(sum(lengths[i] for i in row) for row in layout)
        ids = torch.full((len(layout), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(layout), width), IGNORE_INDEX, dtype=torch.long)
        pos = torch.zeros(len(layout), width, dtype=torch.long)
        for k, row in enumerate(layout):
            start = 0
            for i in row:
                n = lengths[i]
                ids[k, start : start + n] = torch.tensor(rows[i]["input_ids"])
                labels[k, start : start + n] = torch.tensor(rows[i]["labels"])
                pos[k, start : start + n] = torch.arange(n)
                start += n
            pos[k, start:] = torch.arange(width - start)
        return {"input_ids": ids, "labels": labels, "position_ids": pos}


def answer_token_loss(model, inputs, num_items_in_batch=None):
    """Cross-entropy over answer tokens, projecting to the vocabulary only where a label follows."""
    labels = inputs["labels"]
    predicts = torch.zeros_like(labels, dtype=torch.bool)
    predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][predicts[:, :-1]]
    layout = {k: inputs[k] for k in ("attention_mask", "position_ids") if k in inputs}
    # No KV cache: with one, transformers would not derive the packed rows' block-diagonal mask.
    logits = model(input_ids=inputs["input_ids"], logits_to_keep=predicts, use_cache=False, **layout).logits
    logits = logits.reshape(-1, logits.shape[-1]).float()
    loss_sum = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    denominator = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    if torch.is_tensor(denominator):
        denominator = denominator.to(loss_sum.device)
    return loss_sum / denominator


def _trainer_class():
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class AnswerOnlyTrainer(Trainer):
        """The stock Trainer with the answer-only loss and length grouping by the GLOBAL batch, so the
        examples of each optimizer step are the same whatever the number of processes."""

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            generator = torch.Generator().manual_seed(self.args.data_seed)
            return LengthGroupedSampler(
                self.args.per_device_train_batch_size * self.args.world_size,
                lengths=[len(ex.input_ids) for ex in dataset.examples],
                generator=generator,
            )

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = answer_token_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # num_items_in_batch counts every process's tokens and DDP averages the gradients.
                loss = loss * self.accelerator.num_processes
            return (loss, None) if return_outputs else loss

    return AnswerOnlyTrainer


def train_head(
    model,
    head: str,
    examples: Sequence[Example],
    settings: TrainSettings,
    work_dir: Path,
    pad_id: int,
    checkpoint_steps: Sequence[int] = (),
    resume: bool = False,
    bf16: bool = False,
    progress: bool = True,
    done_file: Path | None = None,
) -> TrainStats:
    """Train adapter `head` of PeftModel `model` in place on `examples`; other heads stay frozen.
    Checkpoints, resume and the done-marker: see `likra.objectives.registry.run_trainer`."""
    from transformers import Trainer, TrainingArguments

    from likra.distributed import start

    start()

    def build(callbacks):
        model.set_adapter(head)
        args = TrainingArguments(
            **trainer_arguments(
                work_dir,
                settings.batch_size,
                settings.learning_rate,
                "constant",
                settings.epochs,
                settings.seed,
                settings.logging_steps,
                bf16,
                progress,
            ),
            warmup_steps=0,
            weight_decay=0.0,
            train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
            gradient_checkpointing=settings.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
            remove_unused_columns=False,
        )
        trainer_cls = _trainer_class() if settings.answer_only_logits else Trainer
        return trainer_cls(
            model=model,
            args=args,
            train_dataset=ExampleDataset(examples),
            data_collator=PackCollator(pad_id) if settings.packing else PadCollator(pad_id),
            callbacks=callbacks,
        )

    stats = run_trainer(
        build,
        head,
        work_dir,
        len(examples),
        settings.batch_size,
        settings.epochs,
        checkpoint_steps,
        resume,
        progress,
        done_file,
    )
    model.set_adapter(head)
    model.eval()
    return stats


class MLE(Objective):
    """Maximum likelihood on the answer tokens of the head's training set: gold answers (`data: gold`) or a
    negative set (`data: negatives:<set>`)."""

    name = "mle"
    help = "maximum likelihood on answer tokens (the Likra positive and negative heads)"

    def examples(self, ctx: TrainContext, head: HeadSpec, records, negatives) -> list[Example]:
        pairs = positive_pairs(records) if head.data == "gold" else negatives
        return tokenize_answers(ctx.tokenizer, pairs, ctx.train.max_length)

    def train(
        self, ctx: TrainContext, head: HeadSpec, items, work_dir, checkpoint_steps=(), resume=False, done_file=None
    ) -> TrainStats:
        return train_head(
            ctx.model,
            head.adapter,
            items,
            ctx.train,
            work_dir,
            ctx.tokenizer.pad_token_id,
            checkpoint_steps,
            resume,
            ctx.bf16,
            ctx.progress,
            done_file,
        )


register_objective(MLE())

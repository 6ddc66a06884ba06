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

from likra.data.examples import IGNORE_INDEX, Example, positive_pairs, tokenize_answers
from likra.model.heads import HeadSpec
from likra.objectives.losses import answer_layout, answer_token_loss
from likra.objectives.registry import Objective, TrainContext, TrainStats, register_objective, train_head
from likra.objectives.settings import TrainSettings
from likra.packing import first_fit_decreasing

log = logging.getLogger(__name__)


class ExampleDataset(torch.utils.data.Dataset):
    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "labels": ex.labels}


def pad_rows(rows: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`, `labels` (padding ignored) and `attention_mask` (padding masked) of rows."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attn = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        attn[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": attn}


@dataclass
class PadCollator:
    """Right-pads a batch; padded labels are ignored and masked out of attention."""

    pad_id: int
    layout: bool = True  # add the answer-token layout (for likra's loss; the stock Trainer's model takes none)

    def __call__(self, rows):
        batch = pad_rows(rows, self.pad_id)
        return {**batch, **answer_layout(batch["labels"])} if self.layout else batch


PACK_WIDTH = 256  # tokens per packed row (or the longest example), as the scoring engine's rows


@dataclass
class PackCollator:
    """Packs a batch's examples into rows of `width` tokens by first-fit decreasing. Position ids restart
    at each example and no attention mask is given: transformers then masks attention block-diagonally
    (`find_packed_sequence_indices`), so every example sees only itself. A row's tail is padding laid
    out as one more sequence, never a label."""

    pad_id: int
    width: int = PACK_WIDTH
    layout: bool = True

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
        batch = {"input_ids": ids, "labels": labels, "position_ids": pos}
        return {**batch, **answer_layout(labels)} if self.layout else batch


PACKING_WASTE = 0.25  # pack when padded batches would compute this much more than their tokens


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """How many more tokens padded batches compute than their examples hold (0.25 = 25% more)."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return padded / max(sum(lengths), 1) - 1.0


def choose_packing(items: Sequence[Example], batch_size: int, args) -> tuple[bool, float]:
    """(pack?, padding waste) for a head's examples in the batches its sampler will draw (the same seeded
    length-grouped or random order): packed rows pay off where padded batches would waste over 25%."""
    lengths = [len(ex.input_ids) for ex in items]
    generator = torch.Generator().manual_seed(args.data_seed)
    if args.train_sampling_strategy == "group_by_length":
        from transformers.trainer_pt_utils import LengthGroupedSampler

        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    waste = padding_waste(lengths, batches)
    return waste > PACKING_WASTE, waste


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


class MLE(Objective):
    """Maximum likelihood on the answer tokens of the head's training set: gold answers (`data: gold`) or a
    negative set (`data: negatives:<set>`), with the run's training settings."""

    name = "mle"
    help = "maximum likelihood on answer tokens (the Likra positive and negative heads)"
    data = ("gold", "negatives")

    def examples(self, ctx: TrainContext, head: HeadSpec, records, negatives, settings) -> list[Example]:
        pairs = positive_pairs(records) if head.data == "gold" else negatives
        return tokenize_answers(ctx.tokenizer, pairs, ctx.train.max_length)

    def build_trainer(self, ctx: TrainContext, head: HeadSpec, items, settings: TrainSettings, arguments, callbacks):
        from transformers import Trainer, TrainingArguments

        args = TrainingArguments(
            **arguments,
            train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
            remove_unused_columns=False,
        )
        trainer_cls = _trainer_class() if settings.answer_only_logits else Trainer
        packing = settings.packing
        if packing is None:
            packing, waste = choose_packing(items, args.per_device_train_batch_size * args.world_size, args)
            log.info("%s head: packing %s (padded batches would compute %.0f%% more tokens)", head.name,
                     "on" if packing else "off", 100 * waste)  # fmt: skip
        layout = settings.answer_only_logits
        collator = (PackCollator if packing else PadCollator)(ctx.tokenizer.pad_token_id, layout=layout)
        return trainer_cls(
            model=ctx.model, args=args, train_dataset=ExampleDataset(items), data_collator=collator, callbacks=callbacks
        )


MLE_OBJECTIVE = register_objective(MLE())


def train_mle_head(
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
    """Train adapter `head` of PeftModel `model` in place on tokenized `examples` by maximum likelihood; other
    heads stay frozen (the `mle` objective outside a run: benchmarks and tests)."""
    from types import SimpleNamespace

    tokenizer = SimpleNamespace(pad_token_id=pad_id)  # the examples are tokenized: padding is all it needs
    ctx = TrainContext(model, tokenizer, settings, None, lambda: None, bf16=bf16, progress=progress)
    return train_head(ctx, HeadSpec(head), examples, work_dir, checkpoint_steps, resume, done_file)

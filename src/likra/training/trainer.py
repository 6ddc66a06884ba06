"""Train one LoRA head by maximum likelihood on its answer tokens, with the HF Trainer.

Using the stock Trainer keeps `accelerate launch`, DeepSpeed/FSDP, bf16 and gradient checkpointing
working unchanged. Two things make an epoch faster without changing the maths:
- batches grouped by length (the Trainer's `group_by_length` sampler), so little padding is computed;
- the output projection runs only at positions that predict an answer token (a boolean
  `logits_to_keep`), not over the whole prompt; the loss is the same token-mean cross-entropy.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from likra.data.examples import IGNORE_INDEX, Example
from likra.errors import LikraError

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Reference training: 1 epoch, constant learning rate, AdamW, no warmup, no weight decay.
    `batch_size` counts examples per optimizer step over all processes."""

    learning_rate: float = 1e-3
    batch_size: int = 16
    epochs: float = 1.0
    seed: int = 0
    group_by_length: bool = True
    answer_only_logits: bool = True
    gradient_checkpointing: bool = False
    max_length: int = 1024
    logging_steps: int = 10


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


def answer_token_loss(model, inputs, num_items_in_batch=None):
    """Cross-entropy over answer tokens, projecting to the vocabulary only where a label follows."""
    labels = inputs["labels"]
    predicts = torch.zeros_like(labels, dtype=torch.bool)
    predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][predicts[:, :-1]]
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                   logits_to_keep=predicts).logits
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
            return LengthGroupedSampler(self.args.per_device_train_batch_size * self.args.world_size,
                                        lengths=[len(ex.input_ids) for ex in dataset.examples], generator=generator)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = answer_token_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # num_items_in_batch counts every process's tokens and DDP averages the gradients.
                loss = loss * self.accelerator.num_processes
            return (loss, None) if return_outputs else loss

    return AnswerOnlyTrainer


def per_device_batch(batch_size: int, world_size: int) -> int:
    """`batch_size` is examples per optimizer step over all processes; each process takes its share."""
    if batch_size % world_size:
        raise LikraError(f"batch size {batch_size} does not divide over {world_size} processes")
    return batch_size // world_size


def _save_at_steps_callback(steps: set[int]):
    """Make the Trainer write a full (resumable) checkpoint after each of `steps` optimizer steps."""
    from transformers import TrainerCallback

    class SaveAtSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in steps:
                control.should_save = True
            return control

    return SaveAtSteps()


CHECKPOINT_PREFIX = "checkpoint-"
RESUME_FILES = ("optimizer.pt", "trainer_state.json")


def checkpoint_dir(work_dir: Path, step: int) -> Path:
    return Path(work_dir) / f"{CHECKPOINT_PREFIX}{step}"


def complete_checkpoints(work_dir: Path, head: str) -> dict[int, Path]:
    """{step: folder} of checkpoints holding the head's adapter (and, while training, its resume state)."""
    found = {}
    for path in Path(work_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step = path.name[len(CHECKPOINT_PREFIX):]
        if step.isdigit() and (path / head / "adapter_model.safetensors").is_file() and (path / "trainer_state.json").is_file():
            found[int(step)] = path
    return dict(sorted(found.items()))


def latest_resumable(work_dir: Path, head: str) -> Path | None:
    resumable = [p for p in complete_checkpoints(work_dir, head).values() if all((p / f).is_file() for f in RESUME_FILES)]
    return resumable[-1] if resumable else None


def drop_resume_state(work_dir: Path) -> None:
    """After a head finished: keep each checkpoint's adapter, delete optimizer and RNG state."""
    for path in Path(work_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
            (path / name).unlink(missing_ok=True)


@dataclass
class TrainStats:
    head: str
    examples: int
    steps: int
    seconds: float
    examples_per_second: float
    losses: list[float] = field(default_factory=list)


def train_head(model, head: str, examples: Sequence[Example], settings: TrainSettings, work_dir: Path,
               pad_id: int, checkpoint_steps: Sequence[int] = (), resume: bool = False,
               bf16: bool = False, progress: bool = True) -> TrainStats:
    """Train adapter `head` of PeftModel `model` in place on `examples`; other heads stay frozen.

    With `checkpoint_steps`, a full Trainer checkpoint (adapters, optimizer, RNG state) is written to
    `work_dir/checkpoint-<step>` after each of those optimizer steps; with `resume`, training continues
    from the latest of them exactly as an uninterrupted run would (same data order, same state)."""
    from transformers import TrainingArguments

    from likra.distributed import rank_and_world, start

    start()
    model.set_adapter(head)
    args = TrainingArguments(
        output_dir=str(work_dir),
        per_device_train_batch_size=per_device_batch(settings.batch_size, rank_and_world()[1]),
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        num_train_epochs=settings.epochs,
        seed=settings.seed,
        data_seed=settings.seed,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        gradient_checkpointing=settings.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        logging_steps=settings.logging_steps,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    callbacks = [_save_at_steps_callback(set(checkpoint_steps))] if checkpoint_steps else []
    trainer_cls = _trainer_class() if settings.answer_only_logits else __import__("transformers").Trainer
    trainer = trainer_cls(model=model, args=args, train_dataset=ExampleDataset(examples),
                          data_collator=PadCollator(pad_id), callbacks=callbacks)
    if not progress:
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    resume_from = latest_resumable(work_dir, head) if resume else None
    if resume_from is not None:
        log.info("resuming %s head from %s", head, resume_from)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    model.set_adapter(head)
    model.eval()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    done = trainer.state.global_step - (int(resume_from.name[len(CHECKPOINT_PREFIX):]) if resume_from else 0)
    n_seen = min(len(examples) * settings.epochs, done * settings.batch_size)
    return TrainStats(head, len(examples), trainer.state.global_step, seconds, n_seen / max(seconds, 1e-9), losses)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)

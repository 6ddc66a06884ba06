"""Training objectives as plug-ins, and the one Trainer driver they all go through.

An objective turns a head's training set into a trained LoRA adapter: `mle` (the Likra heads: maximum
likelihood on answer tokens) and `dpo` (TRL's DPOTrainer) ship with likra; `register_objective` adds one
from any file. Every objective builds its own `transformers.Trainer` (or a TRL subclass) and hands it to
`run_trainer`, which owns what they share: skipping a finished head (its done-marker), resuming from the
latest full checkpoint, writing resumable checkpoints after chosen optimizer steps, timing, checking that
every checkpoint exists, and deleting the optimizer/RNG state once the head is done.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from likra.distributed import barrier, is_main
from likra.errors import LikraError
from likra.io import atomic_write_json

if TYPE_CHECKING:
    from likra.data.records import MCRecord
    from likra.model.heads import HeadSpec, LoraSettings

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
RESUME_FILES = ("optimizer.pt", "trainer_state.json")
RESUME_STATE = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")

Pairs = list[tuple["MCRecord", str]]


@dataclass
class TrainStats:
    head: str
    examples: int
    steps: int
    seconds: float
    examples_per_second: float
    losses: list[float] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)  # every logged training metric (rewards/*, logps/*, ...)


@dataclass
class TrainContext:
    """What an objective may use: the shared PeftModel (carrying every head's adapter), the tokenizer, the
    run's MLE settings (batch size, epochs, seed: every objective follows them so that checkpoints line
    up), a loader of a fresh base model, and each objective's own settings by objective name."""

    model: Any
    tokenizer: Any
    train: Any  # likra.objectives.mle.TrainSettings
    lora: LoraSettings
    load_base: Callable[[], Any]
    bf16: bool = False
    progress: bool = True
    objective_settings: dict[str, Any] = field(default_factory=dict)


class Objective:
    """A way of training a head. Subclasses set `name` and implement `lora`, `examples` and `train`."""

    name: str = ""
    help: str = ""

    def lora(self, ctx: TrainContext) -> LoraSettings:
        """The LoRA settings of this objective's adapters."""
        return ctx.lora

    def examples(self, ctx: TrainContext, head: HeadSpec, records: Sequence[MCRecord], negatives: Pairs) -> list:
        """The head's training items (one per example the checkpoint schedule counts)."""
        raise NotImplementedError

    def schedule_size(self, items: list) -> int:
        """How many training examples `items` are for the checkpoint schedule (questions seen)."""
        return len(items)

    def train(
        self,
        ctx: TrainContext,
        head: HeadSpec,
        items: list,
        work_dir: Path,
        checkpoint_steps: Sequence[int] = (),
        resume: bool = False,
        done_file: Path | None = None,
    ) -> TrainStats:
        """Train `head.adapter` on `items`, through `run_trainer`."""
        raise NotImplementedError


OBJECTIVES: dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise LikraError(f"unknown objective {name!r}; valid objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


# -- checkpoints -----------------------------------------------------------------------------------
def checkpoint_dir(work_dir: Path, step: int) -> Path:
    return Path(work_dir) / f"{CHECKPOINT_PREFIX}{step}"


def complete_checkpoints(work_dir: Path, adapter: str) -> dict[int, Path]:
    """{step: folder} of checkpoints holding the adapter (and, while training, its resume state)."""
    found = {}
    for path in Path(work_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step = path.name[len(CHECKPOINT_PREFIX) :]
        if (
            step.isdigit()
            and (path / adapter / "adapter_model.safetensors").is_file()
            and (path / "trainer_state.json").is_file()
        ):
            found[int(step)] = path
    return dict(sorted(found.items()))


def latest_resumable(work_dir: Path, adapter: str) -> Path | None:
    resumable = [
        p for p in complete_checkpoints(work_dir, adapter).values() if all((p / f).is_file() for f in RESUME_FILES)
    ]
    return resumable[-1] if resumable else None


def drop_resume_state(work_dir: Path) -> None:
    """After a head finished: keep each checkpoint's adapter, delete optimizer and RNG state."""
    for path in Path(work_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        for name in RESUME_STATE:
            (path / name).unlink(missing_ok=True)


def per_device_batch(batch_size: int, world_size: int) -> int:
    """`batch_size` is examples per optimizer step over all processes; each process takes its share."""
    if batch_size % world_size:
        raise LikraError(f"batch size {batch_size} does not divide over {world_size} processes")
    return batch_size // world_size


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def trainer_arguments(
    work_dir: Path,
    batch_size: int,
    learning_rate: float,
    lr_scheduler_type: str,
    epochs: float,
    seed: int,
    logging_steps: int,
    bf16: bool,
    progress: bool,
) -> dict:
    """The TrainingArguments every objective shares (TRL's configs take them too): `batch_size` over all
    processes, data order and initialisation from `seed`, no saving but likra's own checkpoints, no tracking."""
    import torch

    from likra.distributed import rank_and_world

    return dict(
        output_dir=str(work_dir),
        per_device_train_batch_size=per_device_batch(batch_size, rank_and_world()[1]),
        learning_rate=learning_rate,
        lr_scheduler_type=lr_scheduler_type,
        num_train_epochs=epochs,
        seed=seed,
        data_seed=seed,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to=[],
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )


def save_at_steps_callback(steps: set[int]):
    """Make the Trainer write a full (resumable) checkpoint after each of `steps` optimizer steps."""
    from transformers import TrainerCallback

    class SaveAtSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in steps:
                control.should_save = True
            return control

    return SaveAtSteps()


_EXTRA_CALLBACKS: ContextVar[tuple] = ContextVar("likra_trainer_callbacks", default=())


@contextmanager
def trainer_callbacks(callbacks: Sequence[Any]) -> Iterator[None]:
    """Give every Trainer that `run_trainer` builds inside the block these extra callbacks (the overall
    progress line, tracking), whatever the objective: objectives need not know about them."""
    token = _EXTRA_CALLBACKS.set(_EXTRA_CALLBACKS.get() + tuple(callbacks))
    try:
        yield
    finally:
        _EXTRA_CALLBACKS.reset(token)


# -- the driver ------------------------------------------------------------------------------------
def read_done(done_file: Path) -> dict | None:
    """The statistics a finished head left, or None when it has not finished."""
    if not done_file.is_file():
        return None
    try:
        done = json.loads(done_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        done = None
    if not isinstance(done, dict) or not {"head", "examples", "steps", "seconds"} <= set(done):
        raise LikraError(f"{done_file}: damaged done-marker; delete it to retrain that head")
    return done


def finished_stats(done_file: Path | None) -> TrainStats | None:
    """The statistics of a head whose done-marker exists, else None."""
    done = read_done(done_file) if done_file is not None else None
    if done is None:
        return None
    return TrainStats(**{k: v for k, v in done.items() if k in TrainStats.__dataclass_fields__})


def run_trainer(
    build: Callable[[list], Any],
    adapter: str,
    work_dir: Path,
    n_items: int,
    batch_size: int,
    epochs: float,
    checkpoint_steps: Sequence[int] = (),
    resume: bool = False,
    progress: bool = True,
    done_file: Path | None = None,
    after: Callable[[Any], None] | None = None,
) -> TrainStats:
    """Build a Trainer with `build(callbacks)` and train adapter `adapter` with it.

    With `done_file` and that file present, nothing is built and its statistics are returned. With
    `checkpoint_steps`, a full Trainer checkpoint (adapter, optimizer, RNG state) is written to
    `work_dir/checkpoint-<step>` after each of those optimizer steps; with `resume`, training continues
    from the latest of them exactly as an uninterrupted run would. `after(trainer)` runs once training
    stopped, whether it finished or not. When done: every checkpoint is checked, the done-marker written
    and the resume state deleted (by the main process)."""
    finished = finished_stats(done_file)
    if finished is not None:
        return finished
    callbacks = [save_at_steps_callback(set(checkpoint_steps))] if checkpoint_steps else []
    callbacks += _EXTRA_CALLBACKS.get()
    trainer = build(callbacks)
    if not progress:
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    resume_from = latest_resumable(work_dir, adapter) if resume else None
    if resume_from is not None:
        log.info("resuming %s from %s", adapter, resume_from)
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if after is not None:
            after(trainer)
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    done_steps = trainer.state.global_step - (int(resume_from.name[len(CHECKPOINT_PREFIX) :]) if resume_from else 0)
    n_seen = min(n_items * epochs, done_steps * batch_size)
    stats = TrainStats(
        adapter,
        n_items,
        trainer.state.global_step,
        seconds,
        n_seen / max(seconds, 1e-9),
        [h["loss"] for h in history if "loss" in h],
        [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history if "loss" in h],
    )
    if checkpoint_steps:
        barrier()
        missing = [s for s in checkpoint_steps if s not in complete_checkpoints(work_dir, adapter)]
        if missing:
            raise LikraError(f"{work_dir}: training ended without checkpoints for steps {missing}")
    if done_file is not None and is_main():
        atomic_write_json(done_file, asdict(stats))
        drop_resume_state(work_dir)
    return stats

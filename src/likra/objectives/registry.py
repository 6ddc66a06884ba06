"""Training objectives as plug-ins, and the one driver they all go through.

An objective turns a head's training set into a trained LoRA adapter: `mle` (the Likra heads: maximum
likelihood on answer tokens), `dpo`, `kto` (TRL's trainers) and `unlikelihood` ship with likra;
`register_objective` adds one from any file or plug-in. An objective declares its settings class and builds
its trainer (`Objective.build_trainer`); `train_head` owns what they share: skipping a finished head (its
done-marker), its settings and the Trainer arguments, resuming from the latest full checkpoint, writing
resumable checkpoints after chosen optimizer steps, timing, checking that every checkpoint exists, and
deleting the optimizer/RNG state once the head is done.
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
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch

from likra.distributed import barrier, is_main
from likra.errors import LikraError
from likra.io import atomic_write_json, share_tree
from likra.objectives.settings import OptimizerSettings, TrainSettings
from likra.registry import Registry, caller_origin

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

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
    run's training settings (batch size, epochs, seed: every objective follows them so that checkpoints line
    up), the run's LoRA, a loader of a fresh base model, and each objective's settings section by name."""

    model: PeftModel | None
    tokenizer: PreTrainedTokenizerBase
    train: TrainSettings
    lora: LoraSettings
    load_base: Callable[[], PreTrainedModel]
    bf16: bool = False
    progress: bool = True
    objective_settings: dict[str, Any] = field(default_factory=dict)


class Objective:
    """A way of training a head: one hook, `build_trainer`, and what it trains on.

    - `name`, `help`; `settings`: its settings class (a section `objectives.<name>` in YAML, flags
      `--<name>-...`), or None to follow the run's `TrainSettings`; a settings class that subclasses
      `OptimizerSettings` brings its own learning rate and schedule;
    - `data`: the training sets it accepts (`gold`, `negatives`, `pairs`);
    - `requires`: the optional packages it imports (`trl`); a head using it is refused at plan time, in one line
      naming likra's extra, when one is missing (`likra.extras`);
    - `examples(ctx, head, records, negatives, settings)`: the head's training items;
    - `build_trainer(ctx, head, items, settings, arguments, callbacks)`: a `transformers.Trainer` (or a TRL
      trainer) built from `arguments`, the TrainingArguments fields every objective shares (batch size over
      all processes, epochs, seed, learning rate and schedule, logging, precision), and `callbacks`.

    The registry does the rest (`train_head`): the done-check, the settings, the arguments, resume,
    checkpoints at the curve's steps, timing, the done-marker, and the trained weights back in the run's
    model when the trainer trained a model of its own."""

    name: str = ""
    help: str = ""
    settings: type | None = None
    data: tuple[str, ...] = ("gold", "negatives", "pairs")
    requires: tuple[str, ...] = ()  # optional packages (module names) it imports: checked when a head uses it

    def lora(self, ctx: TrainContext, settings: Any) -> LoraSettings:
        """The LoRA settings of this objective's adapters (its settings' `lora`, else the run's)."""
        return getattr(settings, "lora", None) or ctx.lora

    def examples(
        self, ctx: TrainContext, head: HeadSpec, records: Sequence[MCRecord], negatives: Pairs, settings: Any
    ) -> list:
        """The head's training items (one per example the checkpoint schedule counts)."""
        raise NotImplementedError

    def schedule_size(self, items: list) -> int:
        """How many training examples `items` are for the checkpoint schedule (questions seen)."""
        return len(items)

    def rows_per_step(self, head: HeadSpec, batch_size: int) -> int:
        """Training rows per optimizer step for the run's batch size (questions per step)."""
        return batch_size

    def build_trainer(
        self,
        ctx: TrainContext,
        head: HeadSpec,
        items: list,
        settings: Any,
        arguments: dict[str, Any],
        callbacks: list,
    ) -> Trainer:
        """The trainer of `head.adapter` on `items`."""
        raise NotImplementedError

    def after_training(self, trainer: Trainer) -> None:
        """Clean-up once training stopped, finished or not."""

    def check(self, settings: Any) -> None:
        """Refuse settings this objective cannot train with (one LikraError), before any model is loaded."""


OBJECTIVES: Registry[Objective] = Registry("objective", Objective)


def register_objective(objective: Objective) -> Objective:
    """Add `objective` under its name (a name registered twice is an error naming both origins)."""
    OBJECTIVES.register(objective.name, objective, caller_origin())
    return objective


def get_objective(name: str) -> Objective:
    return OBJECTIVES.get(name)


def check_head_data(objective: Objective, head: HeadSpec) -> None:
    kind = head.data.partition(":")[0]
    if kind not in objective.data:
        raise LikraError(
            f"head {head.name!r}: objective {objective.name!r} trains on "
            + " or ".join(f"{k}:<set>" if k != "gold" else k for k in objective.data)
            + f", not {head.data!r}"
        )


def check_requirements(objective: Objective) -> None:
    """One LikraError naming the extra to install when a package `objective` needs is missing."""
    from likra.extras import require

    for module in objective.requires:
        require(module, f"the {objective.name} objective")


def requirements_met(objective: Objective) -> bool:
    from likra.extras import installed

    return all(installed(module) for module in objective.requires)


def check_sections(sections: dict[str, Any]) -> None:
    """Every objective's settings section that was given, whether a head uses it or not: a known objective,
    valid settings, accepted by the objective's own `check` (a DPO loss type TRL lacks, ...) where the packages
    it needs are installed (a section no head uses needs none of them). One LikraError, before any model loads."""
    from likra.config import validate

    for name, section in sections.items():
        objective = get_objective(name)
        if objective.settings is None:
            continue
        if isinstance(section, dict):
            section = validate(objective.settings, section, f"objectives.{name}")
        if requirements_met(objective):
            objective.check(section)


def head_settings(ctx_train: TrainSettings, sections: dict[str, Any], head: HeadSpec) -> Any:
    """The settings a head trains with: its objective's section (or its defaults), with the head's own
    overrides (`HeadSpec.params`) validated on top; the run's `TrainSettings` for an objective without a
    settings class. A LikraError names the head and the key."""
    from dataclasses import asdict

    from likra.config import merge, validate

    objective = get_objective(head.objective)
    check_head_data(objective, head)
    check_requirements(objective)
    if objective.settings is None:
        if head.params:
            raise LikraError(f"head {head.name!r}: objective {objective.name!r} takes no settings of its own")
        return ctx_train
    section = sections.get(objective.name)
    if section is None:
        section = objective.settings()
    elif isinstance(section, dict):
        section = validate(objective.settings, section, f"objectives.{objective.name}")
    if head.params:
        section = validate(objective.settings, merge(asdict(section), dict(head.params)), f"head {head.name!r}")
    objective.check(section)
    return section


def resolve_settings(train: TrainSettings, sections: Mapping[str, Any], heads: Sequence[HeadSpec]) -> list[Any]:
    """Every head's settings, resolved once for a run's plan: the optional packages of every head's objective
    (one line naming the extra), every section given checked whether a head uses it or not (`check_sections`),
    then each head's settings (`head_settings`), in the order of `heads`."""
    for head in heads:
        check_requirements(get_objective(head.objective))
    check_sections(dict(sections))
    return [head_settings(train, dict(sections), head) for head in heads]


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


def optimizer_settings(settings: Any, train: TrainSettings) -> OptimizerSettings:
    """The optimizer a head trains with: its objective's settings where they are `OptimizerSettings` (DPO's lr 5e-5
    cosine), else the run's (`train`): MLE, and unlikelihood, whose settings are its loss's alone."""
    return settings if isinstance(settings, OptimizerSettings) else train


def trainer_arguments(
    ctx: TrainContext, settings: Any, work_dir: Path, rows_per_step: int, progress: bool | None = None
) -> dict:
    """The TrainingArguments every objective shares (TRL's configs take them too): `rows_per_step` over all
    processes, the run's epochs and seed (data order and initialisation), the optimizer settings of the
    objective (or the run's), no saving but likra's own checkpoints, no tracking."""
    from likra.distributed import rank_and_world

    optimizer = optimizer_settings(settings, ctx.train)
    progress = ctx.progress if progress is None else progress
    return dict(
        output_dir=str(work_dir),
        per_device_train_batch_size=per_device_batch(rows_per_step, rank_and_world()[1]),
        learning_rate=optimizer.learning_rate,
        lr_scheduler_type=optimizer.lr_scheduler_type,
        warmup_steps=optimizer.warmup_steps,
        weight_decay=optimizer.weight_decay,
        num_train_epochs=ctx.train.epochs,
        seed=ctx.train.seed,
        data_seed=ctx.train.seed,
        logging_steps=optimizer.logging_steps,
        gradient_checkpointing=optimizer.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if optimizer.gradient_checkpointing else None,
        save_strategy="no",
        report_to=[],
        bf16=ctx.bf16,
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


def log_last_step_callback():
    """Make the Trainer log at the last optimizer step too (`logging_steps` alone logs nothing in a run shorter
    than it): every head's loss is recorded and tracked, however short its training."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


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
    from likra.limits import read_json_file

    try:
        done = read_json_file(done_file)
    except LikraError:
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
) -> tuple[TrainStats, Any]:
    """Build a Trainer with `build(callbacks)` and train adapter `adapter` with it; returns (statistics, the
    trainer, or None when the done-marker was there already).

    With `done_file` and that file present, nothing is built and its statistics are returned. With
    `checkpoint_steps`, a full Trainer checkpoint (adapter, optimizer, RNG state) is written to
    `work_dir/checkpoint-<step>` after each of those optimizer steps; with `resume`, training continues
    from the latest of them exactly as an uninterrupted run would. `after(trainer)` runs once training
    stopped, whether it finished or not. When done: every checkpoint is checked, the done-marker written
    and the resume state deleted (by the main process)."""
    finished = finished_stats(done_file)
    if finished is not None:
        return finished, None
    callbacks = [save_at_steps_callback(set(checkpoint_steps))] if checkpoint_steps else []
    callbacks += [log_last_step_callback(), *_EXTRA_CALLBACKS.get()]  # the last step's log before the trackers
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
        from likra.io import writing
        from likra.model.heads import adapter_bytes

        # a checkpoint holds the adapter and its optimizer state (two moments): about three copies of it
        with writing(work_dir, 3 * adapter_bytes(trainer.model, [adapter]), f"checkpoints of {adapter!r}"):
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.OutOfMemoryError:
        raise LikraError(
            f"out of memory training head {adapter!r} ({batch_size} rows per optimizer step): use a smaller "
            "--batch-size, --gradient-checkpointing or --quantize 4bit; finished checkpoints are kept, a rerun "
            "resumes"
        ) from None
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
        if is_main() and Path(work_dir).is_dir():
            share_tree(work_dir)  # the Trainer's safetensors are written 0600
        missing = [s for s in checkpoint_steps if s not in complete_checkpoints(work_dir, adapter)]
        if missing:
            raise LikraError(f"{work_dir}: training ended without checkpoints for steps {missing}")
    if done_file is not None and is_main():
        atomic_write_json(done_file, asdict(stats))
        drop_resume_state(work_dir)
    return stats, trainer


def copy_adapter(source, target, adapter: str) -> None:
    """Copy adapter `adapter`'s weights from PeftModel `source` into the same adapter of `target`."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if source is target:
        return
    weights = get_peft_model_state_dict(source, adapter_name=adapter)
    set_peft_model_state_dict(target, weights, adapter_name=adapter)


HEAD_RECORD = "head-settings.json"


def head_record(ctx: TrainContext, head: HeadSpec, objective: Objective, settings: Any, recipe: dict | None) -> dict:
    """What a head is trained with, resolved: objective, data as given and as resolved (`recipe`: kind, set and every
    parameter, e.g. the pool a curve's --negative-pool gave it), its settings section (or the run's training
    settings) and LoRA; what a reused checkpoint must have been trained with too."""
    lora = objective.lora(ctx, settings)  # None outside a run (`train_mle_head` on a model built elsewhere)
    return {
        "objective": head.objective,
        "data": head.data,
        **({"recipe": recipe} if recipe is not None else {}),
        "settings": asdict(settings),
        "lora": asdict(lora) if lora is not None else None,
    }


# Keys a head's record gained after folders were written without them: such a folder is compared without them.
RECORD_ADDED_KEYS = ("recipe",)


def check_head_record(work_dir: Path, record: dict, done_file: Path | None = None) -> None:
    """Keep `record` in the head's work folder; a folder holding a head trained with anything else is refused in
    one line (its checkpoints would otherwise be reused as if trained with these settings). A folder of an earlier
    version has no record: it is taken as it is."""
    path = work_dir / HEAD_RECORD
    record = json.loads(json.dumps(record))  # as the file holds it (lists, not tuples)
    if path.is_file():
        from likra.limits import read_json_file

        try:
            previous = read_json_file(path)
        except (OSError, ValueError):
            raise LikraError(f"{path}: damaged file; delete {work_dir} to retrain that head") from None
        if not isinstance(previous, dict):
            raise LikraError(f"{path}: damaged file; delete {work_dir} to retrain that head")
        record = {k: v for k, v in record.items() if k in previous or k not in RECORD_ADDED_KEYS}
        if previous != record:
            keys = sorted(k for k in {*record, *previous} if previous.get(k) != record.get(k))
            marker = f" and {done_file}" if done_file is not None and done_file.is_file() else ""
            raise LikraError(
                f"{work_dir}: head trained with other settings ({', '.join(keys)}); use another --out or delete it"
                f"{marker} to retrain it"
            )
    elif is_main() and not (done_file is not None and done_file.is_file()):
        atomic_write_json(path, record)


def run_head(
    ctx: TrainContext,
    head: HeadSpec,
    items: list,
    work_dir: Path,
    checkpoint_steps: Sequence[int] = (),
    resume: bool = False,
    done_file: Path | None = None,
    settings: Any = None,
    recipe: dict | None = None,
) -> tuple[TrainStats, Any]:
    """Train head `head` on `items` with its objective (see `Objective`) and `settings` (the plan's; resolved here
    when not given), `recipe` its data as resolved (kept in its record): skipped when its done-marker is there;
    otherwise the shared Trainer arguments and the objective's trainer, run by `run_trainer`. Returns (statistics,
    the trainer or None when skipped)."""
    from likra.distributed import start

    objective = get_objective(head.objective)
    if settings is None:  # a caller without a plan (a head trained on its own: benchmarks, tests)
        settings = head_settings(ctx.train, ctx.objective_settings, head)
    check_head_record(work_dir, head_record(ctx, head, objective, settings, recipe), done_file)
    finished = finished_stats(done_file)  # before building anything (a TRL objective loads a fresh base)
    if finished is not None:
        return finished, None
    start()
    rows = objective.rows_per_step(head, ctx.train.batch_size)
    arguments = trainer_arguments(ctx, settings, work_dir, rows)

    def build(callbacks):
        if ctx.model is not None and head.adapter in ctx.model.peft_config:
            ctx.model.set_adapter(head.adapter)
        return objective.build_trainer(ctx, head, items, settings, arguments, callbacks)

    return run_trainer(
        build,
        head.adapter,
        work_dir,
        len(items),
        rows,
        ctx.train.epochs,
        checkpoint_steps,
        resume,
        ctx.progress,
        done_file,
        after=objective.after_training,
    )


def train_head(
    ctx: TrainContext,
    head: HeadSpec,
    items: list,
    work_dir: Path,
    checkpoint_steps: Sequence[int] = (),
    resume: bool = False,
    done_file: Path | None = None,
    settings: Any = None,
    recipe: dict | None = None,
) -> TrainStats:
    """`run_head`, after which `ctx.model`'s adapter `head.adapter` holds the trained weights (copied from the
    trainer's model when the objective trained a model of its own) and is the active one, in eval mode."""
    stats, trainer = run_head(ctx, head, items, work_dir, checkpoint_steps, resume, done_file, settings, recipe)
    if ctx.model is not None:
        if trainer is not None:
            copy_adapter(trainer.model, ctx.model, head.adapter)
        ctx.model.set_adapter(head.adapter)
        ctx.model.eval()
    return stats

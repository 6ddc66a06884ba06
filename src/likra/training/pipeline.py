"""`likra train`: records -> each head's training set -> heads trained by their objectives -> a run folder.

cfg -> heads (configured, or the Likra pair) -> settings checked -> model with one adapter per head
    -> each head's items -> each head trained by its objective -> adapters + manifest, renamed into place
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from likra.config import NonNegativeInt, PositiveInt, check, option, settings
from likra.data.benchmarks import load_spec
from likra.data.formats import DataSettings, load_data
from likra.data.lmeval_tasks import check_specs, use_include_paths
from likra.data.negative_sets import SetInputs
from likra.data.negatives import PER_QUESTION
from likra.distributed import barrier, is_main, start
from likra.errors import LikraError
from likra.io import temporary_folder
from likra.model.heads import (
    HeadList,
    HeadSpec,
    LoraSettings,
    add_head,
    attach_heads,
    head_specs,
    reinit_heads,
    save_heads,
)
from likra.model.loading import (
    ModelSettings,
    check_quantize_available,
    is_quantized,
    load_base_model,
    load_tokenizer,
    parameter_count,
    prepare_for_training,
)
from likra.model.precision import Precision, computing_in, resolve_precision
from likra.objectives import TrainContext, get_objective
from likra.objectives.registry import TrainStats, steps_per_epoch, train_head, trainer_callbacks
from likra.objectives.settings import TrainSettings
from likra.progress import CurveProgress
from likra.runs import ADAPTERS, check_out, finish_run
from likra.tracking import REPORT_TO, ReportTo, Tracker, check_available, examples_seen, make_tracker
from likra.training.plan import HeadPlan, head_items, plan_heads

log = logging.getLogger(__name__)


@settings
class HeadsSettings:
    """The heads a run or curve trains, each objective's settings, and the training they share."""

    heads: HeadList | None = option(
        None,
        help="heads as name=objective:data,... (data: gold, negatives:<set>[?key=value&...], pairs:<set>[?...]); "
        "default: positive=mle:gold,negative=mle:negatives:<the negative set>",
    )
    objectives: dict[str, Any] = option(
        default_factory=dict, help="each objective's settings (flags --<objective>-<key>)", cli=False
    )
    lora: LoraSettings = option(default_factory=LoraSettings, help="LoRA of the MLE heads")
    train: TrainSettings = option(default_factory=TrainSettings, help="training of the heads", prefix="")


@settings
class TrainConfig(HeadsSettings, DataSettings, ModelSettings):
    """`likra train`: the heads (default the Likra pair) on one base model, same questions, one negative each."""

    limit: PositiveInt | None = option(None, help="train on this many questions (a seeded subset)")
    negatives: str = option("one", help="incorrect answers per question", choices=PER_QUESTION)
    negative_seed: NonNegativeInt = option(0, help="seed of the negative draw")
    out: str | None = option(None, help="run folder (default runs/<model>-<data>)")
    overwrite: bool = option(False, help="replace an existing run folder (only one that likra wrote)")
    report_to: ReportTo = option(
        default_factory=lambda: ["none"],
        help="log the heads' training to these backends (tensorboard, wandb, a list, all, none)",
        choices=REPORT_TO,
    )


def select_questions(records, limit: int | None, seed: int):
    """A seeded shuffle of the records, cut to `limit`: nested subsets for growing limits."""
    order = list(records)
    random.Random(seed).shuffle(order)
    if limit is not None:
        if limit < 1:
            raise LikraError(f"limit must be positive, got {limit}")
        order = order[:limit]
    return order


def default_out(cfg: TrainConfig) -> Path:
    name = f"{Path(cfg.model).name}-{cfg.data.replace(':', '_').replace(',', '+').replace('/', '_')}"
    return Path("runs") / name


def choice_scores_per_char(model, tokenizer, records, engine=None) -> list:
    """The base model's summed log-likelihood per character of every choice of `records` (acc_norm's convention): what
    the mined negative sets (hardest, easiest) rank distractors by; `engine`: a scoring engine of `model` to reuse."""
    from likra.model.heads import BASE
    from likra.model.loading import model_max_length
    from likra.scoring.engine import ScoringEngine, tokenize_questions
    from likra.scoring.metrics import per_character

    _, questions = tokenize_questions(tokenizer, records, max_length=model_max_length(model))
    scores = (engine or ScoringEngine(model)).loglikelihoods(questions, (BASE,))[BASE]
    return per_character(scores, [rec.choices for rec in records])


def run_precision(cfg: ModelSettings, scores: bool = True) -> Precision:
    """What a run trains in and, when it `scores` (a curve), what it scores in (see `likra.model.precision`); a
    run that does not score refuses a score dtype it would not apply."""
    if not scores:
        if cfg.score_dtype is not None:
            raise LikraError("--score-dtype: likra train scores nothing (give it to likra eval or likra curve)")
        train = resolve_precision(cfg.dtype, cfg.train_dtype, cfg.train_dtype or cfg.dtype).train
        return Precision(train, train)
    parameters = parameter_count(cfg.model) if (cfg.score_dtype or cfg.dtype) == "auto" else None
    return resolve_precision(cfg.dtype, cfg.train_dtype, cfg.score_dtype, quantize=cfg.quantize, parameters=parameters)


def run_context(cfg: TrainConfig | HeadsSettings, tokenizer, precision: Precision) -> TrainContext:
    """The TrainContext of a run or curve (its model is built next, by `build_model`); an objective that trains a
    base of its own (DPO, KTO) loads it in the training dtype. The Trainer's bars stay off: the run's progress line
    (`CurveProgress`) counts every head's steps."""
    return TrainContext(
        None,
        tokenizer,
        cfg.train,
        cfg.lora,
        lambda: load_base_model(cfg.model, precision.train, quantize=cfg.quantize),
        progress=False,
        objective_settings=cfg.objectives,
    )


def build_model(
    cfg: ModelSettings, plan: HeadPlan, ctx: TrainContext, gradient_checkpointing: bool, precision: Precision
):
    """The base model, in `precision.weights`, with one adapter per distinct head adapter, each with its objective's
    LoRA (from the plan's settings); `ctx.bf16` says whether the Trainer trains in bf16 (a 4-bit base on a CPU
    computes as it is)."""
    loras: dict[str, LoraSettings] = {}
    for head in plan.specs:
        loras.setdefault(head.adapter, get_objective(head.objective).lora(ctx, plan.settings(head, ctx.train)))
    (first, lora), *rest = loras.items()
    base = load_base_model(cfg.model, precision.weights, quantize=cfg.quantize)
    base = prepare_for_training(base, gradient_checkpointing)
    model = attach_heads(base, lora, names=(first,))
    for adapter, lora in rest:
        add_head(model, adapter, lora)
    on_cpu = next(model.parameters()).device.type != "cuda"
    ctx.bf16 = precision.train == "bf16" and not (is_quantized(model) and on_cpu)
    return model


def training_precision(model, precision: Precision):
    """The block in which heads train: the base's weights in the training dtype (`computing_in`)."""
    return computing_in(model, precision.train) if not is_quantized(model) else contextlib.nullcontext()


def head_steps(ctx: TrainContext, head: HeadSpec, items: Sequence) -> int:
    """Optimizer steps of `head` over `items` under the run's batch size and epochs."""
    per_epoch = steps_per_epoch(get_objective(head.objective).schedule_size(items), ctx.train.batch_size)
    return max(1, math.ceil(ctx.train.epochs * per_epoch))


def train_heads(
    ctx: TrainContext,
    plan: HeadPlan,
    precision: Precision,
    items: Mapping[str, list],
    work_dir: Callable[[HeadSpec], Path],
    line: CurveProgress,
    tracker: Tracker,
    seed: int | None = None,
    checkpoints: Mapping[str, Sequence[int]] | None = None,
    done_file: Callable[[HeadSpec], Path] | None = None,
) -> dict[str, TrainStats]:
    """Every head of `plan`, in order, on its own items: re-initialised (seeded by `ctx.train.seed`), trained by its
    objective with the plan's settings in the training precision, its steps counted on `line` and tracked. A
    curve's `seed` (None for `likra train`), `checkpoints` (steps to save at, per head) and `done_file` (a head
    finished earlier is reused, one interrupted resumes). The one loop that `likra train`, `likra curve` and every
    study run."""
    stats = {}
    with training_precision(ctx.model, precision):
        for head in plan.specs:
            reinit_heads(ctx.model, (head.adapter,), ctx.train.seed, (head.init,))
            done = done_file(head) if done_file is not None else None
            cached = done is not None and done.is_file()
            n, train = get_objective(head.objective).schedule_size(items[head.name]), ctx.train
            seen = functools.partial(examples_seen, n_examples=n, batch_size=train.batch_size, epochs=train.epochs)
            callbacks = [line.trainer_callback(seed, head.name), *tracker.trainer_callbacks(seed or 0, head.name, seen)]
            with trainer_callbacks(callbacks):
                stats[head.name] = train_head(
                    ctx,
                    head,
                    items[head.name],
                    work_dir(head),
                    (checkpoints or {}).get(head.name, ()),
                    resume=done is not None,
                    done_file=done,
                    settings=plan.settings(head, ctx.train),
                    recipe=plan.recipes[head.name].to_json(),
                )
            line.trained(seed, head.name, stats[head.name].steps, cached)
    return stats


@dataclass(frozen=True)
class RunSetup:
    """What `likra train` resolves from its configuration before anything loads: the head plan, the precision and
    the run folder (checked: a folder likra did not write is refused before any work)."""

    plan: HeadPlan
    precision: Precision
    out: Path


def setup_run(cfg: TrainConfig) -> RunSetup:
    """Every setting of `cfg` checked and resolved (one line for anything wrong, nothing loaded or written)."""
    check(cfg)
    check_available(cfg.report_to)
    check_quantize_available(cfg.quantize)
    use_include_paths(cfg.include_path)
    check_specs(cfg.data)
    plan = plan_heads(head_specs(cfg.heads), cfg.train, cfg.objectives, {"per_question": cfg.negatives}, cfg.lora)
    sets = {name: r for name, r in plan.recipes.items() if r.set}
    if not sets and (cfg.negatives != "one" or cfg.negative_seed != 0):
        flag = "--negatives" if cfg.negatives != "one" else "--negative-seed"
        raise LikraError(f"{flag}: no head trains on negatives (heads: {', '.join(plan.recipes)})")
    # --negatives is the default per_question of near_miss sets; a head that names its own, or another set, keeps it
    unapplied = [name for name, r in sets.items() if r.values.get("per_question") != cfg.negatives]
    if cfg.negatives != "one" and unapplied:
        raise LikraError(
            f"--negatives {cfg.negatives} applies to near_miss sets whose data gives no per_question, not to head(s) "
            f"{', '.join(unapplied)}"
        )
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    check_out(out, cfg.overwrite)
    return RunSetup(plan, run_precision(cfg, scores=False), out)


def train_run(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train the heads and write the run folder atomically; returns its path."""
    run = setup_run(cfg)
    start()
    tokenizer = load_tokenizer(cfg.model)
    data, info = load_data(cfg.data, cfg.source, cfg.format, cfg.chat_template, tokenizer, cfg.train.max_length)
    records = select_questions(data, cfg.limit, cfg.train.seed)
    ctx = run_context(cfg, tokenizer, run.precision)
    ctx.model = build_model(cfg, run.plan, ctx, cfg.train.gradient_checkpointing, run.precision)
    inputs = SetInputs(
        load_pool=lambda spec: load_spec(spec, source=cfg.source),
        base_scores=lambda recs: choice_scores_per_char(ctx.model, tokenizer, recs),
    )
    items, built = head_items(ctx, run.plan, records, cfg.negative_seed, inputs)
    staging = run.out.with_name(run.out.name + ".partial")
    if is_main():
        temporary_folder(run.out)  # a previous one likra left is replaced; anything else there is refused
    barrier()
    line = CurveProgress(enabled=progress and is_main(), label=f"likra train {run.out.name}")
    line.plan(sum(head_steps(ctx, h, items[h.name]) for h in run.plan.specs), 0)
    tracker = make_tracker(cfg.report_to, staging.joinpath, run.out.name, asdict(cfg)) if is_main() else Tracker()
    try:
        stats = train_heads(
            ctx, run.plan, run.precision, items, lambda h: staging / "trainer" / h.folder, line, tracker
        )
    finally:
        line.close()
        tracker.close()
    barrier()
    if not is_main():
        return run.out
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    heads = run.plan.specs
    save_heads(ctx.model, staging / ADAPTERS, names=[h.adapter for h in heads])
    manifest = {
        "kind": "train",
        "model": {"name": cfg.model, "dtype": run.precision.train, "quantize": cfg.quantize},
        "precision": {"train": run.precision.train},
        "heads": [h.adapter for h in heads],
        "head_specs": [h.to_json() for h in heads],
        "data": {
            "spec": cfg.data,
            "source": cfg.source,
            "questions": len(records),
            "question_ids": [r.id for r in records],
            **info.to_json(),
        },
        "examples": {h.name: len(items[h.name]) for h in heads},
        "head_data": built,  # each head's data as built: kind, set, parameters, seed, questions, examples
        "head_settings": {h.name: run.plan.record(ctx, h) for h in heads},  # what each head trained with, resolved
        "negatives": {"per_question": cfg.negatives, "seed": cfg.negative_seed},
        "lora": asdict(cfg.lora),
        "objectives": {k: v if isinstance(v, dict) else asdict(v) for k, v in cfg.objectives.items()},
        "train": asdict(cfg.train),
        "stats": {name: asdict(s) for name, s in stats.items()},
    }
    return finish_run(staging, run.out, manifest, cfg.overwrite)

"""`likra train`: records -> each head's training set -> heads trained by their objectives -> a run folder.

cfg -> heads (configured, or the Likra pair) -> settings checked -> model with one adapter per head
    -> each head's items -> each head trained by its objective -> adapters + manifest, renamed into place
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from likra.config import NonNegativeInt, PositiveInt, check, option, settings
from likra.data.benchmarks import load_spec
from likra.data.formats import DataSettings, load_data
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
    is_quantized,
    load_base_model,
    load_tokenizer,
    parameter_count,
    prepare_for_training,
)
from likra.model.precision import Precision, computing_in, resolve_precision
from likra.objectives import TrainContext, get_objective
from likra.objectives.registry import train_head, trainer_callbacks
from likra.objectives.settings import TrainSettings
from likra.runs import ADAPTERS, check_out, finish_run
from likra.tracking import REPORT_TO, ReportTo, Tracker, check_available, make_tracker
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


def run_plan(
    cfg: HeadsSettings,
    negative_set: str = "near_miss",
    variant: str | None = None,
    defaults: dict | None = None,
    extra_heads: Sequence[HeadSpec] = (),
    objective_settings: dict | None = None,
) -> HeadPlan:
    """The plan of `cfg`'s heads (configured, or the Likra pair on `negative_set`, named by `variant`) and a study's
    `extra_heads`, resolved before anything loads (`plan_heads`); `defaults` for the sets' parameters,
    `objective_settings` over `cfg.objectives` (a study's sections)."""
    heads = [*head_specs(cfg.heads, negative_set, variant), *extra_heads]
    return plan_heads(heads, cfg.train, {**cfg.objectives, **(objective_settings or {})}, defaults)


def choice_scores_per_char(model, tokenizer, records) -> list:
    """The base model's summed log-likelihood per character of every choice of `records` (acc_norm's convention): what
    the mined negative sets (hardest, easiest) rank distractors by."""
    import numpy as np

    from likra.model.heads import BASE
    from likra.model.loading import model_max_length
    from likra.scoring.engine import ScoringEngine, tokenize_questions

    _, questions = tokenize_questions(tokenizer, records, max_length=model_max_length(model))
    scores = ScoringEngine(model).loglikelihoods(questions, (BASE,))[BASE]
    return [ll / np.array([max(len(c), 1) for c in rec.choices]) for rec, ll in zip(records, scores)]


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


def run_context(cfg: TrainConfig | HeadsSettings, tokenizer, progress: bool, precision: Precision) -> TrainContext:
    """The TrainContext of a run or curve (its model is built next, by `build_model`); an objective that trains a
    base of its own (DPO, KTO) loads it in the training dtype."""
    return TrainContext(
        None,
        tokenizer,
        cfg.train,
        cfg.lora,
        lambda: load_base_model(cfg.model, precision.train, quantize=cfg.quantize),
        progress=progress,
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


def train_run(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train the heads and write the run folder atomically; returns its path."""
    check(cfg)
    check_available(cfg.report_to)
    plan = run_plan(cfg, defaults={"per_question": cfg.negatives})
    heads = plan.specs
    unapplied = [name for name, r in plan.recipes.items() if r.set and "per_question" not in r.values]
    if cfg.negatives != "one" and unapplied:
        raise LikraError(
            f"--negatives {cfg.negatives} applies to near_miss sets only, not to head(s) {', '.join(unapplied)}"
        )
    precision = run_precision(cfg, scores=False)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    check_out(out, cfg.overwrite)
    start()
    tokenizer = load_tokenizer(cfg.model)
    data, info = load_data(cfg.data, cfg.source, cfg.format, cfg.chat_template, tokenizer, cfg.train.max_length)
    records = select_questions(data, cfg.limit, cfg.train.seed)
    ctx = run_context(cfg, tokenizer, progress, precision)
    ctx.model = model = build_model(cfg, plan, ctx, cfg.train.gradient_checkpointing, precision)
    inputs = SetInputs(
        load_pool=lambda spec: load_spec(spec, source=cfg.source),
        base_scores=lambda recs: choice_scores_per_char(model, tokenizer, recs),
    )
    items, built = head_items(ctx, plan, records, cfg.negative_seed, inputs)
    staging = out.with_name(out.name + ".partial")
    if is_main():
        temporary_folder(out)  # a previous one likra left is replaced; anything else there is refused
    barrier()
    stats = {}
    tracker = make_tracker(cfg.report_to, staging.joinpath, out.name, asdict(cfg)) if is_main() else Tracker()
    try:
        with training_precision(model, precision):
            for head in heads:
                log.info("training %s head on %d examples", head.name, len(items[head.name]))
                reinit_heads(model, (head.adapter,), cfg.train.seed, (head.init,))
                with trainer_callbacks(tracker.trainer_callbacks(0, head.name)):
                    work = staging / "trainer" / head.folder
                    trained = train_head(ctx, head, items[head.name], work, settings=plan.settings(head, ctx.train))
                stats[head.name] = asdict(trained)
    finally:
        tracker.close()
    barrier()
    if not is_main():
        return out
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    save_heads(model, staging / ADAPTERS, names=[h.adapter for h in heads])
    manifest = {
        "kind": "train",
        "model": {"name": cfg.model, "dtype": precision.train, "quantize": cfg.quantize},
        "precision": {"train": precision.train},
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
        "negatives": {"per_question": cfg.negatives, "seed": cfg.negative_seed},
        "lora": asdict(cfg.lora),
        "objectives": {k: v if isinstance(v, dict) else asdict(v) for k, v in cfg.objectives.items()},
        "train": asdict(cfg.train),
        "stats": stats,
    }
    return finish_run(staging, out, manifest, cfg.overwrite)

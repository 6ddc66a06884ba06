"""`likra curve`: one training run per head with checkpoints after 2^k optimizer steps, every checkpoint
evaluated in every mode, resumable at any point.

A curve trains a list of heads (`HeadSpec`, default the Likra pair: `positive` on gold answers and
`negative` on the configured negative set), each through its registered objective and on the same
checkpoint schedule; every checkpoint of every head is scored once and all modes are derived from those
cached log-likelihoods. Studies add heads (another objective, another negative set) and modes. The folder
layout belongs to `likra.experiments.folder.CurveFolder`; everything finished is reused on a re-run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from likra.config import Fraction, PositiveInt, check, default_of, option, settings
from likra.data.benchmarks import load_spec
from likra.data.examples import fewshot_prefix
from likra.data.formats import DataSettings, fewshot_records, load_data
from likra.data.lmeval_tasks import check_specs, use_include_paths
from likra.data.negative_sets import NEGATIVE_SETS, DataRecipe, SetInputs, parse_recipe
from likra.distributed import barrier, is_main, rank_and_world, start
from likra.errors import LikraError
from likra.experiments.folder import CurveFolder, read_json, read_scores
from likra.io import atomic_write_json, slug
from likra.model.heads import BASE, HeadSpec, head_specs, likra_heads
from likra.model.loading import ModelSettings, load_tokenizer, model_max_length
from likra.model.precision import Precision
from likra.model.shapes import is_random
from likra.objectives import get_objective
from likra.objectives.registry import (
    steps_per_epoch,
)
from likra.objectives.settings import TRAIN_ADDED_DEFAULTS
from likra.progress import CurveProgress
from likra.scoring.engine import ScoringEngine, tokenize_questions
from likra.scoring.metrics import METRICS, metrics_of, mode_credits, mode_metrics
from likra.scoring.modes import check_heads, check_modes
from likra.scoring.settings import ScoringSettings, check_shots
from likra.scoring.stats import few_seeds_note, mode_statistics, parse_pairs, seeds_and_questions, trivial_baselines
from likra.tracking import REPORT_TO, ReportTo, Tracker, check_available, examples_seen, make_tracker
from likra.training.pipeline import (
    HeadsSettings,
    build_model,
    choice_scores_per_char,
    run_context,
    run_precision,
    select_questions,
    train_heads,
)
from likra.training.plan import head_items, plan_heads

log = logging.getLogger(__name__)


@settings
class CurveConfig(HeadsSettings, ScoringSettings, DataSettings, ModelSettings):
    """The embedded default: SmolLM2-135M, ARC outside ARC-Challenge validation/test, evaluated on
    ARC-Challenge validation, sized (limit, points, batch, lr) to fit 20 minutes on 2 CPU cores."""

    eval_data: str = option("arc_challenge:validation", help="evaluation data spec")
    limit: PositiveInt | None = option(2048, help="training questions (a seeded subset; none = all)")
    points: list[PositiveInt] | None = option(
        None, help="example counts to checkpoint at, e.g. 16,64,256 (default: after 1, 2, 4, ... optimizer steps)"
    )
    seeds: PositiveInt = option(
        1, help="independent runs (data order, negatives, subset, LoRA init); mean and interval across them"
    )
    negatives: str = option("one", help="negatives per question (curves pair checkpoints: one)", choices=("one", "all"))
    negative_kind: str = option(
        "near_miss", help="the default negative head's set (likra info lists them; plug-ins add more)"
    )
    negative_pool: str = option(
        "hellaswag:validation", help="spec of the other benchmark for other_benchmark negatives"
    )
    contamination: Fraction = option(0.0, help="fraction of negatives replaced by the questions' correct answers")
    eval_limit: PositiveInt | None = option(None, help="evaluate the first N questions only")
    out: str = option("runs/curve", help="curve folder")
    lm_eval_out: str | None = option(
        None, help="also write lm-eval's layout here, one model folder per checkpoint (results + samples)"
    )
    report_to: ReportTo = option(
        default_factory=lambda: ["none"],
        help="log training losses and checkpoint metrics to these backends (tensorboard, wandb, a list, all, none)",
        choices=REPORT_TO,
    )


# Settings that define the trained checkpoints: a folder holds one training setup, evaluated any number
# of ways, with any number of negative-set variants (kind, contamination) sharing its positive head.
TRAINING_KEYS = ("model", "data", "source", "limit", "points", "seeds", "negatives", "dtype", "lora", "train")
# Settings added since likra 0.1 (prompt format, quantized base, configured heads and objective settings),
# recorded only when not the default so that folders written before they existed still match.
ADDED_DEFAULTS = {"format": "cloze", "chat_template": False, "quantize": None, "heads": None}
# Recorded by folders of earlier versions, and now by each head in its own work folder (`head-settings.json`):
# an objective's settings concern the heads trained by it, not the folder.
MOVED_TO_HEADS = ("objectives",)


def checkpoint_schedule(
    n_examples: int, batch_size: int, points: Sequence[int] | None = None, epochs: float = 1.0
) -> list[tuple[int, int]]:
    """(optimizer step, examples seen) pairs: after 1, 2, 4, ... steps by default, or after the steps
    that first reach each requested example count; the last point is always the end of training.
    `batch_size` is examples per optimizer step (over all processes)."""
    if batch_size < 1 or epochs <= 0:
        raise LikraError(f"batch size must be >= 1 and epochs > 0, got {batch_size} and {epochs}")
    per_epoch = steps_per_epoch(n_examples, batch_size)
    total = max(1, math.ceil(epochs * per_epoch))
    seen_total = round(n_examples * epochs)

    def seen(step: int) -> int:
        return examples_seen(step, n_examples, batch_size, epochs)

    if points is None:
        steps = {2**k for k in range(max(total.bit_length(), 1)) if 2**k < total}
    else:
        bad = [p for p in points if not 1 <= p <= seen_total]
        if bad:
            raise LikraError(f"curve points {bad} are outside 1..{seen_total} (the training examples)")
        steps = {next(s for s in range(1, total + 1) if seen(s) >= p) for p in points}
    steps.add(total)
    return [(s, seen(s)) for s in sorted(steps)]


def negative_recipe(cfg: CurveConfig) -> DataRecipe:
    """The default negative head's data: --negative-kind with the curve's pool and contamination."""
    if cfg.negative_kind not in NEGATIVE_SETS:
        raise LikraError(
            f"unknown negative kind {cfg.negative_kind!r}; valid kinds: {', '.join(NEGATIVE_SETS.names())}"
        )
    return parse_recipe(f"negatives:{cfg.negative_kind}", set_defaults(cfg) | {"contamination": cfg.contamination})


def set_defaults(cfg: CurveConfig) -> dict:
    """What a curve's settings give every negative set that takes them (the pool of other_benchmark)."""
    return {"pool": cfg.negative_pool}


def negative_spec(cfg: CurveConfig) -> str:
    """The default negative set as a head's data names it after `negatives:` or `pairs:`, e.g. `near_miss`."""
    return negative_recipe(cfg).spec.partition(":")[2]


def variant_name(cfg: CurveConfig) -> str:
    """The negative set's name in folder names: its kind (and pool), plus the contamination rate when there is one."""
    return negative_recipe(cfg).variant


# Settings of the default Likra pair's negative head only: with configured heads each head's data names its set.
PAIR_SETTINGS = {
    "negative_kind": "name the set in each head's data, e.g. negatives:random_question",
    "contamination": "give it in a head's data, e.g. negatives:near_miss?contamination=0.25",
}


def refuse_pair_settings(cfg: CurveConfig) -> None:
    """One line for a setting of the default pair's negative head given beside configured heads, which it would not
    reach (the curve would be named by a set no head trains on)."""
    for name, how in PAIR_SETTINGS.items():
        if getattr(cfg, name) != default_of(CurveConfig, name):
            flag = "--" + name.replace("_", "-")
            raise LikraError(f"{flag} sets the default pair's negative head; with --heads {how}")


def eval_tag(cfg: CurveConfig, precision: Precision | None = None) -> str:
    """The name of an evaluation setting (data, shots, limit, shot source, and the scoring dtype where it is not the
    training one: folders of earlier versions scored in their training dtype) under scores/."""
    scored = f"-scored_{precision.score}" if precision is not None and precision.score != precision.train else ""
    return slug(
        f"{cfg.eval_data}-{cfg.shots}shot"
        + (f"-first{cfg.eval_limit}" if cfg.eval_limit else "")
        + (f"-shots_from_{cfg.fewshot_data}" if cfg.fewshot_data else "")
        + scored
    )


def as_recorded_today(previous: dict) -> dict:
    """A folder's recorded training settings in today's terms: folders of earlier versions recorded `dtype` as given
    (their `auto` trained in bf16 on CUDA and in fp32 elsewhere) and the objectives' settings (now each head's)."""
    previous = {k: v for k, v in previous.items() if k not in MOVED_TO_HEADS}
    if previous.get("dtype") == "auto":
        from likra.model.loading import default_device

        return {**previous, "dtype": "bf16" if default_device().type == "cuda" else "fp32"}
    return previous


@dataclass
class CurveResult:
    """What a finished curve gives its readers (the command, reports, studies, the lm-eval writer): curve.json's
    content, the questions it was evaluated on, where every score lies, and the loaded model and heads for studies
    that score more. Plain data: reading it runs nothing."""

    cfg: CurveConfig
    curve: dict
    folder: CurveFolder
    heads: list[HeadSpec]
    modes: list[str]
    variant: str
    eval_tag: str
    eval_records: list
    eval_total: int  # the evaluation data's questions before --eval-limit
    eval_shots: list
    eval_prefix: str
    base_file: Any
    score_files: dict[int, list[tuple[int, dict[str, Any]]]]  # seed -> [(examples, head or role -> file)]
    model: Any
    tokenizer: Any
    curves: dict[str, dict] = field(default_factory=dict)  # view -> its curve.json content (`curve` is the first)


class CurveRun:
    """Executes a CurveConfig in its folder for a list of heads, skipping every piece already finished.

    `heads`: default the Likra pair on the configured negative set; `extra_heads` and `extra_modes` are what
    a study adds; `objective_settings` maps objective names to their settings (e.g. {"dpo": DPOSettings}).
    `views`: several curves from one run, each the modes with roles bound to heads of its own ({label: {role:
    head}}; e.g. one view per negative set, `likra` of each reading its own negative head): every head is trained
    and scored once, the base model and heads outside every binding (the positive one) shared by all views.
    Default: one view, named by the negative set, with the roles the heads declare."""

    def __init__(
        self,
        cfg: CurveConfig,
        progress: bool = True,
        heads: Sequence[HeadSpec] | None = None,
        extra_heads: Sequence[HeadSpec] = (),
        extra_modes: Sequence[str] = (),
        objective_settings: dict[str, Any] | None = None,
        views: Mapping[str, Mapping[str, str]] | None = None,
        label: str | None = None,
    ):
        self.cfg = check(cfg)
        check_available(cfg.report_to)
        self.progress = progress
        self.folder = CurveFolder(cfg.out)
        self.tracker = Tracker()
        if cfg.negatives != "one":
            raise LikraError(
                "curves pair the heads' checkpoints by questions seen: use one negative per question "
                "(--negatives one); `likra train --negatives all` trains on every incorrect choice"
            )
        self.negative_spec = negative_spec(cfg)
        configured = heads is None and cfg.heads is not None  # the user's --heads, not the Likra pair
        if configured:
            refuse_pair_settings(cfg)
        self.objective_settings = {**cfg.objectives, **(objective_settings or {})}
        # every head's objective, data recipe and settings, resolved once before anything loads
        specs = heads if heads is not None else head_specs(cfg.heads, self.negative_spec, variant_name(cfg))
        self.plan = plan_heads([*specs, *extra_heads], cfg.train, self.objective_settings, set_defaults(cfg), cfg.lora)
        self.heads = self.plan.specs
        # the curve is named by the negative sets its heads train on (studies run several curves in one folder)
        self.variant = self.plan.sets if configured else variant_name(cfg)
        self.line = CurveProgress(enabled=progress, label=f"likra {self.folder.root.name} ({label or self.variant})")
        self.modes = list(check_modes(list(dict.fromkeys([*cfg.modes, *extra_modes]))))
        self.pairs = parse_pairs(cfg.pairs, self.modes)
        self.views = {k: dict(v) for k, v in views.items()} if views else {self.variant: {}}
        names = {h.name for h in self.heads}
        for label, binding in self.views.items():
            unknown = sorted(set(binding.values()) - names)
            if unknown:
                raise LikraError(f"view {label!r} binds head(s) {', '.join(unknown)} that this curve does not train")
            check_heads(self.modes, [*names, *(h.role for h in self.heads if h.role), *binding], "this curve")
        self.use_precision(None)  # resolved when the run starts (it may look at the base's size)
        self.score_files: dict[int, list[tuple[int, dict[str, Any]]]] = {}  # seed -> [(examples, head -> file)]
        self.head_data: dict[int, dict[str, dict]] = {}  # seed -> head -> its data as built

    def use_precision(self, precision: Precision | None) -> None:
        """Train and score in `precision` (None: not resolved yet); it names the score files (`eval_tag`)."""
        self.precision = precision
        self.eval_tag = eval_tag(self.cfg, precision)

    def series(self, view: str) -> str:
        """The tracked series of one view: a folder holds several curves (studies), one series each."""
        return f"eval-{view}-{self.eval_tag}"

    def view_heads(self, view: str) -> list[HeadSpec]:
        """The heads a view's curve reports: those its binding names, and those no view binds (shared)."""
        bound = {name for binding in self.views.values() for name in binding.values()}
        mine = set(self.views[view].values())
        return [h for h in self.heads if h.name in mine or h.name not in bound]

    def training_settings(self) -> dict:
        values = asdict(self.cfg)
        out = {k: v for k, v in values.items() if k in TRAINING_KEYS}
        if self.precision is not None:
            out["dtype"] = self.precision.train  # what the checkpoints were trained in, resolved
        out["train"] = {
            k: v for k, v in out["train"].items() if k not in TRAIN_ADDED_DEFAULTS or v != TRAIN_ADDED_DEFAULTS[k]
        }
        variant = variant_name(self.cfg)
        pair = likra_heads(self.negative_spec, variant)
        if self.cfg.heads is not None and head_specs(self.cfg.heads, self.negative_spec, variant) == pair:
            values["heads"] = None  # the Likra pair written out is the default pair: the same folder
        return out | {k: values[k] for k, v in ADDED_DEFAULTS.items() if values[k] != v}

    # -- main -----------------------------------------------------------------------------------
    def run(self) -> CurveResult:
        began = time.perf_counter()
        cfg = self.cfg
        check_shots(cfg.shots, cfg.fewshot_data)
        use_include_paths(cfg.include_path)
        check_specs(cfg.data, cfg.eval_data)  # lm-eval tasks: found and of a kind likra takes, before a model loads
        if cfg.negative_pool != default_of(CurveConfig, "negative_pool") and not any(
            r.values.get("pool") == cfg.negative_pool for r in self.plan.recipes.values()
        ):
            log.warning("--negative-pool %s: no head draws on it (other_benchmark): not applied", cfg.negative_pool)
        start()
        self.timing = {"scoring_seconds": 0.0, "scoring_passes": 0}
        tokenizer = self.tokenizer = load_tokenizer(cfg.model)
        precision = run_precision(cfg)
        self.use_precision(precision)
        ctx = run_context(cfg, tokenizer, precision)
        ctx.objective_settings = self.objective_settings
        ctx.model = self.model = build_model(cfg, self.plan, ctx, cfg.train.gradient_checkpointing, precision)
        prompt = (cfg.source, cfg.format, cfg.chat_template, tokenizer)
        eval_records, eval_info = load_data(cfg.eval_data, *prompt, model_max_length(ctx.model), shots=cfg.shots)
        self.eval_total = len(eval_records)  # before --eval-limit
        eval_records = eval_records[: cfg.eval_limit]
        train_records, train_info = load_data(cfg.data, *prompt, cfg.train.max_length)
        # lm-eval tasks as data: each task's version and config hash, so the curve names the harness's tasks
        self.lmeval = {k: i.lmeval for k, i in (("data", train_info), ("eval_data", eval_info)) if i.lmeval}
        self.eval_records = eval_records  # in the curve's prompt format, for studies
        prefix_ids, questions = self.eval_tokens(tokenizer, eval_records)
        self.choice_tokens = [[len(c) for c in q.choice_ids] for q in questions]
        with self.folder.lock():
            # Only once the settings, the model and the data loaded: a typo must not lock the folder.
            self.folder.check_settings(self.training_settings(), write=is_main(), upgrade=as_recorded_today)
            self.line.enabled = self.progress and is_main()
            if is_main():
                self.tracker = make_tracker(cfg.report_to, self.folder.tracking_dir, self.folder.root.name, asdict(cfg))
            self.timing["load_seconds"] = time.perf_counter() - began
            try:
                engine = ScoringEngine(ctx.model, max_batch_tokens=cfg.batch_tokens)
                self.base_file = self.folder.base_scores_file(self.eval_tag)
                self.line.plan(0, 1)
                base = self.cached_scores(self.base_file, engine, questions, prefix_ids, BASE, (None, BASE, 1, 1))
                results = [
                    self.run_seed(seed, ctx, train_records, engine, questions, prefix_ids, base, eval_records)
                    for seed in range(cfg.seeds)
                ]
                barrier()
            finally:
                self.line.close()
                self.tracker.close()
        self.timing["train_seconds"] = {
            f"seed-{r['seed']}/{head}": stats["seconds"] for r in results for head, stats in r["train"].items()
        }
        self.timing["total_seconds"] = time.perf_counter() - began
        baselines = trivial_baselines(
            [r.gold for r in eval_records], [r.choices for r in eval_records], self.choice_tokens
        )
        curves = {}
        for view in self.views:
            mine = [h.name for h in self.view_heads(view)]
            seeds = [{**r, "points": r["points"][view], "train": pick(r["train"], mine)} for r in results]
            curve = curves[view] = build_curve(cfg, seeds, eval_records, base, view)
            curve["dtype"] = precision.label  # what --dtype resolved to (never auto): fp32, or bf16/fp32 trained/scored
            curve["precision"] = precision.to_json()
            # per seed: each head's data as built
            curve["head_data"] = [pick(self.head_data.get(r["seed"], {}), mine) for r in results]
            curve["baselines"] = baselines
            curve["seed_note"] = few_seeds_note(cfg.seeds)  # what fewer than 3 seeds' intervals can say; None from 3
            if self.lmeval:
                curve["lmeval"] = self.lmeval
            curve["timing"] = self.timing  # this process's wall time per phase (work found finished costs nothing)
        return CurveResult(
            cfg,
            next(iter(curves.values())),
            self.folder,
            self.heads,
            self.modes,
            self.variant,
            self.eval_tag,
            eval_records,
            self.eval_total,
            self.eval_shots,
            self.eval_prefix,
            self.base_file,
            self.score_files,
            ctx.model,
            tokenizer,
            curves,
        )

    def eval_tokens(self, tokenizer, records):
        cfg = self.cfg
        self.eval_shots = fewshot_records(
            cfg.eval_data, records, cfg.shots, cfg.fewshot_data, cfg.source, cfg.format, cfg.chat_template
        )
        self.eval_prefix = prefix = fewshot_prefix(self.eval_shots)
        return tokenize_questions(tokenizer, records, prefix, model_max_length(self.model))

    def cached_scores(self, path, engine, questions, prefix_ids, adapter: str, where=None) -> list[np.ndarray]:
        """Scores from `path`, or computed and written there; `where` = (seed, head, k, n) for the progress line."""
        scores, seconds = read_scores(path, len(questions)), None
        if scores is None:
            started = time.perf_counter()
            if where is not None:  # the progress line moves with every batch of the pass
                engine.on_batch = lambda _head, batch, batches: self.line.scoring(*where, batch, batches)
            try:
                scores = engine.loglikelihoods(questions, (adapter,), prefix_ids)[adapter]
            finally:
                engine.on_batch = None
            seconds = time.perf_counter() - started
            self.timing["scoring_seconds"] += seconds
            self.timing["scoring_passes"] += 1
            if is_main():
                self.folder.write_scores(path, scores)
        if where is not None:
            self.line.scored(*where, seconds)
        return scores

    def mined_scores(self, records, tokenizer, engine) -> list[np.ndarray]:
        """Base-model score per choice of each training question (summed log-likelihood per character,
        the acc_norm convention), cached by question id."""
        path = self.folder.mined_scores_file
        cache = read_json(path) if path.is_file() else {}
        if not isinstance(cache, dict):
            raise LikraError(f"{path}: damaged file; delete it to mine the distractors again")
        missing = [r for r in records if r.id not in cache]
        if missing:
            for rec, scores in zip(missing, choice_scores_per_char(self.model, tokenizer, missing, engine)):
                cache[rec.id] = scores.tolist()
            if is_main():
                atomic_write_json(path, cache)
        return [np.array(cache[r.id]) for r in records]

    def run_seed(self, seed, ctx, train_records, engine, questions, prefix_ids, base, eval_records) -> dict:
        """Train every head of run `seed` (folder seed-<seed>; random seed train.seed + seed) and score them."""
        cfg = self.cfg
        rng_seed = cfg.train.seed + seed
        records = select_questions(train_records, cfg.limit, rng_seed)
        ctx.train = replace(cfg.train, seed=rng_seed)
        inputs = SetInputs(
            load_pool=lambda spec: load_spec(spec, source=cfg.source),
            base_scores=lambda recs: self.mined_scores(recs, ctx.tokenizer, engine),
        )
        # every head's data (each distinct negative set built once) and schedule before anything trains
        items, self.head_data[seed] = head_items(ctx, self.plan, records, rng_seed, inputs)
        schedules = {}
        for head in self.heads:
            objective = get_objective(head.objective)
            schedules[head.name] = checkpoint_schedule(
                objective.schedule_size(items[head.name]), ctx.train.batch_size, cfg.points, ctx.train.epochs
            )
        lengths = {name: len(s) for name, s in schedules.items()}
        if len(set(lengths.values())) > 1:
            raise LikraError(f"the heads' checkpoint schedules differ ({lengths}); give them equally many examples")
        if seed == 0:  # every seed has the same schedules
            steps = sum(s[-1][0] for s in schedules.values())
            self.line.plan(steps * cfg.seeds, sum(lengths.values()) * cfg.seeds)
        trained = train_heads(
            ctx,
            self.plan,
            self.precision,
            items,
            lambda head: self.folder.work_dir(seed, head),
            self.line,
            self.tracker,
            seed,
            {name: [s for s, _ in schedule] for name, schedule in schedules.items()},
            lambda head: self.folder.done_file(seed, head),
        )
        train_stats = {name: asdict(stats) for name, stats in trained.items()}
        points: dict[str, list] = {view: [] for view in self.views}
        self.score_files[seed] = []
        n_points = len(schedules[self.heads[0].name])
        for k, (step, examples) in enumerate(schedules[self.heads[0].name]):
            per_head, files = {BASE: base}, {BASE: self.base_file}
            for head in self.heads:
                head_step = schedules[head.name][k][0]
                path = self.folder.scores_file(seed, self.eval_tag, head, head_step)
                scores = read_scores(path, len(questions))
                where = (seed, head.name, k + 1, n_points)
                if scores is None:
                    self.folder.load_adapter(ctx.model, seed, head, head_step)
                    scores = self.cached_scores(path, engine, questions, prefix_ids, head.adapter, where)
                else:
                    self.line.scored(*where, None)
                for key in filter(None, (head.name, head.role)):
                    per_head[key], files[key] = scores, path
            self.score_files[seed].append((examples, files))
            for view, binding in self.views.items():
                scores = {**per_head, **{role: per_head[head] for role, head in binding.items()}}
                stats = mode_statistics(scores, eval_records, self.modes, cfg.weight, self.pairs, None, cfg.bootstrap)
                credits = mode_credits(scores, eval_records, self.modes, cfg.weight)  # kept for intervals over seeds
                metrics = metrics_of(credits)
                self.tracker.log_eval(seed, examples, metrics, self.series(view))
                points[view].append(
                    {
                        "step": step,
                        "examples": examples,
                        "metrics": metrics,
                        "paired": stats["paired"],
                        "calibration": stats["calibration"],
                        "credits": credits,  # in memory only: curve.json has the summaries
                    }
                )
        return {"seed": seed, "points": points, "train": train_stats}


def pick(by_head: dict, names: Sequence[str]) -> dict:
    """The entries of `names` in `by_head`, in its order."""
    return {k: v for k, v in by_head.items() if k in names}


# -- results ---------------------------------------------------------------------------------------
def build_curve(cfg: CurveConfig, seeds: list[dict], eval_records, base, variant: str = "near_miss") -> dict:
    """curve.json content: one row per (seed, examples, mode, metric), plus seed means."""
    base_metrics = mode_metrics({BASE: base}, eval_records, ["base"], cfg.weight)["base"]
    rows = []
    for result in seeds:
        for metric in METRICS:
            m = base_metrics[metric]
            rows.append(
                {
                    "seed": result["seed"],
                    "examples": 0,
                    "step": 0,
                    "mode": "base",
                    "metric": metric,
                    "value": m["value"],
                    "n": m["n"],
                    "ci_low": m["ci_low"],
                    "ci_high": m["ci_high"],
                }
            )
        for point in result["points"]:
            for mode, metrics in point["metrics"].items():
                for metric in METRICS:
                    m = metrics[metric]
                    rows.append(
                        {
                            "seed": result["seed"],
                            "examples": point["examples"],
                            "step": point["step"],
                            "mode": mode,
                            "metric": metric,
                            "value": m["value"],
                            "n": m["n"],
                            "ci_low": m["ci_low"],
                            "ci_high": m["ci_high"],
                        }
                    )
    if len(seeds) > 1:  # each mean over seeds and questions, with an interval counting both (`seeds_and_questions`)
        base_credits = mode_credits({BASE: base}, eval_records, ["base"], cfg.weight)["base"]
        everywhere = common_points(seeds)
        keys = sorted({(r["examples"], r["step"], r["mode"], r["metric"]) for r in rows})
        for examples, step, mode, metric in (k for k in keys if k[0] == 0 or k[:2] in everywhere):
            if examples == 0:
                matrix = np.stack([base_credits[metric]] * len(seeds))
            else:
                matrix = np.stack([point_at(result, examples, step)["credits"][mode][metric] for result in seeds])
            mean = seeds_and_questions(matrix)
            rows.append(
                {
                    "seed": "mean",
                    "examples": examples,
                    "step": step,
                    "mode": mode,
                    "metric": metric,
                    "value": mean.value,
                    "n": len(seeds),
                    "ci_low": mean.ci_low,
                    "ci_high": mean.ci_high,
                }
            )
    return {
        "model": cfg.model,
        **({"random_weights": True} if is_random(cfg.model) else {}),
        "data": cfg.data,
        "eval_data": cfg.eval_data,
        "seeds": cfg.seeds,
        "negatives": variant,
        "processes": rank_and_world()[1],
        "n_eval": len(eval_records),
        "config": asdict(cfg),
        "rows": rows,
        "paired": paired_rows(seeds),
        "calibration": [
            {"seed": r["seed"], "examples": p["examples"], "mode": mode, "metric": metric, **c}
            for r in seeds
            for p in r["points"]
            for mode, by_metric in p.get("calibration", {}).items()
            for metric, c in by_metric.items()
        ],
        "train": [s["train"] for s in seeds],
    }


def common_points(seeds: list[dict]) -> set[tuple[int, int]]:
    """The (examples, step) checkpoints every seed has: a mean over seeds is made at those only."""
    return set.intersection(*({(p["examples"], p["step"]) for p in r["points"]} for r in seeds))


def point_at(result: dict, examples: int, step: int) -> dict:
    """The checkpoint of one seed's result at (examples, step)."""
    return next(p for p in result["points"] if (p["examples"], p["step"]) == (examples, step))


def paired_rows(seeds: list[dict]) -> list[dict]:
    """One row per (seed, examples, pair, metric): the paired difference at that checkpoint; with several
    seeds, a `mean` row whose interval counts the variation between seeds and between questions."""
    rows = [
        {"seed": r["seed"], "examples": p["examples"], "step": p["step"], **d}
        for r in seeds
        for p in r["points"]
        for d in p.get("paired", [])
    ]
    if len(seeds) > 1:  # the mean difference over seeds and questions, paired question by question within each seed
        everywhere = common_points(seeds)
        for key in sorted({(r["examples"], r["step"], r["a"], r["b"], r["metric"]) for r in rows}):
            if key[:2] not in everywhere:
                continue
            examples, step, a, b, metric = key
            points = [point_at(result, examples, step)["credits"] for result in seeds]
            mean = seeds_and_questions(np.stack([c[a][metric] - c[b][metric] for c in points]), bounded=False)
            rows.append(
                {
                    "seed": "mean",
                    "examples": examples,
                    "step": step,
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "diff": mean.value,
                    "ci_low": mean.ci_low,
                    "ci_high": mean.ci_high,
                    "n": len(seeds),
                }
            )
    return rows

"""`likra eval`: one pass per head over the questions, then every mode and metric from the cache."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from likra.config import PositiveInt, check, option, settings
from likra.data.examples import FEWSHOT_SEED, fewshot_prefix
from likra.data.formats import (
    FORMATS,
    DataInfo,
    DataSettings,
    fewshot_records,
    load_data,
    resolve_eval_prompt,
    run_prompt_settings,
)
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.model.heads import available_heads
from likra.model.loading import DEVICE_MAPS, QUANTIZE, ModelSettings, RunQuantizeOption
from likra.runs import read_manifest, resolve_run
from likra.scoring.engine import ScoringEngine, tokenize_questions
from likra.scoring.metrics import mode_metrics
from likra.scoring.modes import check_heads, check_modes, heads_for
from likra.scoring.preferences import preference_results
from likra.scoring.settings import DEFAULT_MODES, ScoringSettings
from likra.scoring.stats import length_rule_warnings, mode_statistics, parse_pairs

DEFAULT_EVAL_MODES = list(DEFAULT_MODES)


@settings
class EvalConfig(ScoringSettings, DataSettings, ModelSettings):
    """`likra eval`: every head run once, every mode derived from the cached log-likelihoods."""

    run: str | None = option(None, help="run folder written by `likra train`")
    model: str | None = option(None, help="evaluate a plain model (mode base only) instead of a run")
    data: str = option("arc_challenge:validation", help="benchmark spec or JSONL file")
    format: str | None = option(
        None, help="prompt format, cloze or letter (default: the run's; cloze for --model)", choices=FORMATS
    )
    chat_template: bool | None = option(None, help="render prompts with the chat template (default: as the run)")
    cross_format: bool = option(False, help="score a run on another format or chat setting than it was trained on")
    fewshot_seed: int = option(FEWSHOT_SEED, help="seed of the few-shot order")
    limit: PositiveInt | None = option(None, help="evaluate the first N questions only")
    quantize: RunQuantizeOption = option(
        None, help="load the base in 4-bit NF4 (bitsandbytes); default: as the run was trained", choices=QUANTIZE
    )
    device_map: str | None = option(
        None,
        help="spread a model too large for one device: auto fills every GPU, then CPU memory, then disk",
        choices=DEVICE_MAPS,
    )
    out: str | None = option(None, help="results JSON (default <run>/eval/<data>-<k>shot.json)")
    overwrite: bool = option(False, help="replace an existing --out file")
    lm_eval_out: str | None = option(
        None, help="also write lm-eval's layout here: <model>/results_<date>.json and samples_<task>_<date>.jsonl"
    )


@dataclass
class EvalData:
    """What `likra eval` scores: the records in their prompt format (the first `--limit` of `total`), the
    few-shot prefix and its shots (in order), and what loading did (`DataInfo`)."""

    records: list[MCRecord]
    total: int
    prefix: str
    shots: list[MCRecord]
    info: DataInfo

    @property
    def shot_ids(self) -> list[str]:
        return [r.id for r in self.shots]


def random_weights(cfg: EvalConfig) -> bool:
    """Whether the evaluated model has random weights (`random:<shape>`, directly or as a run's base)."""
    from likra.model.shapes import is_random

    if cfg.run:
        try:
            return is_random(read_manifest(resolve_run(cfg.run))["model"]["name"])
        except LikraError:
            return False
    return is_random(cfg.model)


def warn_shadowing_heads(run, manifest: dict) -> None:
    """A run written before head names were checked may have a head named like a mode or `w`: it loads, and the
    log says which modes cannot reach it."""
    import logging

    from likra.training.plan import shadows

    for head in manifest.get("heads", []):
        shadowed = shadows(head)
        if shadowed:
            logging.getLogger(__name__).warning(
                "%s: head %r is %s; --modes %s scores that, not the head (retrain it under another name)",
                run,
                head,
                shadowed,
                head,
            )


def load_eval_model(cfg: EvalConfig):
    """(model, tokenizer) of `likra eval`: a run's heads, or a plain base model for mode base."""
    from likra.model.loading import is_quantized, load_base_model, load_tokenizer
    from likra.model.precision import mark, scoring_precision
    from likra.runs import load_run_model

    if cfg.run and cfg.model:
        raise LikraError("give either --run or --model, not both")
    if cfg.train_dtype is not None:
        raise LikraError("--train-dtype: likra eval trains nothing (give --score-dtype or --dtype)")
    if cfg.run:
        check_heads(cfg.modes, read_manifest(resolve_run(cfg.run))["heads"], "this run")  # before the model loads
        model, tokenizer, manifest = load_run_model(
            cfg.run, cfg.dtype, device_map=cfg.device_map, quantize=cfg.quantize, score_dtype=cfg.score_dtype
        )
        cfg.quantize = "4bit" if is_quantized(model) else "none"  # recorded as applied (default: as the run trained)
        warn_shadowing_heads(cfg.run, manifest)
        return model, tokenizer
    if not cfg.model:
        raise LikraError("give --run RUN (a trained run folder) or --model MODEL (base mode only)")
    if any(m != "base" for m in cfg.modes):
        if cfg.modes == DEFAULT_EVAL_MODES:
            cfg.modes = ["base"]
        else:
            raise LikraError("a plain --model has no heads: only --modes base is possible")
    precision = scoring_precision(cfg.model, cfg.dtype, cfg.score_dtype, None, cfg.quantize, cfg.device_map)
    base = load_base_model(cfg.model, precision.score, device_map=cfg.device_map, quantize=cfg.quantize)
    cfg.quantize = "4bit" if is_quantized(base) else "none"  # recorded as applied
    return mark(base, precision), load_tokenizer(cfg.model)


def load_eval_data(cfg: EvalConfig, tokenizer, max_length: int | None) -> EvalData:
    """The data of `cfg` in the run's prompt format (or the asked one; `cfg.format` and `cfg.chat_template`
    are set to what is used)."""
    trained = run_prompt_settings(read_manifest(resolve_run(cfg.run))) if cfg.run else None
    cfg.format, cfg.chat_template = resolve_eval_prompt(trained, cfg.format, cfg.chat_template, cfg.cross_format)
    records, info = load_data(cfg.data, cfg.source, cfg.format, cfg.chat_template, tokenizer, max_length, cfg.shots)
    total = len(records)
    if cfg.limit is not None:
        records = records[: cfg.limit]
    shots = fewshot_records(
        cfg.data, records, cfg.shots, cfg.fewshot_data, cfg.source, cfg.format, cfg.chat_template, cfg.fewshot_seed
    )
    return EvalData(records, total, fewshot_prefix(shots), shots, info)


def evaluate(cfg: EvalConfig, model, tokenizer, progress: bool = False, data: EvalData | None = None) -> dict:
    """Results of `cfg` on an already loaded model (a run's PeftModel, or a plain base model); `data` as
    `load_eval_data` gives it (loaded here when not given)."""
    from likra.model.loading import model_dtype_name, model_max_length
    from likra.model.precision import Precision, precision_of

    check(cfg)
    modes = check_modes(cfg.modes)
    max_length = model_max_length(model)
    data = data or load_eval_data(cfg, tokenizer, max_length)
    records, info, shot_ids = data.records, data.info, data.shot_ids
    pairs = parse_pairs(cfg.pairs, modes)
    prefix_ids, questions = tokenize_questions(tokenizer, records, data.prefix, max_length)
    check_heads(modes, available_heads(model), "this run" if cfg.run else "the model")
    engine = ScoringEngine(model, max_batch_tokens=cfg.batch_tokens, progress=progress)
    per_head = engine.loglikelihoods(questions, heads_for(modes), prefix_ids)
    tokens = [[len(c) for c in q.choice_ids] for q in questions]
    extra = {}
    if info.kind == "preferences":
        extra["preferences"] = preference_results(per_head, records, modes, cfg.weight, tokens, cfg.bootstrap)
    return {
        "config": asdict(cfg),
        "dtype": model_dtype_name(model),  # what the scores were computed in (never auto)
        "precision": (precision_of(model) or Precision(None, model_dtype_name(model))).to_json(),
        **({"random_weights": True} if random_weights(cfg) else {}),
        "data": info.to_json(),
        **extra,
        "n_questions": len(records),
        "fewshot_ids": shot_ids,
        "metrics": mode_metrics(per_head, records, modes, cfg.weight),
        "statistics": mode_statistics(per_head, records, modes, cfg.weight, pairs, tokens, cfg.bootstrap),
        "loglikelihoods": {h: [v.tolist() for v in vals] for h, vals in per_head.items()},
        "question_ids": [r.id for r in records],
    }


def format_table(metrics: dict[str, dict], statistics: dict | None = None) -> str:
    """The metrics table; with `statistics`, the trivial baselines under it, the paired differences and
    a warning for every mode a length rule matches."""
    head = f"{'mode':<16} {'acc':>7} {'95% CI':>15}   {'acc_norm':>8} {'95% CI':>15}   {'n':>5}"
    lines = [head]
    for mode, m in metrics.items():
        a, an = m["acc"], m["acc_norm"]
        lines.append(
            f"{mode:<16} {a['value']:7.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]   "
            f"{an['value']:8.3f} [{an['ci_low']:.3f}, {an['ci_high']:.3f}]   {a['n']:5d}"
        )
    if not statistics:
        return "\n".join(lines)
    for rule, b in statistics["baselines"].items():
        lines.append(f"{'(' + rule + ')':<16} {b['value']:7.3f} {'':>15}   {b['value']:8.3f} {'':>15}   {b['n']:5d}")
    if statistics["paired"]:
        lines += ["", f"{'paired difference':<18} {'metric':<8} {'diff':>7} {'95% bootstrap CI':>18} {'McNemar p':>10}"]
        for p in statistics["paired"]:
            lines.append(
                f"{p['a'] + ' - ' + p['b']:<18} {p['metric']:<8} {p['diff']:+7.3f} "
                f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] {p['p_mcnemar']:10.3g}"
            )
    warnings = length_rule_warnings(metrics, statistics["baselines"])
    lines += [f"warning: {w}" for w in warnings]
    return "\n".join(lines)


def check_eval_outputs(cfg: EvalConfig) -> None:
    """Refuse, before anything loads, an --out file that exists (without --overwrite) or an --lm-eval-out that
    is not a folder. The default file in the run's eval/ folder is likra's own and is replaced."""
    from likra.io import check_output_file, check_output_folder

    if cfg.out:
        check_output_file(cfg.out, cfg.overwrite)
    if cfg.lm_eval_out:
        check_output_folder(cfg.lm_eval_out, "--lm-eval-out")


def default_eval_out(cfg: EvalConfig) -> Path | None:
    if cfg.out:
        return Path(cfg.out)
    if cfg.run and Path(cfg.run).is_dir():  # not for a run read from the hub cache
        tag = cfg.data.replace(":", "_").replace(",", "+").replace("/", "_")
        return Path(cfg.run) / "eval" / f"{tag}-{cfg.shots}shot.json"
    return None

"""`likra eval`: one pass per head over the questions, then every mode and metric from the cache."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from likra.config import NonNegativeInt, PositiveInt, check, option, settings
from likra.data.benchmarks import SOURCES, load_spec
from likra.data.examples import FEWSHOT_SEED, draw_shots, fewshot_prefix
from likra.data.formats import (
    FORMATS,
    DataInfo,
    format_records,
    load_data,
    resolve_eval_prompt,
    run_prompt_settings,
)
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.model.loading import DEVICE_MAPS, DTYPES, QUANTIZE
from likra.runs import read_manifest, resolve_run
from likra.scoring.engine import ScoringEngine, tokenize_questions
from likra.scoring.metrics import accuracy, accuracy_norm
from likra.scoring.modes import check_modes, heads_for, question_scores
from likra.scoring.preferences import preference_results
from likra.scoring.stats import (
    DEFAULT_RESAMPLES,
    calibration,
    choice_probabilities,
    credits,
    length_normalised,
    length_rule_warnings,
    paired_difference,
    trivial_baselines,
)

METRICS = ("acc", "acc_norm")
DEFAULT_PAIRS = ["likra:sft", "negbase:base", "sft:base"]

DEFAULT_EVAL_MODES = ["base", "sft", "likra", "negbase"]


@settings
class EvalConfig:
    """`likra eval`: every head run once, every mode derived from the cached log-likelihoods."""

    run: str | None = option(None, help="run folder written by `likra train`")
    model: str | None = option(None, help="evaluate a plain model (mode base only) instead of a run")
    data: str = option("arc_challenge:validation", help="benchmark spec or JSONL file")
    source: str = option("auto", help="where benchmark data comes from", choices=SOURCES)
    modes: list[str] = option(
        default_factory=lambda: list(DEFAULT_EVAL_MODES),
        help="modes, or expressions over head names such as positive-0.5*negative",
    )
    weight: float = option(1.0, help="negative-head weight w")
    format: str | None = option(
        None, help="prompt format, cloze or letter (default: the run's; cloze for --model)", choices=FORMATS
    )
    chat_template: bool | None = option(None, help="render prompts with the chat template (default: as the run)")
    cross_format: bool = option(False, help="score a run on another format or chat setting than it was trained on")
    shots: NonNegativeInt = option(0, help="few-shot examples prepended to every question")
    fewshot_data: str | None = option(None, help="spec the shots are drawn from (default: the benchmark's train split)")
    fewshot_seed: int = option(FEWSHOT_SEED, help="seed of the few-shot order")
    limit: PositiveInt | None = option(None, help="evaluate the first N questions only")
    dtype: str = option("auto", help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16", choices=DTYPES)
    quantize: str | None = option(
        None, help="load the base in 4-bit NF4 (bitsandbytes); default: as the run was trained", choices=QUANTIZE
    )
    device_map: str | None = option(
        None,
        help="spread a model too large for one device: auto fills every GPU, then CPU memory, then disk",
        choices=DEVICE_MAPS,
    )
    batch_tokens: PositiveInt | None = option(None, help="token budget of one forward pass (default: by device)")
    out: str | None = option(None, help="results JSON (default <run>/eval/<data>-<k>shot.json)")
    pairs: list[str] = option(
        default_factory=lambda: list(DEFAULT_PAIRS),
        help="mode pairs a:b whose per-question difference is tested (when both are evaluated)",
    )
    bootstrap: PositiveInt = option(DEFAULT_RESAMPLES, help="paired bootstrap resamples (seeded)")
    lm_eval_out: str | None = option(
        None, help="also write lm-eval's layout here: <model>/results_<date>.json and samples_<task>_<date>.jsonl"
    )


def default_fewshot_spec(spec: str) -> str:
    """The few-shot pool for a `benchmark:split` spec: its train split, or validation when train is evaluated."""
    if spec.endswith(".jsonl") or "," in spec or ":" not in spec:
        raise LikraError(f"--shots needs --fewshot-data for data {spec!r}")
    from likra.data.benchmarks import BENCHMARKS

    bench, split = spec.split(":", 1)
    splits = BENCHMARKS[bench.split("/")[0]].splits if bench.split("/")[0] in BENCHMARKS else ("train",)
    pool = "train" if "train" in splits else "dev" if "dev" in splits else "validation"
    return f"{bench}:{'validation' if split == pool else pool}"


def build_prefix(cfg: EvalConfig, records: Sequence[MCRecord], fmt: str = "cloze") -> tuple[str, list[str]]:
    """(few-shot prefix text, ids of the shots); empty for 0 shots. Shots are in the prompt format `fmt`."""
    if cfg.shots <= 0:
        return "", []
    if cfg.chat_template:
        raise LikraError("--shots with --chat-template is not supported (the shots would sit outside the template)")
    pool = format_records(
        load_spec(cfg.fewshot_data or default_fewshot_spec(cfg.data), source=cfg.source), fmt, description=False
    )
    shots = draw_shots(pool, cfg.shots, cfg.fewshot_seed, {r.id for r in records})
    return fewshot_prefix(shots), [r.id for r in shots]


def mode_metrics(
    per_head: dict[str, list[np.ndarray]], records: Sequence[MCRecord], modes: Sequence[str], weight: float
) -> dict[str, dict]:
    """{mode: {"acc": Metric json, "acc_norm": Metric json}} from cached per-head log-likelihoods."""
    golds = [r.gold for r in records]
    texts = [r.choices for r in records]
    out = {}
    for mode in modes:
        scores = question_scores(mode, per_head, weight)
        out[mode] = {
            "acc": accuracy(scores, golds).to_json(),
            "acc_norm": accuracy_norm(scores, golds, texts).to_json(),
        }
    return out


def parse_pairs(pairs: Sequence[str], modes: Sequence[str]) -> list[tuple[str, str]]:
    """`a:b` pairs of evaluated modes (a pair naming a mode that is not evaluated is skipped)."""
    out = []
    for pair in pairs:
        a, sep, b = pair.partition(":")
        if not sep or not a or not b:
            raise LikraError(f"pair {pair!r}: write two modes as a:b (e.g. likra:sft)")
        if a in modes and b in modes:
            out.append((a, b))
    return out


def mode_statistics(
    per_head: dict[str, list[np.ndarray]],
    records: Sequence[MCRecord],
    modes: Sequence[str],
    weight: float,
    pairs: Sequence[tuple[str, str]] = (),
    choice_tokens: Sequence[Sequence[int]] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Paired differences of `pairs` (acc and acc_norm), calibration of every mode, trivial baselines."""
    golds, texts = [r.gold for r in records], [r.choices for r in records]
    scores = {m: {"acc": question_scores(m, per_head, weight)} for m in {*modes, *(x for p in pairs for x in p)}}
    for s in scores.values():
        s["acc_norm"] = length_normalised(s["acc"], texts)
    paired = [
        {
            "a": a,
            "b": b,
            "metric": metric,
            **paired_difference(
                credits(scores[a][metric], golds), credits(scores[b][metric], golds), resamples, seed
            ).to_json(),
        }
        for a, b in pairs
        for metric in METRICS
    ]
    calib = {
        m: {metric: calibration(choice_probabilities(scores[m][metric]), golds).to_json() for metric in METRICS}
        for m in modes
    }
    return {"paired": paired, "calibration": calib, "baselines": trivial_baselines(golds, texts, choice_tokens)}


@dataclass
class EvalData:
    """What `likra eval` scores: the records in their prompt format (the first `--limit` of `total`), the
    few-shot prefix and its shots' ids, and what loading did (`DataInfo`)."""

    records: list[MCRecord]
    total: int
    prefix: str
    shot_ids: list[str]
    info: DataInfo


def load_eval_data(cfg: EvalConfig, tokenizer, max_length: int | None) -> EvalData:
    """The data of `cfg` in the run's prompt format (or the asked one; `cfg.format` and `cfg.chat_template`
    are set to what is used)."""
    trained = run_prompt_settings(read_manifest(resolve_run(cfg.run))) if cfg.run else None
    cfg.format, cfg.chat_template = resolve_eval_prompt(trained, cfg.format, cfg.chat_template, cfg.cross_format)
    records, info = load_data(cfg.data, cfg.source, cfg.format, cfg.chat_template, tokenizer, max_length)
    total = len(records)
    if cfg.limit is not None:
        records = records[: cfg.limit]
    prefix, shot_ids = build_prefix(cfg, records, cfg.format)
    return EvalData(records, total, prefix, shot_ids, info)


def evaluate(cfg: EvalConfig, model, tokenizer, progress: bool = False, data: EvalData | None = None) -> dict:
    """Results of `cfg` on an already loaded model (a run's PeftModel, or a plain base model); `data` as
    `load_eval_data` gives it (loaded here when not given)."""
    from likra.model.loading import model_max_length

    check(cfg)
    modes = check_modes(cfg.modes)
    max_length = model_max_length(model)
    data = data or load_eval_data(cfg, tokenizer, max_length)
    records, info, shot_ids = data.records, data.info, data.shot_ids
    pairs = parse_pairs(cfg.pairs, modes)
    prefix_ids, questions = tokenize_questions(tokenizer, records, data.prefix, max_length)
    engine = ScoringEngine(model, max_batch_tokens=cfg.batch_tokens, progress=progress)
    per_head = engine.loglikelihoods(questions, heads_for(modes), prefix_ids)
    tokens = [[len(c) for c in q.choice_ids] for q in questions]
    extra = {}
    if info.kind == "preferences":
        extra["preferences"] = preference_results(per_head, records, modes, cfg.weight, tokens, cfg.bootstrap)
    return {
        "config": asdict(cfg),
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


def default_eval_out(cfg: EvalConfig) -> Path | None:
    if cfg.out:
        return Path(cfg.out)
    if cfg.run and Path(cfg.run).is_dir():  # not for a run read from the hub cache
        tag = cfg.data.replace(":", "_").replace(",", "+").replace("/", "_")
        return Path(cfg.run) / "eval" / f"{tag}-{cfg.shots}shot.json"
    return None

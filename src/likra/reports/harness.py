"""likra's results in lm-eval's own layout, so that tools which read the harness's output read likra's.

lm-eval 0.4 writes `<output_path>/<model_name_sanitized>/results_<date>.json` (keys `results`, `configs`,
`versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`, ...) and, with `--log_samples`,
`samples_<task>_<date>.jsonl` (one line per document and filter). A likra evaluation scores several modes
from the same per-head log-likelihoods; each mode is written as the harness writes a *filter*: the metric
keys are `acc,<mode>` and `acc_norm,<mode>` (with `acc_stderr,<mode>`, ...), and every document has one
sample line per mode with `"filter": "<mode>"`. A sample line holds the mode's per-choice scores
(`filtered_resps`), the summed log-likelihood of every choice under every head (`likra.heads`) and the
document's credits. `is_greedy` is not computed by likra's cached scoring and is written as null.

Nothing here imports lm-eval: the files are plain JSON, tested by reading them back with the harness's
own helpers (`make_table`, `get_results_filenames`, ...).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from likra.data.benchmarks import BENCHMARKS
from likra.data.records import MCRecord
from likra.io import atomic_write_text
from likra.scoring.evaluate import EvalConfig, EvalData
from likra.scoring.metrics import METRICS, mode_metrics, tie_credit
from likra.scoring.modes import question_scores
from likra.scoring.stats import length_normalised

if TYPE_CHECKING:
    from likra.experiments.curve import CurveRun
TASK_VERSION = 1.0


def sanitize_model_name(name: str) -> str:
    """The harness's folder name for a model (lm_eval.utils.sanitize_model_name)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def task_name(spec: str, prompt: str = "") -> str:
    """`likra_<benchmark>` where the spec is the split lm-eval's `likra_<benchmark>` task evaluates (test
    when the benchmark has one, else validation), else the spec as a harness task name (`arc_challenge_validation`);
    `prompt` (e.g. `letter`, `chat`) is appended when the prompts are not the task's cloze ones."""
    bench, _, split = spec.partition(":")
    suffix = f"_{prompt}" if prompt else ""
    if bench in BENCHMARKS:
        splits = BENCHMARKS[bench].splits
        if split == ("test" if "test" in splits else "validation"):
            return f"likra_{bench}{suffix}"
    name = Path(spec).stem if spec.endswith(".jsonl") else spec
    return re.sub(r"\W", "_", name) + suffix


def prompt_tag(fmt: str | None, chat_template: bool | None) -> str:
    """'' for cloze prompts, else `letter`, `chat` or `letter_chat`."""
    parts = [p for p, on in (("letter", fmt == "letter"), ("chat", bool(chat_template))) if on]
    return "_".join(parts)


def date_id() -> str:
    """The harness's timestamp in file names (EvaluationTracker.date_id)."""
    return datetime.now().isoformat().replace(":", "-")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def results_json(
    task: str,
    metrics: dict[str, dict],
    n_shot: int,
    n_samples: int,
    model_name: str,
    model_args: str,
    data_spec: str,
    extra: dict | None = None,
    start_time: float | None = None,
    n_original: int | None = None,
) -> dict:
    """The aggregated results file's content; `metrics` maps mode -> {"acc": Metric json, "acc_norm": ...};
    `n_original`: the size of the data set when only its first `n_samples` were evaluated."""
    from likra.runs import library_versions

    row: dict = {"alias": task}
    for mode, by_metric in metrics.items():
        for metric in METRICS:
            m = by_metric[metric]
            row[f"{metric},{mode}"] = m["value"]
            row[f"{metric}_stderr,{mode}"] = m["stderr"] if "stderr" in m else "N/A"
    now = time.time()
    versions = library_versions()
    return {
        "results": {task: row},
        "group_subtasks": {task: []},
        "configs": {
            task: {
                "task": task,
                "dataset_path": data_spec,
                "output_type": "multiple_choice",
                "num_fewshot": n_shot,
                "target_delimiter": " ",
                "fewshot_delimiter": "\n\n",
                "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
                "filter_list": [
                    {"name": mode, "filter": [{"function": "likra_mode", "mode": mode}]} for mode in metrics
                ],
                "metadata": {"version": TASK_VERSION, "likra_data": data_spec},
            }
        },
        "versions": {task: TASK_VERSION},
        "n-shot": {task: n_shot},
        "higher_is_better": {task: {m: True for m in METRICS}},
        "n-samples": {task: {"original": n_original or n_samples, "effective": n_samples}},
        "config": {
            "model": "likra",
            "model_args": model_args,
            "batch_size": "auto",
            "limit": n_samples if n_original and n_original > n_samples else None,
        },
        "git_hash": None,
        "date": now,
        "transformers_version": versions.get("transformers"),
        "likra_version": versions.get("likra"),
        "model_name": model_name,
        "model_name_sanitized": sanitize_model_name(model_name),
        "start_time": start_time if start_time is not None else now,
        "end_time": now,
        "total_evaluation_time_seconds": str(now - start_time) if start_time is not None else "0",
        "likra": extra or {},
    }


def sample_lines(
    records: Sequence[MCRecord],
    per_head: dict[str, list[np.ndarray]],
    modes: Sequence[str],
    weight: float,
    prefix: str = "",
) -> list[dict]:
    """One harness sample per (document, mode): arguments, the mode's per-choice scores, every head's
    log-likelihoods and the document's acc / acc_norm credits."""
    texts = [r.choices for r in records]
    heads = list(per_head)
    lines = []
    for mode in modes:
        summed = question_scores(mode, per_head, weight)
        normed = length_normalised(summed, texts)
        for i, rec in enumerate(records):
            context = prefix + rec.prompt
            arguments = {
                f"gen_args_{j}": {"arg_0": context, "arg_1": rec.continuation(j)} for j in range(len(rec.choices))
            }
            scores = [float(s) for s in summed[i]]
            lines.append(
                {
                    "doc_id": i,
                    "doc": rec.to_json(),
                    "target": rec.gold,
                    "arguments": arguments,
                    "resps": [[[s, None]] for s in scores],
                    "filtered_resps": [[s, None] for s in scores],
                    "filter": mode,
                    "metrics": list(METRICS),
                    "doc_hash": _hash(json.dumps(rec.to_json(), sort_keys=True)),
                    "prompt_hash": _hash(context),
                    "target_hash": _hash(str(rec.gold)),
                    "acc": tie_credit(summed[i], rec.gold),
                    "acc_norm": tie_credit(normed[i], rec.gold),
                    "likra": {"mode": mode, "weight": weight, "heads": {h: per_head[h][i].tolist() for h in heads}},
                }
            )
    return lines


def write_harness_results(
    out_dir: str | Path,
    model_name: str,
    task: str,
    results: dict,
    samples: Sequence[dict],
    stamp: str | None = None,
) -> tuple[Path, Path]:
    """Write results_<date>.json and samples_<task>_<date>.jsonl under `out_dir/<model_name_sanitized>/`."""
    stamp = stamp or date_id()
    folder = Path(out_dir) / sanitize_model_name(model_name)
    results_path = folder / f"results_{stamp}.json"
    samples_path = folder / f"samples_{task}_{stamp}.jsonl"
    atomic_write_text(samples_path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_text(results_path, json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    return results_path, samples_path


def write_scores_as_harness(
    out_dir: str | Path,
    model_name: str,
    model_args: str,
    data_spec: str,
    records: Sequence[MCRecord],
    per_head: dict[str, list[np.ndarray]],
    modes: Sequence[str],
    weight: float,
    n_shot: int = 0,
    prefix: str = "",
    extra: dict | None = None,
    start_time: float | None = None,
    n_original: int | None = None,
    prompt: str = "",
) -> tuple[Path, Path]:
    """Both harness files for one evaluation of `records` whose per-head log-likelihoods are `per_head`
    (`n_original`: the data set's size when only its first records were evaluated; `prompt`: see `prompt_tag`)."""
    task = task_name(data_spec, prompt)
    metrics = mode_metrics(per_head, records, modes, weight)
    results = results_json(
        task, metrics, n_shot, len(records), model_name, model_args, data_spec, extra, start_time, n_original
    )
    return write_harness_results(
        out_dir, model_name, task, results, sample_lines(records, per_head, modes, weight, prefix)
    )


def write_eval_as_harness(cfg: EvalConfig, results: dict, data: EvalData) -> tuple[Path, Path]:
    """The harness files of a `likra eval` result (`results` as `likra.scoring.evaluate.evaluate` returns it for
    `data`, `cfg` as it left it: its prompt format resolved)."""
    per_head = {h: [np.array(v) for v in vals] for h, vals in results["loglikelihoods"].items()}
    model_name = f"likra__{Path(cfg.run).name}" if cfg.run else cfg.model
    prompt = prompt_tag(cfg.format, cfg.chat_template)
    model_args = (f"run={cfg.run},weight={cfg.weight}" if cfg.run else f"model={cfg.model},mode=base") + (
        f",format={cfg.format},chat_template={bool(cfg.chat_template)}"
    )
    extra = {"statistics": results["statistics"], "metrics_with_intervals": results["metrics"]}
    return write_scores_as_harness(
        cfg.lm_eval_out,
        model_name,
        model_args,
        cfg.data,
        data.records,
        per_head,
        list(results["metrics"]),
        cfg.weight,
        cfg.shots,
        data.prefix,
        extra,
        n_original=data.total,
        prompt=prompt,
    )


def write_curve_as_harness(run: CurveRun) -> list[Path]:
    """The harness files of every evaluated point of a finished `CurveRun`: the base model, then one model
    folder per (seed, examples) checkpoint, read from the curve folder's cached score files."""
    from likra.experiments.folder import read_scores

    cfg = run.cfg
    records, n = run.eval_records, len(run.eval_records)
    # one folder may hold several negative sets and evaluations: both name the model
    stem = f"likra__{Path(cfg.out).name}__{run.variant}__{run.eval_tag}"
    points = [(f"{stem}__base", {"base": run.base_file}, ["base"], 0)]
    for seed, files in run.score_files.items():
        for examples, by_head in files:
            points.append((f"{stem}__seed-{seed}__examples-{examples}", by_head, run.modes, examples))
    paths = []
    for model_name, by_head, modes, examples in points:
        per_head = {h: read_scores(path, n) for h, path in by_head.items()}
        model_args = (
            f"curve={cfg.out},negatives={run.variant},examples={examples},weight={cfg.weight},"
            f"format={cfg.format},chat_template={cfg.chat_template}"
        )
        paths += write_scores_as_harness(
            cfg.lm_eval_out,
            model_name,
            model_args,
            cfg.eval_data,
            records,
            per_head,
            modes,
            cfg.weight,
            cfg.shots,
            run.eval_prefix,
            {"examples": examples},
            n_original=run.eval_total,
            prompt=prompt_tag(cfg.format, cfg.chat_template),
        )
    return paths

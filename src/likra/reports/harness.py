"""likra's results in lm-eval's own files, so that what reads a stock harness run reads likra's, side by side.

lm-eval 0.4 writes `<output_path>/<model_name_sanitized>/results_<date>.json` and, with `--log_samples`,
`samples_<task>_<date>.jsonl` (one line per document and filter). When lm-eval is installed, likra writes both
through the harness's own `EvaluationTracker` (its file names, its sanitising of sample lines, its
`task_hashes`) and hashes documents with its `hash_string`, so a sample line has the same keys and types as a
stock run's (`target` and `resps` / `filtered_resps` as strings) and the same `doc_hash` for the same
document: `datasets` loads stock and likra samples of a task together. Without lm-eval, the same files are
written by the same rules here.

A likra evaluation scores several modes from the same per-head log-likelihoods; each mode is written as the
harness writes a *filter*: metric keys `acc,<mode>`, `acc_norm,<mode>` (with `acc_stderr,<mode>`, ...), one
sample line per document and mode with `"filter": "<mode>"`, and in the task's `configs` block a
`filter_list` entry per mode named after it whose function is the harness's own `take_first` (what a
multiple-choice task applies to the model's answers; the mode itself is the model's, as in
`--model likra --model_args mode=<mode>`). `resps` and `filtered_resps` hold the mode's score of every
choice as the `likra` lm-eval model answers it, `(score, is_greedy)`; likra's cached scoring does not compute
`is_greedy`, written "None". Every head's summed log-likelihood per choice is in the results file's `likra`
block (`loglikelihoods`, question by question).

`task_hashes` is the harness's hash of a task's samples (`doc_hash + prompt_hash + target_hash` of each,
joined) over one sample per document, as a stock run (one filter, `none`) writes it for the same documents;
the `likra` block's `task_hashes` gives it per mode (the same documents: the same hash in every mode).

The `configs` block is re-runnable on another machine: the evaluated questions (in their prompt format) and
the few-shot examples used, in order, are written as JSONL beside the model folders (`<output_path>/tasks/
data/`, named by their content's hash), and the task config reads them by paths relative to `<output_path>`
(`doc_to_text: prompt`, `doc_to_choice: choices`, `doc_to_target: gold`, `fewshot_config: {sampler:
first_n}`), so `python -m likra.lmeval --model likra --model_args run=RUN,<metadata.likra_modes[mode]>
--tasks <config as YAML>`, run in `<output_path>`, scores the same contexts again in that mode (its rows come
back as the harness's filter `none`). A mode is the model's, not a filter a rerun could apply, so the config has no
`filter_list`: `metadata.likra_modes` gives each scored mode as the `--model_args` that apply it.

The seeds (`config.random_seed`, ...) are integers, those in effect: `fewshot_seed` is the seed of the
few-shot order; `likra eval` seeds python's `random`, numpy and torch with the harness's defaults (0, 1234,
1234) before it scores (its scoring draws nothing from them), `likra curve` when it starts, and a curve's
checkpoint records the seed its heads were trained with (`--seed` + s: the Trainer seeds all three with it).
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from likra.data.benchmarks import BENCHMARKS
from likra.data.examples import FEWSHOT_SEED
from likra.data.lmeval_tasks import PREFIX as LMEVAL
from likra.data.lmeval_tasks import task_config, task_document
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.io import atomic_write_text
from likra.scoring.evaluate import EvalConfig, EvalData
from likra.scoring.metrics import METRICS, mode_metrics, per_character, tie_credit
from likra.scoring.modes import question_scores

if TYPE_CHECKING:
    from likra.experiments.curve import CurveResult
TASK_VERSION = 1.0
FEWSHOT_DELIMITER = "\n\n"
SEED_KEYS = ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")
# The harness's defaults (`--seed 0,1234,1234`) for python's `random`, numpy and torch: what `likra eval` and
# `likra curve` seed them with (`seed_generators`); likra's few-shot order has a seed of its own.
GENERATOR_SEEDS = {"random_seed": 0, "numpy_seed": 1234, "torch_seed": 1234}


def seed_generators(seeds: Mapping[str, int] = GENERATOR_SEEDS) -> dict[str, int]:
    """Seed python's `random`, numpy's global generator and torch as the harness does before it evaluates;
    returns the seeds (what a results file records)."""
    import torch

    random.seed(seeds["random_seed"])
    np.random.seed(seeds["numpy_seed"])
    torch.manual_seed(seeds["torch_seed"])
    return dict(seeds)


def sanitize_model_name(name: str) -> str:
    """The harness's folder name for a model (lm_eval.utils.sanitize_model_name)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def hash_string(text: str) -> str:
    """The harness's hash (lm_eval.utils.hash_string): sha256 of the UTF-8 text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_hash(doc: dict) -> str:
    """The harness's `doc_hash` of a document (its JSON as the evaluator dumps it)."""
    return hash_string(json.dumps(doc, indent=2, default=_serializable, ensure_ascii=False))


def _serializable(o: Any) -> Any:
    """lm_eval.utils.handle_non_serializable."""
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, set):
        return list(o)
    return str(o)


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


@dataclass
class HarnessModel:
    """Who was evaluated, as the harness records a model: its name (the folder), `model_args` (a dict, as the
    harness CLI writes them) and what `model_info` gives."""

    name: str
    args: dict
    info: dict = field(default_factory=dict)

    @property
    def chat_template(self) -> str | None:
        return self.info.get("chat_template")


def model_info(model, tokenizer, chat_template: bool = False) -> dict:
    """The model and tokenizer facts a stock run records (`model_num_parameters` of the base without adapters,
    `model_dtype`, tokenizer tokens, `max_length`, the chat template when used)."""
    from likra.model.loading import model_max_length

    params = [p for name, p in model.named_parameters() if "lora_" not in name]
    info = {
        "model_num_parameters": int(sum(p.numel() for p in params)),
        "model_dtype": str(params[0].dtype) if params else "",
        "model_revision": "main",
        "model_sha": "",
        "device": str(params[0].device) if params else "cpu",
        "tokenizer_pad_token": [tokenizer.pad_token, str(tokenizer.pad_token_id)],
        "tokenizer_eos_token": [tokenizer.eos_token, str(tokenizer.eos_token_id)],
        "tokenizer_bos_token": [tokenizer.bos_token, str(tokenizer.bos_token_id)],
        "eot_token_id": tokenizer.eos_token_id,
        "max_length": model_max_length(model),
    }
    if chat_template:
        info["chat_template"] = getattr(tokenizer, "chat_template", None)
    return info


@dataclass
class HarnessEvaluation:
    """One evaluation to write: `records` of `data_spec` (the first `len(records)` of `n_original`), scored by
    the heads as `per_head`, in `modes` at negative weight `weight`, after the few-shot `shots` (`prefix` is
    their text, drawn in the order of `fewshot_seed`), with prompt tag `prompt` (see `prompt_tag`); `seeds`:
    what python's `random`, numpy and torch were seeded with (`GENERATOR_SEEDS` keys)."""

    data_spec: str
    records: Sequence[MCRecord]
    per_head: dict[str, list[np.ndarray]]
    modes: Sequence[str]
    weight: float
    shots: Sequence[MCRecord] = ()
    prefix: str = ""
    n_original: int | None = None
    prompt: str = ""
    fewshot_seed: int = FEWSHOT_SEED
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    seeds: Mapping[str, int] = field(default_factory=lambda: dict(GENERATOR_SEEDS))  # random, numpy, torch

    @property
    def task(self) -> str:
        tasks = {r.source[len(LMEVAL) :] for r in self.records if r.source.startswith(LMEVAL)}
        if len(tasks) == 1 and len(tasks) == len({r.source for r in self.records}):  # one lm-eval task: its name
            return tasks.pop()
        return task_name(self.data_spec, self.prompt)


def _jsonl(records: Sequence[MCRecord]) -> str:
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)


def portable_spec(spec: str) -> str:
    """A data spec without this machine's folders: an absolute JSONL path (alone or as a part) by its file name;
    benchmark splits and relative paths as they are."""
    if PurePath(spec).is_absolute():
        return PurePath(spec).name
    return ",".join(PurePath(p.strip()).name if PurePath(p.strip()).is_absolute() else p for p in spec.split(","))


def mode_model_args(mode: str, weight: float) -> str:
    """The `--model_args` (beside `run=RUN`) under which the `likra` lm-eval model scores in `mode`."""
    return f"mode={mode},weight={weight}"


def write_task_data(out_dir: Path, ev: HarnessEvaluation) -> dict:
    """The evaluated questions and the shots as JSONL under `<out_dir>/tasks/data/` (named by their content's
    hash, so that evaluations of other subsets never overwrite them); returns the task config that reads them,
    by paths relative to `out_dir` (a rerun runs there, on any machine)."""
    data = {"eval": ev.records, **({"fewshot": ev.shots} if ev.shots else {})}
    files = {}
    for split, records in data.items():
        text = _jsonl(records)
        relative = PurePath("tasks", "data", f"{ev.task}-{split}-{hash_string(text)[:12]}.jsonl")
        path = Path(out_dir) / relative
        if not path.is_file():
            atomic_write_text(path, text)
        files[split] = relative.as_posix()
    separators = {r.separator for r in ev.records}
    config: dict = {
        "task": ev.task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files},
        "test_split": "eval",
    }
    if ev.shots:
        config |= {"fewshot_split": "fewshot", "fewshot_config": {"sampler": "first_n"}}
    config |= {
        "doc_to_text": "prompt",
        "doc_to_target": "gold",
        "doc_to_choice": "choices",
        "target_delimiter": separators.pop() if len(separators) == 1 else " ",
        "fewshot_delimiter": FEWSHOT_DELIMITER,
        "num_fewshot": len(ev.shots),
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
        "output_type": "multiple_choice",
        "metadata": {
            "version": TASK_VERSION,
            "likra_data": portable_spec(ev.data_spec),
            "likra_weight": ev.weight,
            "likra_modes": {mode: mode_model_args(mode, ev.weight) for mode in ev.modes},
        },
    }
    return config


def _full_config(config: dict) -> dict:
    """The task config as the harness dumps it (its defaults filled in) when lm-eval is installed."""
    try:
        from lm_eval.config.task import TaskConfig
    except ImportError:
        return config
    return TaskConfig(**config).to_dict()


def sample_lines(ev: HarnessEvaluation) -> list[dict]:
    """One harness sample per (document, mode), in memory as the harness's evaluator keeps it (arguments as
    (context, continuation) pairs, responses as (score, is_greedy)); the writer turns them into file lines."""
    texts = [r.choices for r in ev.records]
    lines = []
    for mode in ev.modes:
        summed = question_scores(mode, ev.per_head, ev.weight)
        normed = per_character(summed, texts)
        for i, rec in enumerate(ev.records):
            context = ev.prefix + rec.prompt
            arguments = [(context, rec.continuation(j)) for j in range(len(rec.choices))]
            responses = [(float(s), None) for s in summed[i]]
            doc, doc_id, target = rec.to_json(), i, rec.gold
            behind = task_document(rec)  # an lm-eval task's record: the task's own document, id and target
            if behind is not None:
                doc_id, doc, target = behind.doc_id, behind.doc, behind.target
            lines.append(
                {
                    "doc_id": doc_id,
                    "doc": doc,
                    "target": target,
                    "arguments": arguments,
                    "resps": [[r] for r in responses],
                    "filtered_resps": responses,
                    "filter": mode,
                    "metrics": list(METRICS),
                    "doc_hash": doc_hash(doc),
                    "prompt_hash": hash_string(context),
                    "target_hash": hash_string(str(target)),
                    "acc": tie_credit(summed[i], rec.gold),
                    "acc_norm": tie_credit(normed[i], rec.gold),
                }
            )
    return lines


def _env_info() -> dict:
    """The harness's environment keys (`add_env_info`), with a short `pretty_env_info` (torch's collect_env
    takes seconds)."""
    from likra.runs import library_versions

    versions = library_versions()
    lm_eval = versions.get("lm-eval", "not installed")
    pretty = (
        f"PyTorch version: {versions.get('torch')}\nPython version: {platform.python_version()}\n"
        f"OS: {platform.platform()}\nlikra version: {versions.get('likra')}"
    )
    return {
        "pretty_env_info": pretty,
        "transformers_version": versions.get("transformers"),
        "lm_eval_version": lm_eval,
        "upper_git_hash": None,
    }


def results_json(ev: HarnessEvaluation, model: HarnessModel, config: dict) -> dict:
    """The aggregated results file's content before the tracker adds `task_hashes` and the model's names."""
    task, n = ev.task, len(ev.records)
    metrics = mode_metrics(ev.per_head, ev.records, ev.modes, ev.weight)
    row: dict = {"name": task, "alias": task, "sample_len": n}
    for mode, by_metric in metrics.items():
        for metric in METRICS:
            m = by_metric[metric]
            row[f"{metric},{mode}"] = m["value"]
            row[f"{metric}_stderr,{mode}"] = m["stderr"] if "stderr" in m else "N/A"
    original = ev.n_original or n
    info = {k: v for k, v in model.info.items() if k != "chat_template"}
    run_config = {
        "model": "likra",
        "model_args": model.args,
        **{k: info.pop(k) for k in ("model_num_parameters", "model_dtype", "model_revision", "model_sha") if k in info},
        "batch_size": "auto",
        "batch_sizes": [],
        "device": info.pop("device", None),
        "use_cache": None,
        "limit": n if original > n else None,
        "bootstrap_iters": 100000,
        "gen_kwargs": {},
        **{k: int(ev.fewshot_seed if k == "fewshot_seed" else ev.seeds[k]) for k in SEED_KEYS},
    }
    from likra.runs import library_versions

    return {
        "results": {task: row},
        "group_subtasks": {},
        "configs": {task: config},
        "versions": {task: TASK_VERSION},
        "n-shot": {task: len(ev.shots)},
        "higher_is_better": {task: {m: True for m in METRICS}},
        "n-samples": {task: {"original": original, "effective": n}},
        "config": run_config,
        "git_hash": None,
        "date": time.time(),
        **_env_info(),
        **info,  # tokenizer tokens, eot_token_id, max_length
        "likra": {
            "version": library_versions().get("likra"),
            **ev.extra,
            "loglikelihoods": {h: [np.asarray(v).tolist() for v in vals] for h, vals in ev.per_head.items()},
        },
    }


def _file_line(sample: dict) -> dict:
    """A sample as the harness's `save_results_samples` writes it (arguments as gen_args_i/arg_j, responses and
    target as strings)."""
    out = dict(sample)
    out["arguments"] = {
        f"gen_args_{i}": {f"arg_{j}": a for j, a in enumerate(arg)} for i, arg in enumerate(sample["arguments"])
    }
    out["resps"] = _strings(sample["resps"])
    out["filtered_resps"] = _strings(sample["filtered_resps"])
    out["target"] = str(sample["target"])
    return out


def _strings(value):
    """lm_eval.utils.sanitize_list."""
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_strings(v) for v in value)
    return str(value)


def _general_config(model: HarnessModel, seconds: float) -> dict:
    """What the harness's GeneralConfigTracker adds to a results file."""
    template = model.chat_template
    return {
        "model_source": "likra",
        "model_name": model.name,
        "model_name_sanitized": sanitize_model_name(model.name),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": None,
        "chat_template": template,
        "chat_template_sha": hash_string(template) if template else None,
        "total_evaluation_time_seconds": str(seconds),
    }


def task_hash(samples: Sequence[dict]) -> str:
    """The harness's `task_hashes` entry of a task's samples (EvaluationTracker.save_results_aggregated)."""
    return hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in samples))


def stock_samples(samples: Sequence[dict], modes: Sequence[str]) -> list[dict]:
    """The samples a stock run of the same documents has: one per document (those of mode base where it was
    scored, else of the first mode; a document's hashes are the same in every mode)."""
    mode = "base" if "base" in modes else modes[0]
    return [s for s in samples if s["filter"] == mode]


def _write_with_the_harness(out_dir: Path, model: HarnessModel, task: str, results: dict, samples: list, seconds):
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(out_dir))
    general = tracker.general_config_tracker
    general.log_experiment_args(
        model_source="likra",
        model_args=model.args,
        system_instruction=None,
        chat_template=model.chat_template,
        fewshot_as_multiturn=None,
    )
    general.model_name, general.model_name_sanitized = model.name, sanitize_model_name(model.name)
    general.start_time -= seconds  # the evaluation itself, not this writing
    modes = list(results["likra"]["task_hashes"][task])
    tracker.save_results_aggregated(results=results, samples={task: stock_samples(samples, modes)})
    if getattr(tracker, "date_id", None) is None:
        raise LikraError(f"{out_dir}: lm-eval could not write its results file there")
    tracker.save_results_samples(task_name=task, samples=samples)
    return tracker.date_id


def _write_plainly(out_dir: Path, model: HarnessModel, task: str, results: dict, samples: list, seconds) -> str:
    from datetime import datetime

    results["task_hashes"] = {task: task_hash(stock_samples(samples, list(results["likra"]["task_hashes"][task])))}
    results.update(_general_config(model, seconds))
    stamp = datetime.now().isoformat().replace(":", "-")
    folder = Path(out_dir) / sanitize_model_name(model.name)
    lines = "".join(json.dumps(_file_line(s), default=_serializable, ensure_ascii=False) + "\n" for s in samples)
    atomic_write_text(folder / f"samples_{task}_{stamp}.jsonl", lines)
    text = json.dumps(results, indent=2, default=_serializable, ensure_ascii=False)
    atomic_write_text(folder / f"results_{stamp}.json", text)
    return stamp


def write_harness_files(out_dir: str | Path, model: HarnessModel, ev: HarnessEvaluation) -> tuple[Path, Path]:
    """results_<date>.json and samples_<task>_<date>.jsonl of one evaluation under
    `out_dir/<model_name_sanitized>/` (through lm-eval's EvaluationTracker when it is installed), and the
    task's data files under `out_dir/tasks/data/`; returns the two paths."""
    out_dir = Path(out_dir)
    own = task_config(ev.records)  # an lm-eval task's records: the harness's own config of what was evaluated
    if own is not None:
        metadata = {**(own.get("metadata") or {}), "likra_modes": {m: mode_model_args(m, ev.weight) for m in ev.modes}}
        config = {**own, "metadata": metadata}
    else:
        config = _full_config(write_task_data(out_dir, ev))
    results = results_json(ev, model, config)
    samples = sample_lines(ev)
    by_mode = {mode: task_hash([s for s in samples if s["filter"] == mode]) for mode in ev.modes}
    results["likra"]["task_hashes"] = {ev.task: by_mode}
    try:
        import lm_eval.loggers  # noqa: F401
    except ImportError:
        stamp = _write_plainly(out_dir, model, ev.task, results, samples, ev.seconds)
    else:
        stamp = _write_with_the_harness(out_dir, model, ev.task, results, samples, ev.seconds)
    folder = out_dir / sanitize_model_name(model.name)
    paths = folder / f"results_{stamp}.json", folder / f"samples_{ev.task}_{stamp}.jsonl"
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise LikraError(f"{missing[0]}: lm-eval's file was not written (is {out_dir} writable?)")
    return paths


def write_eval_as_harness(
    cfg: EvalConfig,
    results: dict,
    data: EvalData,
    model,
    tokenizer,
    seconds: float = 0.0,
    seeds: Mapping[str, int] = GENERATOR_SEEDS,
) -> tuple[Path, Path]:
    """The harness files of a `likra eval` result (`results` as `likra.scoring.evaluate.evaluate` returns it for
    `data`, `cfg` as it left it: its prompt format resolved), for `model` and its `tokenizer`; `seconds`: how
    long the evaluation took, `seeds`: what `seed_generators` seeded before it."""
    per_head = {h: [np.array(v) for v in vals] for h, vals in results["loglikelihoods"].items()}
    args = {"run": cfg.run, "weight": cfg.weight} if cfg.run else {"model": cfg.model, "mode": "base"}
    args |= {"format": cfg.format, "chat_template": bool(cfg.chat_template)}
    who = HarnessModel(
        f"likra__{Path(cfg.run).name}" if cfg.run else cfg.model,
        args,
        model_info(model, tokenizer, bool(cfg.chat_template)),
    )
    ev = HarnessEvaluation(
        cfg.data,
        data.records,
        per_head,
        list(results["metrics"]),
        cfg.weight,
        data.shots,
        data.prefix,
        data.total,
        prompt_tag(cfg.format, cfg.chat_template),
        cfg.fewshot_seed,
        seconds,
        {"statistics": results["statistics"], "metrics_with_intervals": results["metrics"]},
        dict(seeds),
    )
    return write_harness_files(cfg.lm_eval_out, who, ev)


def write_curve_as_harness(run: CurveResult) -> list[Path]:
    """The harness files of every evaluated point of a finished curve (`CurveRun.run`'s result): the base model, then
    one model folder per (seed, examples) checkpoint, read from the curve folder's cached score files. The base
    point records the seeds `likra curve` starts with (`GENERATOR_SEEDS`), a checkpoint of seed s the seed its
    heads were trained with (`--seed` + s), with which the Trainer seeds python's `random`, numpy and torch."""
    from likra.experiments.folder import read_scores

    cfg = run.cfg
    records, n = run.eval_records, len(run.eval_records)
    info = model_info(run.model, run.tokenizer, cfg.chat_template)
    # one folder may hold several negative sets and evaluations: both name the model
    stem = f"likra__{Path(cfg.out).name}__{run.variant}__{run.eval_tag}"
    points = [(f"{stem}__base", {"base": run.base_file}, ["base"], 0, dict(GENERATOR_SEEDS))]
    for seed, files in run.score_files.items():
        trained = dict.fromkeys(GENERATOR_SEEDS, cfg.train.seed + seed)
        for examples, by_head in files:
            points.append((f"{stem}__seed-{seed}__examples-{examples}", by_head, run.modes, examples, trained))
    paths = []
    for model_name, by_head, modes, examples, seeds in points:
        per_head = {h: read_scores(path, n) for h, path in by_head.items()}
        args = {
            "curve": cfg.out,
            "negatives": run.variant,
            "examples": examples,
            "weight": cfg.weight,
            "format": cfg.format,
            "chat_template": cfg.chat_template,
        }
        ev = HarnessEvaluation(
            cfg.eval_data,
            records,
            per_head,
            modes,
            cfg.weight,
            run.eval_shots,
            run.eval_prefix,
            run.eval_total,
            prompt_tag(cfg.format, cfg.chat_template),
            FEWSHOT_SEED,
            extra={"examples": examples},
            seeds=seeds,
        )
        paths += write_harness_files(cfg.lm_eval_out, HarnessModel(model_name, args, info), ev)
    return paths

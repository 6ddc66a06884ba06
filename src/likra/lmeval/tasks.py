"""Offline lm-eval task configs for the bundled benchmarks: `likra_<benchmark>`.

Each task reads JSONL files exported from likra's own records (same prompts, choices and gold as
`likra eval`), scores `" " + choice` after the prompt, reports acc and acc_norm, and takes its k
shots as the first k of the few-shot pool in likra's seeded order (`sampler: first_n`), so that
`--num_fewshot k` uses exactly the shots of `likra eval --shots k`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from likra.assets import cache_dir
from likra.data.benchmarks import BENCHMARKS, load_spec
from likra.data.examples import FEWSHOT_SEED, shot_order
from likra.errors import LikraError
from likra.io import atomic_write_text

TASK_PREFIX = "likra_"


def eval_split(benchmark: str) -> str:
    """lm-eval's usual choice: the labelled test split when there is one, else validation."""
    return "test" if "test" in BENCHMARKS[benchmark].splits else "validation"


def fewshot_split(benchmark: str) -> str:
    splits = BENCHMARKS[benchmark].splits
    return "train" if "train" in splits else "dev"


def task_names() -> list[str]:
    return [TASK_PREFIX + name for name in BENCHMARKS]


def tasks_dir() -> Path:
    return cache_dir() / "lm_eval_tasks"


def export_task(benchmark: str, source: str = "auto", folder: Path | None = None) -> Path:
    """Write `likra_<benchmark>.yaml` and its data files; returns the YAML path."""
    if benchmark not in BENCHMARKS:
        raise LikraError(f"no offline lm-eval task for {benchmark!r}; tasks: {', '.join(task_names())}")
    folder = folder or tasks_dir()
    split, shots_split = eval_split(benchmark), fewshot_split(benchmark)
    records = load_spec(f"{benchmark}:{split}", source=source)
    pool = shot_order(load_spec(f"{benchmark}:{shots_split}", source=source), FEWSHOT_SEED, {r.id for r in records})
    files = {}
    for name, recs in (("eval", records), ("fewshot", pool)):
        path = folder / "data" / f"{benchmark}-{name}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r.to_json()) + "\n" for r in recs))
        files[name] = str(path)
    config = {
        "task": TASK_PREFIX + benchmark,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"eval": files["eval"], "fewshot": files["fewshot"]}},
        "output_type": "multiple_choice",
        "test_split": "eval",
        "fewshot_split": "fewshot",
        "fewshot_config": {"sampler": "first_n"},
        "doc_to_text": "prompt",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0, "likra_split": split},
    }
    path = folder / f"{TASK_PREFIX}{benchmark}.yaml"
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path


def export_requested(tasks: str, source: str = "auto", folder: Path | None = None) -> Path:
    """Export the likra_* tasks named in a comma-separated --tasks value; returns the tasks folder."""
    folder = folder or tasks_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in (t.strip() for t in tasks.split(",")):
        if name.startswith(TASK_PREFIX):
            export_task(name[len(TASK_PREFIX) :], source, folder)
    return folder

"""`lmeval:<task>[:<split>]`: any lm-evaluation-harness multiple-choice task as likra's data, for training and
evaluation, rendered by the task itself.

The harness's `TaskManager` finds the task (its bundled tasks, and the folders of task YAMLs given with
`--include-path`; a group expands to its tasks), and the task builds every question as the harness does: the
context is `fewshot_context(doc, k)` (the description, k shots from the task's own sampler seeded as
`lm_eval` seeds it, then `doc_to_text`), the choices are `doc_to_choice`, each scored after the task's
`target_delimiter`, and the gold is `doc_to_target`. So a likra record of a task is exactly a request of a stock
harness run, and every negative set of the head plan works on it (the negatives are the other choices).

    spec   := 'lmeval:' task [':' split]      split: a split of the task's dataset (default: the harness's
                                              evaluation split, test or else validation)

Tasks whose choices are contexts (Winogrande's `multiple_input` style: one continuation after several contexts)
and tasks of another output type are refused in one line: a likra head scores answers after one question.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.limits import shorten

log = logging.getLogger(__name__)

PREFIX = "lmeval:"


@dataclass(frozen=True)
class TaskDocument:
    """What stands behind one record of an lm-eval task, as a stock harness run logs and configures it."""

    task: Any  # the harness Task
    name: str
    split: str
    shots: int
    doc_id: int
    doc: dict
    target: Any  # doc_to_target, as the harness hashes it


HARNESS_FEWSHOT_SEED = 1234  # lm_eval's default --fewshot_random_seed
_include_paths: list[str] = []  # folders of task YAMLs, for every task found after `use_include_paths`
_documents: dict[str, TaskDocument] = {}  # record id -> what the harness logs of it


def is_lmeval(spec: str | None) -> bool:
    """Whether a data spec names an lm-eval task."""
    return isinstance(spec, str) and spec.strip().startswith(PREFIX)


def parse_lmeval(spec: str) -> tuple[str, str | None]:
    """(task, split or None) of `lmeval:<task>[:<split>]`."""
    body = spec.strip()[len(PREFIX) :]
    task, _, split = body.partition(":")
    if not task.strip():
        raise LikraError(f"data spec {shorten(repr(spec))}: name a task, e.g. lmeval:arc_easy or lmeval:my_task:test")
    return task.strip(), (split.strip() or None)


def use_include_paths(paths: Sequence[str] | None) -> None:
    """Make the task YAMLs under `paths` (`--include-path`) findable as `lmeval:<task>`; a folder that does not exist
    is one line."""
    missing = [p for p in paths or () if not Path(p).is_dir()]
    if missing:
        raise LikraError(f"--include-path {missing[0]}: no such folder (a folder of lm-eval task YAMLs)")
    _include_paths[:] = [str(Path(p).resolve()) for p in paths or ()]


@functools.lru_cache(maxsize=8)
def _task_manager(include: tuple[str, ...], defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include) or None, include_defaults=defaults)


def _harness():
    from likra.extras import require

    require("lm_eval", "lmeval:<task> data")


@functools.lru_cache(maxsize=32)
def load_tasks(name: str, include: tuple[str, ...] = ()) -> dict[str, Any]:
    """{task name: its harness Task} for a task or group `name` (a group's tasks in the harness's order), found in
    `include` first (a user's folder: only it is indexed, which is fast) and then among the harness's own tasks;
    hub-backed datasets are read from the datasets cache when the hub does not answer."""
    _harness()
    import datasets.config
    from lm_eval.tasks import get_task_dict

    from likra.locations import hub_options

    saved, error, offline = datasets.config.HF_HUB_OFFLINE, None, False
    # a user's folder alone first (fast to index); then with the harness's tasks (a user's group may name them)
    for include_paths, defaults in [(include, False)] * bool(include) + [(include, True)]:
        manager = _task_manager(include_paths, defaults)
        if name not in manager.all_tasks:
            continue
        # the hub probe only for a task whose data may come from the hub (a local json/csv/... task never asks it)
        offline = not _local_data(manager, name) and bool(hub_options().get("local_files_only"))
        if offline:  # the hub does not answer: the datasets cache only, failing at once where it lacks the data
            datasets.config.HF_HUB_OFFLINE = True
        try:
            return _flatten(get_task_dict([name], manager))
        except Exception as e:  # noqa: BLE001 - datasets, YAML and the harness raise many kinds
            error = e
        finally:
            datasets.config.HF_HUB_OFFLINE = saved
    if error is None:
        import difflib

        close = difflib.get_close_matches(name, _task_manager(include, True).all_tasks, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (add --include-path DIR for your own task YAMLs)"
        raise LikraError(f"lmeval:{shorten(name)}: no such lm-eval task or group{hint}")
    why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    where = " (offline: not in the datasets cache)" if offline else ""
    raise LikraError(f"lmeval:{shorten(name)}: the harness could not load it{where}: {shorten(why, 200)}")


LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


def _local_data(manager: Any, name: str) -> bool:
    """Whether task `name`'s YAML reads local files (`dataset_path` a local builder or folder): no hub involved."""
    import re

    path = getattr(manager.task_index.get(name), "yaml_path", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        return False
    found = re.search(r"^dataset_path:\s*(\S+)", text, re.MULTILINE)
    value = found.group(1).strip("'\"") if found else ""
    return bool(value) and (value in LOCAL_BUILDERS or Path(value).is_dir())


def _flatten(found: dict) -> dict[str, Any]:
    """The tasks of a harness task dict, groups (nested dicts under a group key) expanded, in order."""
    out: dict[str, Any] = {}
    for value in found.values():
        if isinstance(value, dict):
            out.update(_flatten(value))
        else:
            out[value.config.task] = value
    return out


def check_task(task: Any, name: str) -> None:
    """One line for a task likra cannot score as a question with answers."""
    kind = getattr(task, "OUTPUT_TYPE", None)
    if kind != "multiple_choice":
        raise LikraError(
            f"lmeval:{name}: output type {kind!r}; likra takes multiple_choice tasks (answers scored after a question)"
        )
    if getattr(task, "multiple_input", 0):
        raise LikraError(
            f"lmeval:{name}: its choices are contexts before one shared answer (multiple_input, as Winogrande); a"
            " likra head scores answers after one question, so this task is not taken"
        )


def task_docs(task: Any, name: str, split: str | None) -> tuple[str, Any]:
    """(split, documents after the task's process_docs) of `split`, or of the harness's evaluation split."""
    config = task.config
    if split is None:
        split = config.test_split or config.validation_split
        return split, task.eval_docs
    roles = {config.training_split: task.training_docs, config.validation_split: task.validation_docs}
    roles[config.test_split] = task.test_docs
    if split in roles:  # a split the task names (None never matches: `split` is a name here)
        return split, roles[split]()
    dataset = getattr(task, "dataset", None) or {}
    if split not in dataset:
        have = ", ".join(sorted(dataset)) or "none"
        raise LikraError(f"lmeval:{name}:{split}: the task's dataset has no split {split!r} (it has {have})")
    docs = dataset[split]
    return split, config.process_docs(docs) if callable(config.process_docs) else docs


def task_records(task: Any, name: str, split: str | None = None, shots: int = 0) -> list[MCRecord]:
    """The questions of one harness task as MCRecords: prompt = the harness's context (description, `shots` shots
    from the task's sampler seeded as the harness seeds it, the question), choices = `doc_to_choice`, separator =
    `target_delimiter`, gold = `doc_to_target`."""
    check_task(task, name)
    split, docs = task_docs(task, name, split)
    if shots:
        task.set_fewshot_seed(HARNESS_FEWSHOT_SEED)
    delimiter = task.config.target_delimiter
    records = []
    for i, doc in enumerate(docs):
        context = task.fewshot_context(doc, shots)
        choices = [str(c) for c in task.doc_to_choice(doc)]
        target = raw = task.doc_to_target(doc)
        if isinstance(target, str):
            if target not in choices:
                raise LikraError(f"lmeval:{name}: document {i}'s target {shorten(repr(target))} is none of its choices")
            target = choices.index(target)
        if not isinstance(target, int) or not 0 <= target < len(choices):
            raise LikraError(
                f"lmeval:{name}: document {i}'s target {shorten(repr(target))} is not one choice's index "
                "(several gold answers are not taken)"
            )
        record = MCRecord(f"{name}/{split}/{i}", context, tuple(choices), target, f"lmeval:{name}", delimiter)
        _documents[record.id] = TaskDocument(task, name, split, shots, i, doc, raw)
        records.append(record)
    if not records:
        raise LikraError(f"lmeval:{name}:{split}: no documents")
    return records


def check_specs(*specs: str | None) -> None:
    """Every lm-eval task the data specs name found and of a kind likra takes (one line otherwise), before a model
    loads; the tasks are kept for the rendering that follows."""
    for spec in specs:
        for piece in (spec or "").split(","):
            if is_lmeval(piece):
                name, _ = parse_lmeval(piece)
                for task_name, task in load_tasks(name, tuple(_include_paths)).items():
                    check_task(task, task_name)


def lmeval_records(spec: str, shots: int = 0) -> list[MCRecord]:
    """Every question of the task (or each task of the group) `spec` names, rendered by the harness."""
    name, split = parse_lmeval(spec)
    tasks = load_tasks(name, tuple(_include_paths))
    return [rec for task_name, task in tasks.items() for rec in task_records(task, task_name, split, shots)]


def task_identity(spec: str) -> dict:
    """What names the task(s) of `spec` as the harness knows them: per task its version and a hash of its resolved
    configuration (the YAML after includes), so a likra evaluation and a stock run of one task are recognisably the
    same task."""
    name, split = parse_lmeval(spec)
    out = {}
    for task_name, task in load_tasks(name, tuple(_include_paths)).items():
        config = task.dump_config()
        text = json.dumps(config, sort_keys=True, default=str)
        out[task_name] = {
            "version": (config.get("metadata") or {}).get("version"),
            "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "split": split or task.config.test_split or task.config.validation_split,
        }
    return out


def task_document(record: MCRecord) -> TaskDocument | None:
    """What stands behind a record of an lm-eval task (its task, split, shots, doc id, document, target), as a stock
    harness run logs them, so likra's sample files hash as the harness's do; None for other records."""
    return _documents.get(record.id) if record.source.startswith(PREFIX) else None


def task_config(records: Sequence[MCRecord]) -> dict | None:
    """The harness's own configuration of the one task, split and shots `records` were rendered from (`dump_config`
    with that split as its test split and those shots as `num_fewshot`): what a stock run of the same evaluation
    records and reruns; None unless every record is of one such rendering."""
    behind = [task_document(r) for r in records]
    if not behind or any(b is None for b in behind):
        return None
    first = behind[0]
    if any((b.name, b.split, b.shots) != (first.name, first.split, first.shots) for b in behind):
        return None
    return {**first.task.dump_config(), "test_split": first.split, "num_fewshot": first.shots}

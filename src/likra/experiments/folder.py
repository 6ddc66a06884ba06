"""The one owner of a curve folder's layout: every path below is built here and nowhere else.

    <out>/curve-config.json                        the training settings; a run with other ones is refused
    <out>/scores/<eval>/base.json                  base-model log-likelihoods (once per evaluation set)
    <out>/mined-base-scores.json                   base-model choice scores of training questions (hardest/easiest)
    <out>/seed-<s>/<head folder>/checkpoint-<step>/<adapter>/   Trainer checkpoints (resume state until done)
    <out>/seed-<s>/<head folder>.done.json         training statistics, written when the head finished
    <out>/seed-<s>/scores/<eval>/step-<step>-<head folder>.json   a checkpoint's per-question log-likelihoods
    <out>/curve.json, curve.csv, curve-paired.csv    the curve's rows, its paired differences
    <out>/curve.png/.svg, calibration.png/.svg, worth.png/.svg, report.md
    <out>/study-<name>.json, study-<name>.png/.svg
    <out>/tensorboard/, <out>/wandb/                 tracking (`--report-to`)

Head folders are the heads' `folder` names: `positive`, `negative` (near-miss negatives), `negative-<set>`
for other negative sets, `dpo`, ...; folders written by likra 0.1 have exactly this layout.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from likra.distributed import is_main, start
from likra.errors import LikraError
from likra.io import atomic_write_json
from likra.limits import read_json_file, shorten
from likra.model.heads import HeadSpec, load_adapter_weights
from likra.objectives.registry import checkpoint_dir, complete_checkpoints

CONFIG = "curve-config.json"
LOCK = ".likra.lock"
_held: set[Path] = set()  # folders this process holds the lock of


def read_json(path: Path) -> Any:
    """A JSON file likra wrote, or a LikraError saying it is damaged (never a traceback)."""
    return read_json_file(path, "damaged file; delete it to recompute it")


def read_scores(path: Path, n_questions: int | None = None) -> list[np.ndarray] | None:
    """Cached per-question log-likelihoods, or None when not computed yet."""
    if not Path(path).is_file():
        return None
    values = read_json(path)
    if not isinstance(values, list) or (n_questions is not None and len(values) != n_questions):
        raise LikraError(f"{path}: damaged score file (expected {n_questions} questions); delete it to rescore")
    return [np.array(v) for v in values]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_seed(v: Any) -> bool:
    return (_is_int(v) and v >= 0) or v == "mean"


# What every reader of curve.json (likra plot, compare, report and the figures) takes from it, and what it must be.
CURVE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str), "a name"),
    "data": (lambda v: isinstance(v, str), "a name"),
    "eval_data": (lambda v: isinstance(v, str), "a name"),
    "seeds": (lambda v: _is_int(v) and v >= 1, "a number of seeds (1 or more)"),
    "n_eval": (lambda v: _is_int(v) and v >= 0, "a number of questions"),
    "config": (lambda v: isinstance(v, dict), "an object (the curve's settings)"),
    "rows": (lambda v: isinstance(v, list), "a list of rows"),
}
CURVE_ROW_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_seed, "a seed number or 'mean'"),
    "examples": (lambda v: _is_int(v) and v >= 0, "a number of examples"),
    "step": (lambda v: _is_int(v) and v >= 0, "a number of steps"),
    "mode": (lambda v: isinstance(v, str), "a mode name"),
    "metric": (lambda v: isinstance(v, str), "a metric name"),
    "value": (_is_number, "a number"),
    "n": (lambda v: _is_int(v) and v >= 0, "a count"),
    "ci_low": (_is_number, "a number"),
    "ci_high": (_is_number, "a number"),
}
# The optional sections the report and figures read, and the keys each of their rows needs.
CURVE_SECTIONS = {
    "paired": ("seed", "examples", "a", "b", "metric", "diff", "ci_low", "ci_high"),
    "calibration": ("seed", "examples", "mode", "metric", "ece", "brier"),
}
CURVE_REWRITE = "a damaged curve.json: the folder's `likra curve` command, run again, writes it again"


def check_curve(curve: Any, where: str | Path) -> dict:
    """`curve` (curve.json's content) if it has what its readers take from it, else a LikraError naming `where`
    and the first thing wrong (`<where>: row 3 lacks 'value'`)."""
    if not isinstance(curve, dict):
        raise LikraError(f"{where}: not a likra curve.json (a {type(curve).__name__}, not an object)")
    missing = [k for k in CURVE_FIELDS if k not in curve]
    if missing:
        raise LikraError(f"{where}: not a likra curve.json (it lacks {', '.join(map(repr, missing))})")
    for key, (ok, what) in CURVE_FIELDS.items():
        if not ok(curve[key]):
            raise LikraError(f"{where}: {key!r} is {_shown(curve[key])}, not {what} ({CURVE_REWRITE})")
    modes = curve["config"].get("modes")
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise LikraError(f"{where}: config 'modes' is {_shown(modes)}, not a list of mode names ({CURVE_REWRITE})")
    _check_rows(curve["rows"], "row", CURVE_ROW_FIELDS, where)
    for section, keys in CURVE_SECTIONS.items():
        if section in curve:
            rows = curve[section]
            if not isinstance(rows, list):
                raise LikraError(f"{where}: {section!r} is {_shown(rows)}, not a list of rows ({CURVE_REWRITE})")
            _check_rows(rows, f"{section} row", {k: (lambda v: True, "") for k in keys}, where)
    return curve


def _shown(value: Any) -> str:
    """A value as an error shows it: its type, and the value itself when short and plain."""
    plain = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    return f"{type(value).__name__} {shorten(repr(value), 40)}" if plain else type(value).__name__


def _check_rows(rows: list, name: str, fields: dict, where: str | Path) -> None:
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise LikraError(f"{where}: {name} {i} is {_shown(row)}, not an object ({CURVE_REWRITE})")
        for key, (ok, what) in fields.items():
            if key not in row:
                raise LikraError(f"{where}: {name} {i} lacks {key!r} ({CURVE_REWRITE})")
            if not ok(row[key]):
                raise LikraError(f"{where}: {name} {i} has {key} = {_shown(row[key])}, not {what} ({CURVE_REWRITE})")


def read_curve(path: str | Path) -> dict:
    """A curve.json (or a curve folder's), checked by `check_curve`: one LikraError line naming the file when it
    is missing, not JSON or lacks what its readers need, never a KeyError or TypeError later."""
    p = Path(path)
    if p.is_dir():
        p = CurveFolder(p).curve_file
    if not p.is_file():
        raise LikraError(f"{p}: no such curve file")
    return check_curve(read_json(p), p)


class CurveFolder:
    """Paths of one curve folder, reading and writing its cached scores, and loading its adapters."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- paths ----------------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.root / CONFIG

    @property
    def mined_scores_file(self) -> Path:
        return self.root / "mined-base-scores.json"

    def base_scores_file(self, eval_tag: str) -> Path:
        return self.root / "scores" / eval_tag / "base.json"

    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed-{seed}"

    def work_dir(self, seed: int, head: HeadSpec) -> Path:
        return self.seed_dir(seed) / head.folder

    def done_file(self, seed: int, head: HeadSpec) -> Path:
        return self.seed_dir(seed) / f"{head.folder}.done.json"

    def checkpoint(self, seed: int, head: HeadSpec, step: int) -> Path:
        return checkpoint_dir(self.work_dir(seed, head), step)

    def scores_file(self, seed: int, eval_tag: str, head: HeadSpec, step: int) -> Path:
        return self.seed_dir(seed) / "scores" / eval_tag / f"step-{step}-{head.folder}.json"

    @property
    def curve_file(self) -> Path:
        return self.root / "curve.json"

    @property
    def csv_file(self) -> Path:
        return self.root / "curve.csv"

    @property
    def paired_csv_file(self) -> Path:
        return self.root / "curve-paired.csv"

    @property
    def report_file(self) -> Path:
        return self.root / "report.md"

    def figure_stem(self, name: str) -> Path:
        """Where figure `name` (curve, calibration, worth) is written, as .png and .svg."""
        return self.root / name

    def tracking_dir(self, backend: str) -> Path:
        """Where `--report-to <backend>` logs (tensorboard, wandb)."""
        return self.root / backend

    def study_file(self, name: str) -> Path:
        return self.root / f"study-{name}.json"

    def study_stem(self, name: str) -> Path:
        return self.root / f"study-{name}"

    # -- contents -------------------------------------------------------------------------------------
    def check_settings(self, current: dict, write: bool, upgrade: Callable[[dict], dict] | None = None) -> None:
        """Refuse a folder trained with other settings; record `current` in a new folder (when `write`). `upgrade`
        reads a folder's recorded settings in today's terms (what an earlier version's value meant)."""
        if self.config_file.is_file():
            previous = read_json(self.config_file)
            if not isinstance(previous, dict):
                raise LikraError(f"{self.config_file}: damaged file; delete the folder or use another --out")
            previous = upgrade(previous) if upgrade is not None else previous
            # A key only the folder records (a non-default prompt format) differs from its absence here.
            keys = [k for k in dict.fromkeys([*current, *previous]) if previous.get(k) != current.get(k)]
            if keys:
                hint = ""
                if "dtype" in keys and previous.get("dtype") in ("fp32", "bf16", "fp16"):
                    hint = (
                        f" (its heads trained in {previous['dtype']}: --train-dtype {previous['dtype']} continues it)"
                    )
                raise LikraError(
                    f"{self.root}: holds a curve trained with other settings ({', '.join(keys)}); "
                    f"use another --out or delete it{hint}"
                )
        elif write:
            atomic_write_json(self.config_file, current)

    def write_scores(self, path: Path, scores: list[np.ndarray]) -> None:
        atomic_write_json(path, [s.tolist() for s in scores])

    def load_adapter(self, model, seed: int, head: HeadSpec, step: int) -> None:
        """Load the head's checkpoint after `step` optimizer steps into its adapter of `model`."""
        folder = self.checkpoint(seed, head, step)
        if not folder.is_dir():
            raise LikraError(
                f"{folder}: missing checkpoint of head {head.name!r}; delete {self.done_file(seed, head)} to retrain it"
            )
        load_adapter_weights(model, head.adapter, folder)

    def last_step(self, seed: int, head: HeadSpec) -> int:
        steps = complete_checkpoints(self.work_dir(seed, head), head.adapter)
        if not steps:
            raise LikraError(f"{self.work_dir(seed, head)}: no checkpoints of head {head.name!r}")
        return max(steps)

    # -- exclusive use ----------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder while a curve or study works in it: a second likra process
        is refused with a one-line error naming the holder's PID. The kernel drops the lock when its process
        dies, so a stale lock never blocks. Re-entrant within a process; data-parallel workers share their
        main process's lock. A folder this call created that holds nothing else afterwards is removed."""
        import fcntl

        start()  # join `accelerate launch`'s process group first, so that only the main process locks
        root = self.root.absolute()
        if not is_main() or root in _held:
            yield
            return
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LikraError(
                f"{self.root}: in use by another likra process (PID {holder}); wait for it to finish "
                "or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held.add(root)
        try:
            yield
        finally:
            _held.discard(root)
            try:
                if created and {p.name for p in self.root.iterdir()} == {LOCK}:
                    path.unlink()  # still locked: nobody can be holding it
                    self.root.rmdir()
            except OSError:
                pass
            finally:
                os.close(fd)

"""Experiment tracking: training losses and a curve's evaluation metrics on one dashboard.

`--report-to` takes a list, as the Trainer's `report_to` does: `tensorboard`, `wandb`, `tensorboard,wandb`,
`all` (every backend whose package is installed) or `none` (the default). Every head's Trainer gets a
logging callback per backend (its loss, learning rate and objective metrics against its optimizer step), and
a curve logs every checkpoint's acc / acc_norm per mode under `eval/` against the number of training
examples seen, so loss curves and learning curves sit side by side.

TensorBoard writes event files under the run or curve folder and works offline, every scalar against one
step axis, the training examples seen (a head's questions seen at an optimizer step, as a curve counts them):
`<folder>/tensorboard/seed-<s>/<head>` (tags `train/loss`, `train/learning_rate`, ..., and
`train/optimizer_step`, the head's own step at each point) and, for a curve's evaluations,
`<folder>/tensorboard/seed-<s>/eval-<series>` (tags `eval/acc/<mode>`, `eval/acc_norm/<mode>`; the series
names the negative set and the evaluation, e.g. `eval-near_miss-arc_challenge_validation-0shot`, because a
study runs several curves in one folder), so a head's loss and a checkpoint's accuracy after as many examples
sit at the same x. Every head logs its loss every `--logging-steps` optimizer steps and at its last step
(`likra.objectives.registry`), so a short run logs it too. Weights & Biases logs one run per curve or run folder into
`<folder>/wandb/` (project from `WANDB_PROJECT`, default `likra`): `train/seed-<s>/<head>/<key>` with a step
axis per head (`define_metric`: optimizer steps of different heads are different x axes) and
`eval/<series>/seed-<s>/<metric>/<mode>` against `examples`. The Trainer's own `report_to` stays empty:
likra attaches the callbacks itself so it controls where each head's logs go.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Sequence

from pydantic import BeforeValidator

from likra.errors import LikraError

BACKENDS = ("tensorboard", "wandb")
REPORT_TO = ("none", *BACKENDS, "all")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def _as_list(value: Any) -> Any:
    """`tensorboard,wandb` (a flag or a YAML string) as a list; a list as it is."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


# The type of a `report_to` setting: a list of REPORT_TO names (a comma-separated string is split).
ReportTo = Annotated[list[str], BeforeValidator(_as_list)]


def examples_seen(step: int, n_examples: int, batch_size: int, epochs: float = 1.0) -> int:
    """Training examples seen after `step` optimizer steps of `batch_size` examples over `n_examples` for `epochs`
    (each epoch's last step takes what is left), as a curve's checkpoint schedule counts them."""
    per_epoch = max(1, math.ceil(n_examples / batch_size))
    full, part = divmod(step, per_epoch)
    return min(full * n_examples + min(part * batch_size, n_examples), round(n_examples * epochs))


class Tracker:
    """No tracking: the interface every tracker implements."""

    def trainer_callbacks(self, seed: int, head: str, examples_at: Callable[[int], int] | None = None) -> list:
        """Trainer callbacks that log head `head` of run `seed`; `examples_at(step)`: the examples it has seen
        after an optimizer step (the axis TensorBoard logs against; None: the optimizer step)."""
        return []

    def log_eval(
        self, seed: int, examples: int, metrics: Mapping[str, Mapping[str, Mapping[str, float]]], series: str = "eval"
    ) -> None:
        """Log {mode: {metric: {"value": ...}}} of the checkpoint of run `seed` after `examples` examples;
        `series` names the curve (a study runs several in one folder: one series each)."""

    def close(self) -> None:
        pass


def _numbers(logs: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardTracker(Tracker):
    def __init__(self, root: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LikraError("--report-to tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.root = Path(root)
        self._writer = SummaryWriter
        self._eval: dict[tuple[int, str], Any] = {}

    def trainer_callbacks(self, seed: int, head: str, examples_at: Callable[[int], int] | None = None) -> list:
        from transformers import TrainerCallback

        folder, opened = str(self.root / f"seed-{seed}" / head), self._writer
        axis = examples_at or (lambda step: step)

        class LogToTensorBoard(TrainerCallback):
            """The Trainer's logs as `train/<key>` against the examples seen (the writer opens when training
            begins: a head found trained opens none)."""

            writer = None

            def on_train_begin(self, args, state, control, **kwargs):
                if state.is_world_process_zero and self.writer is None:
                    self.writer = opened(log_dir=folder)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if self.writer is None:
                    return
                x = axis(state.global_step)
                for key, value in _numbers(logs or {}).items():
                    self.writer.add_scalar(f"train/{key}", value, x)
                self.writer.add_scalar("train/optimizer_step", state.global_step, x)
                self.writer.flush()

            def on_train_end(self, args, state, control, **kwargs):
                if self.writer is not None:
                    self.writer.close()
                    self.writer = None

        return [LogToTensorBoard()]

    def log_eval(self, seed, examples, metrics, series: str = "eval") -> None:
        if (seed, series) not in self._eval:
            self._eval[seed, series] = self._writer(log_dir=str(self.root / f"seed-{seed}" / series))
        writer = self._eval[seed, series]
        for mode, by_metric in metrics.items():
            for metric, m in by_metric.items():
                writer.add_scalar(f"eval/{metric}/{mode}", m["value"], examples)
        writer.flush()

    def close(self) -> None:
        for writer in self._eval.values():
            writer.close()
        self._eval.clear()


class WandbTracker(Tracker):
    def __init__(self, root: Path, name: str, config: Mapping[str, Any]):
        try:
            import wandb
        except ImportError:
            raise LikraError("--report-to wandb needs the wandb package: pip install wandb") from None
        self.wandb = wandb
        Path(root).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "likra"), name=name, dir=str(root), config=dict(config)
        )
        self.run.define_metric("examples")
        self.run.define_metric("eval*", step_metric="examples")
        self._axes: set[str] = set()

    def trainer_callbacks(self, seed: int, head: str, examples_at: Callable[[int], int] | None = None) -> list:
        from transformers import TrainerCallback

        prefix = f"train/seed-{seed}/{head}"
        if prefix not in self._axes:
            self.run.define_metric(f"{prefix}/step")
            self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
            self._axes.add(prefix)
        run = self.run

        class LogToWandb(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                values = {f"{prefix}/{k}": v for k, v in _numbers(logs or {}).items()}
                if values:
                    run.log({**values, f"{prefix}/step": state.global_step})

        return [LogToWandb()]

    def log_eval(self, seed, examples, metrics, series: str = "eval") -> None:
        values = {
            f"eval/{series.removeprefix('eval-')}/seed-{seed}/{metric}/{mode}": m["value"]
            for mode, by_metric in metrics.items()
            for metric, m in by_metric.items()
        }
        self.run.log({**values, "examples": examples})

    def close(self) -> None:
        self.run.finish()


class Trackers(Tracker):
    """Several backends at once: each gets every event."""

    def __init__(self, trackers: Sequence[Tracker]):
        self.trackers = list(trackers)

    def trainer_callbacks(self, seed: int, head: str, examples_at: Callable[[int], int] | None = None) -> list:
        return [cb for t in self.trackers for cb in t.trainer_callbacks(seed, head, examples_at)]

    def log_eval(self, seed, examples, metrics, series: str = "eval") -> None:
        for t in self.trackers:
            t.log_eval(seed, examples, metrics, series)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def backends(report_to: str | Sequence[str]) -> list[str]:
    """The backends `--report-to` names, in BACKENDS order: `all` is every backend whose package is
    installed, `none` (or nothing) is none; a LikraError for an unknown name or `none` among backends."""
    names = _as_list(report_to) if isinstance(report_to, str) else list(report_to)
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise LikraError(f"--report-to {unknown[0]!r}: choose from {', '.join(REPORT_TO)} (a comma-separated list)")
    if "none" in names and len(set(names)) > 1:
        raise LikraError(f"--report-to {','.join(names)}: `none` cannot be combined with a backend")
    if "all" in names:
        from likra.extras import installed

        return [b for b in BACKENDS if installed(PACKAGES[b])]
    return [b for b in BACKENDS if b in names]


def check_available(report_to: str | Sequence[str]) -> None:
    """A LikraError when a package a named backend needs is missing (checked on every process before any
    work, so that no data-parallel worker goes on alone); it names likra's extra that installs it."""
    from likra.extras import require

    for backend in backends(report_to):
        require(PACKAGES[backend], f"--report-to {backend}")


def make_tracker(
    report_to: str | Sequence[str],
    log_dir: Callable[[str], Path],
    name: str,
    config: Mapping[str, Any] | None = None,
) -> Tracker:
    """The tracker of the backends `--report-to` names; each logs into `log_dir(backend)` (the folder the
    run or curve folder keeps for it: `tensorboard`, `wandb`)."""
    made = []
    try:
        for backend in backends(report_to):
            if backend == "tensorboard":
                made.append(TensorBoardTracker(log_dir("tensorboard")))
            elif backend == "wandb":
                made.append(WandbTracker(log_dir("wandb"), name, config or {}))
    except BaseException:
        for tracker in made:
            tracker.close()
        raise
    if not made:
        return Tracker()
    return made[0] if len(made) == 1 else Trackers(made)

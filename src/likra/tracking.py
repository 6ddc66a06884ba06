"""Experiment tracking: training losses and a curve's evaluation metrics on one dashboard.

`--report-to tensorboard|wandb|none`. Every head's Trainer gets a logging callback (its loss, learning rate
and objective metrics against its optimizer step), and a curve logs every checkpoint's acc / acc_norm per
mode against the number of training examples seen, so loss curves and learning curves sit side by side.

TensorBoard writes event files under the run or curve folder (`<folder>/tensorboard/seed-<s>/<head>` and
`.../seed-<s>/eval`) and works offline. Weights & Biases logs one run per curve (project from
`WANDB_PROJECT`, default `likra`); each head gets its own step axis (`define_metric`) because optimizer steps
of different heads and example counts are different x axes. The Trainer's own `report_to` stays empty:
likra attaches the callbacks itself so it controls where each head's logs go.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from likra.errors import LikraError

REPORT_TO = ("none", "tensorboard", "wandb")


class Tracker:
    """No tracking: the interface every tracker implements."""

    def trainer_callbacks(self, seed: int, head: str) -> list:
        """Trainer callbacks that log head `head` of run `seed`."""
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

    def trainer_callbacks(self, seed: int, head: str) -> list:
        from transformers.integrations import TensorBoardCallback

        callback = TensorBoardCallback()  # its writer opens when training begins (a trained head opens none)
        callback.logging_dir = str(self.root / f"seed-{seed}" / head)
        return [callback]

    def log_eval(self, seed, examples, metrics, series: str = "eval") -> None:
        if (seed, series) not in self._eval:
            self._eval[seed, series] = self._writer(log_dir=str(self.root / f"seed-{seed}" / series))
        writer = self._eval[seed, series]
        for mode, by_metric in metrics.items():
            for metric, m in by_metric.items():
                writer.add_scalar(f"{metric}/{mode}", m["value"], examples)
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

    def trainer_callbacks(self, seed: int, head: str) -> list:
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
            f"{series}/seed-{seed}/{metric}/{mode}": m["value"]
            for mode, by_metric in metrics.items()
            for metric, m in by_metric.items()
        }
        self.run.log({**values, "examples": examples})

    def close(self) -> None:
        self.run.finish()


def check_available(report_to: str) -> None:
    """A LikraError when the package `--report-to` needs is missing (checked on every process before any
    work, so that no data-parallel worker goes on alone)."""
    import importlib.util

    if report_to not in REPORT_TO:
        raise LikraError(f"--report-to {report_to!r}: choose one of {', '.join(REPORT_TO)}")
    package = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(report_to)
    try:
        missing = package is not None and importlib.util.find_spec(package) is None
    except ValueError:  # a module stand-in without a spec
        missing = False
    if missing:
        raise LikraError(f"--report-to {report_to} needs the {package} package: pip install {package}")


def make_tracker(
    report_to: str, log_dir: Callable[[str], Path], name: str, config: Mapping[str, Any] | None = None
) -> Tracker:
    """The tracker `--report-to` names; it logs into `log_dir(backend)` (the folder the run or curve folder
    keeps for that backend: `tensorboard`, `wandb`)."""
    if report_to == "none":
        return Tracker()
    if report_to == "tensorboard":
        return TensorBoardTracker(log_dir("tensorboard"))
    if report_to == "wandb":
        return WandbTracker(log_dir("wandb"), name, config or {})
    raise LikraError(f"--report-to {report_to!r}: choose one of {', '.join(REPORT_TO)}")

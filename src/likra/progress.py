"""One progress line for a whole curve (a study's, a `likra train` run's): what runs now, how far the run is, the
time spent and an estimate of the time left.

A curve is two kinds of work of different cost: optimizer steps (training the heads) and scoring passes
(one head's checkpoint over the evaluation set). The estimate times each kind from what this process has
done of it (pieces found finished in the folder are counted as done and not timed) and multiplies by what
is left of it; until a kind has been timed once, the estimate says "?".

On a terminal the line is redrawn in place, at every optimizer step and every scoring batch (the scoring
engine's `on_batch` hook), so it moves during a scoring pass too; in a log (stderr is not a terminal) one line
is printed per finished piece (a head trained, a checkpoint scored, and each tenth of a long head's training
or of a long scoring pass); `likra -q` / `--quiet` silences it. Only the main process of a data-parallel run
prints.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

LOG_EVERY_TENTH = 50  # heads of at least this many optimizer steps (passes of this many batches) log each tenth
MIN_REDRAW_SECONDS = 0.1  # a terminal line is redrawn at most this often during a scoring pass


def _seed(seed: int | None) -> str:
    """The seed's part of a line: none for a run of one seed (`likra train`)."""
    return "" if seed is None else f"seed {seed} · "


def duration(seconds: float | None) -> str:
    """1h02m, 4m05s, 37s; '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class CurveProgress:
    """Counts training steps and scoring passes against their totals and prints the overall line."""

    def __init__(
        self,
        enabled: bool = True,
        label: str = "likra curve",
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.enabled = enabled
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.clock = clock
        self.start = clock()
        self.steps_total = self.steps_done = 0
        self.passes_total = self.passes_done = 0
        self.timed_steps, self.step_seconds = 0, 0.0
        self.timed_passes, self.pass_seconds = 0, 0.0
        self.now = ""
        self._last_step_at: float | None = None
        self._head_steps = 0  # steps of the head in training counted by `training` so far
        self._pass_part = 0.0  # share of the scoring pass under way that is done
        self._drawn_at: float | None = None
        self._width = 0

    # -- plan -----------------------------------------------------------------------------------------
    def plan(self, steps: int, passes: int) -> None:
        """Add work to the totals: `steps` optimizer steps and `passes` scoring passes."""
        self.steps_total += steps
        self.passes_total += passes

    # -- events ---------------------------------------------------------------------------------------
    def training(self, seed: int | None, head: str, step: int, total: int) -> None:
        """One optimizer step of `head` finished (called by the Trainer callback)."""
        now = self.clock()
        if self._last_step_at is not None:
            self.timed_steps += 1
            self.step_seconds += now - self._last_step_at
        self._last_step_at = now
        self.steps_done += 1
        self._head_steps += 1
        self.now = f"{_seed(seed)}training {head} step {step}/{total}"
        if self.interactive:
            self._draw()
        elif total >= LOG_EVERY_TENTH and step < total and step % (total // 10) == 0:
            self._event()  # a long head in a log: a line at each tenth of its steps

    def train_started(self) -> None:
        self._last_step_at = self.clock()

    def trained(self, seed: int | None, head: str, steps: int, cached: bool) -> None:
        """Head `head` is trained (`cached`: found finished); steps not seen one by one (found finished, or
        done before a resume) count as done, untimed."""
        self.steps_done += max(steps - self._head_steps, 0)
        self._head_steps = 0
        self._last_step_at = None
        self.now = f"{_seed(seed)}{head} {'found trained' if cached else 'trained'} ({steps} steps)"
        self._event()

    def scoring(self, seed: int | None, head: str, k: int, n: int, batch: int, batches: int) -> None:
        """Batch `batch` of `batches` of the scoring pass of checkpoint k of n of `head` is done (called by the
        scoring engine's `on_batch` hook; `seed` None: the base model)."""
        self._pass_part = batch / batches if batches else 0.0
        where = "base model" if seed is None else f"seed {seed} · {head} checkpoint {k}/{n}"
        self.now = f"{where} scoring batch {batch}/{batches}"
        if self.interactive:
            now = self.clock()
            if batch == batches or self._drawn_at is None or now - self._drawn_at >= MIN_REDRAW_SECONDS:
                self._drawn_at = now
                self._draw()
        elif batches >= LOG_EVERY_TENTH and batch < batches and batch % (batches // 10) == 0:
            self._event()

    def scored(self, seed: int | None, head: str, k: int, n: int, seconds: float | None) -> None:
        """Checkpoint k (1-based) of n of `head` is scored; `seconds` is None when it was cached."""
        self._pass_part = 0.0
        self.passes_done += 1
        if seconds is not None:
            self.timed_passes += 1
            self.pass_seconds += seconds
        where = "base model" if seed is None else f"seed {seed} · {head} checkpoint {k}/{n}"
        self.now = f"{where} {'scored' if seconds is not None else 'found scored'}"
        self._event()

    # -- the line -------------------------------------------------------------------------------------
    def remaining(self) -> float | None:
        """Seconds left by the per-kind rates; None while a kind with work left has not been timed."""
        left = 0.0
        for todo, timed, seconds in (
            (self.steps_total - self.steps_done, self.timed_steps, self.step_seconds),
            (self.passes_total - self.passes_done - self._pass_part, self.timed_passes, self.pass_seconds),
        ):
            if todo > 0:
                if not timed:
                    return None
                left += todo * seconds / timed
        return left

    def fraction(self) -> float:
        """Share of the work done, each kind weighted by its measured cost (by count until timed)."""
        step_cost = self.step_seconds / self.timed_steps if self.timed_steps else 1.0
        pass_cost = self.pass_seconds / self.timed_passes if self.timed_passes else 1.0
        total = self.steps_total * step_cost + self.passes_total * pass_cost
        done = self.steps_done * step_cost + (self.passes_done + self._pass_part) * pass_cost
        return done / total if total else 0.0

    def line(self) -> str:
        elapsed = duration(self.clock() - self.start)
        if not self.steps_total:  # the training plan is not known yet (the base model is scored first)
            return f"{self.label}: {self.now} · {elapsed} elapsed"
        scored = f" · checkpoints scored {self.passes_done}/{self.passes_total}" if self.passes_total else ""
        return (
            f"{self.label}: {self.fraction():4.0%} · {self.now} · steps {self.steps_done}/{self.steps_total}{scored}"
            f" · {elapsed} elapsed, ~{duration(self.remaining())} left"
        )

    def _draw(self) -> None:
        if not self.enabled:
            return
        text = self.line()
        pad = max(self._width - len(text), 0)
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def _event(self) -> None:
        if not self.enabled:
            return
        if self.interactive:
            self._draw()
        else:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.interactive and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def trainer_callback(self, seed: int | None, head: str):
        """A Trainer callback that reports each optimizer step of `head` here."""
        from transformers import TrainerCallback

        progress = self

        class OverallProgress(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                progress.train_started()

            def on_step_end(self, args, state, control, **kwargs):
                progress.training(seed, head, state.global_step, state.max_steps)

        return OverallProgress()

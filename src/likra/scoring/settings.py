"""What every scoring command shares (`likra eval`, `likra curve`, the studies): which modes, the negative
weight, few-shot examples, the scorer's token budget and the statistics beside each accuracy."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from likra.config import NonNegativeInt, PositiveInt, option, settings
from likra.errors import LikraError
from likra.scoring.stats import DEFAULT_PAIRS, DEFAULT_RESAMPLES

DEFAULT_MODES = ("base", "sft", "likra", "negbase")
MAX_WEIGHT = 1e6  # as a mode's coefficients (`likra.scoring.modes.MAX_COEFFICIENT`): larger only overflows scores
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]


@settings
class ScoringSettings:
    """Modes and statistics of an evaluation."""

    modes: list[str] = option(
        default_factory=lambda: list(DEFAULT_MODES),
        help="modes, or expressions over head names such as positive-0.5*negative",
    )
    weight: Weight = option(1.0, help="negative-head weight w (|w| <= 1e6)")
    shots: NonNegativeInt = option(0, help="few-shot examples prepended to every evaluated question")
    fewshot_data: str | None = option(None, help="spec the shots are drawn from (default: the benchmark's train split)")
    batch_tokens: PositiveInt | None = option(
        None, help="token budget of one scoring forward pass (default: by device)"
    )
    pairs: list[str] = option(
        default_factory=lambda: list(DEFAULT_PAIRS),
        help="mode pairs a:b whose per-question difference is tested (when both are evaluated)",
    )
    bootstrap: PositiveInt = option(DEFAULT_RESAMPLES, help="paired bootstrap resamples (seeded)")


def check_shots(shots: int, fewshot_data: str | None, fewshot_seed: int | None = None, seed_default: int = 0) -> None:
    """One line for a few-shot setting given with --shots 0: it would be recorded (and name the scores) while no
    shot is drawn. `fewshot_seed` (eval's) counts as given where it is not `seed_default`."""
    if shots:
        return
    if fewshot_data is not None:
        raise LikraError(f"--fewshot-data {fewshot_data}: --shots 0 draws no shots (give --shots N)")
    if fewshot_seed is not None and fewshot_seed != seed_default:
        raise LikraError(f"--fewshot-seed {fewshot_seed}: --shots 0 draws no shots (give --shots N)")

"""What every scoring command shares (`likra eval`, `likra curve`, the studies): which modes, the negative
weight, few-shot examples, the scorer's token budget and the statistics beside each accuracy."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from likra.config import NonNegativeInt, PositiveInt, option, settings
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

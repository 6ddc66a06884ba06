"""Training objectives: the registry and the built-in `mle` and `dpo` (importing this package registers them)."""

from likra.objectives import dpo, mle  # noqa: F401  (registration)
from likra.objectives.registry import OBJECTIVES, Objective, TrainContext, get_objective, register_objective

__all__ = ["OBJECTIVES", "Objective", "TrainContext", "get_objective", "register_objective"]

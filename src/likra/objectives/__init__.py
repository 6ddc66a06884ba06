"""Training objectives: the registry and the built-in ones (importing this package registers them):
`mle` (the Likra heads), `dpo` (TRL's DPO, any loss type), `kto` (TRL's KTO, paired or negatives only) and
`unlikelihood` (Welleck et al., 2019). Plug-ins register more (`likra.plugins`)."""

# ruff: noqa: I001, F401
from likra.objectives import mle
from likra.objectives import dpo
from likra.objectives import kto
from likra.objectives import unlikelihood
from likra.objectives.registry import OBJECTIVES, Objective, TrainContext, get_objective, register_objective
from likra.objectives.settings import OptimizerSettings, TrainSettings

__all__ = [
    "OBJECTIVES",
    "Objective",
    "OptimizerSettings",
    "TrainContext",
    "TrainSettings",
    "get_objective",
    "register_objective",
]

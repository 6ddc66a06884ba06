"""The studies, one file each, registered on import (in this order, which is the report's)."""

# ruff: noqa: I001, F401
from likra.experiments.studies import negatives
from likra.experiments.studies import contamination
from likra.experiments.studies import weight
from likra.experiments.studies import dpo
from likra.experiments.studies import likelihood
from likra.experiments.studies import objectives
from likra.experiments.studies.base import STUDIES, Study, get_study, register_study, run_study

__all__ = ["STUDIES", "Study", "get_study", "register_study", "run_study"]

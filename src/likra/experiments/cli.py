"""Sub-commands of the experiments (learning curves, studies); each registers its parser here."""

from __future__ import annotations


def add_experiment_parsers(sub) -> None:
    """No experiment commands yet."""

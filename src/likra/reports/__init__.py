"""Outputs that travel: lm-eval-style result files, hub-ready exports with model cards."""

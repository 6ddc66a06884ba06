"""Plug likra into the stock lm-evaluation-harness (PyPI `lm-eval` 0.4.x): a model class that returns
Likra scores (never renormalised) and offline task configs for the bundled benchmarks."""

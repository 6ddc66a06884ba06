"""likra: measure and use what language models learn from negative examples (Hamdan & Yuret, 2025)."""

__version__ = "0.1.0"

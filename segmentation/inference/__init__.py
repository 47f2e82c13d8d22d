"""Network inference over whole stacks in overlapping windows."""

from __future__ import annotations

from segmentation.inference.sliding_window import (
    gaussian_importance,
    predict_probabilities,
    resolve_autocast,
    sliding_windows,
    window_starts,
)

__all__ = [
    "gaussian_importance",
    "predict_probabilities",
    "resolve_autocast",
    "sliding_windows",
    "window_starts",
]

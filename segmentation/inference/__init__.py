"""Network inference over whole stacks in overlapping windows."""

from __future__ import annotations

from segmentation.inference.sliding_window import (
    cpu_has_fast_bfloat16,
    crop_window,
    gaussian_importance,
    precision_name,
    predict_probabilities,
    resolve_autocast,
    sliding_windows,
    window_starts,
)
from segmentation.inference.tissue_mask import tissue_mask

__all__ = [
    "cpu_has_fast_bfloat16",
    "crop_window",
    "gaussian_importance",
    "precision_name",
    "predict_probabilities",
    "resolve_autocast",
    "sliding_windows",
    "tissue_mask",
    "window_starts",
]

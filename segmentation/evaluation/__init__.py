"""Evaluation of predicted label volumes against ground truth.

One-to-one instance matching (F1 / precision / recall against the IoU threshold), merge and
split counts, adapted Rand error, variation of information, per-size F1, and CSV / PNG
reports. Label ids may be arbitrary (non-contiguous) and background (0) is never a cell.
"""

from __future__ import annotations

from segmentation.evaluation.matching import (
    MatchResult,
    iou_matrix,
    match_instances,
    merges_and_splits,
)
from segmentation.evaluation.overlap import LabelOverlap, label_overlap
from segmentation.evaluation.partition import adapted_rand_error, variation_of_information
from segmentation.evaluation.report import plot_f1_vs_iou, write_evaluation_csv
from segmentation.evaluation.summary import (
    DEFAULT_IOU_THRESHOLDS,
    DEFAULT_SIZE_BINS,
    evaluate_segmentation,
)

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "DEFAULT_SIZE_BINS",
    "LabelOverlap",
    "MatchResult",
    "adapted_rand_error",
    "evaluate_segmentation",
    "iou_matrix",
    "label_overlap",
    "match_instances",
    "merges_and_splits",
    "plot_f1_vs_iou",
    "variation_of_information",
    "write_evaluation_csv",
]

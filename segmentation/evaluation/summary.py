"""All evaluation metrics of one predicted label volume, as a JSON-serialisable dict."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from segmentation.errors import InputError
from segmentation.evaluation.matching import (
    DEFAULT_OVERLAP_FRACTION,
    MatchResult,
    check_iou_threshold,
    match_from_iou,
    merges_and_splits_from_overlap,
    safe_ratio,
)
from segmentation.evaluation.overlap import LabelOverlap, label_overlap
from segmentation.evaluation.partition import (
    adapted_rand_error_from_overlap,
    variation_of_information_from_overlap,
)

logger = logging.getLogger(__name__)

#: IoU thresholds of the F1-vs-IoU curve.
DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = tuple(
    float(t) for t in np.round(np.arange(0.1, 1.0, 0.1), 2)
)
#: IoU threshold of the headline precision/recall/F1 and of the per-size F1.
HEADLINE_IOU_THRESHOLD = 0.5
#: Cell-size bin edges in voxels, fixed so that stacks are comparable: small distal germ
#: cells (about 25-45 px across, 4-8 slices: roughly 1e3-8e3 voxels), larger germ cells,
#: growing oocytes, and oocytes (100-250 px across over most of Z: >= 1e5 voxels).
DEFAULT_SIZE_BINS: tuple[float, ...] = (0, 5_000, 20_000, 100_000, math.inf)


def _check_size_bins(size_bins: Sequence[float]) -> np.ndarray:
    edges = np.asarray(size_bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.isnan(edges)) or np.any(np.diff(edges) <= 0):
        raise InputError(
            f"Size bins {list(size_bins)} are invalid; give at least two strictly increasing "
            "edges in voxels, e.g. 0 5000 20000 100000 inf."
        )
    return edges


def _check_voxel_size(voxel_size: Sequence[float] | None, ndim: int) -> tuple | None:
    if voxel_size is None:
        return None
    size = tuple(float(v) for v in voxel_size)
    if len(size) != ndim or not all(v > 0 and math.isfinite(v) for v in size):
        raise InputError(
            f"Voxel size {voxel_size} is invalid; give {ndim} positive numbers (z, y, x) in "
            "micrometres, or none."
        )
    return size


def _bin_index(sizes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of every size, ``edges[k] <= size < edges[k + 1]``; -1 outside all bins."""
    index = np.searchsorted(edges, sizes, side="right") - 1
    index[(index < 0) | (index >= edges.size - 1)] = -1
    return index


def _f1_by_size(
    overlap: LabelOverlap,
    match: MatchResult,
    edges: np.ndarray,
    voxel_volume: float | None,
) -> list[dict]:
    gt_bin = _bin_index(overlap.gt_sizes, edges)
    pred_bin = _bin_index(overlap.pred_sizes, edges)
    matched_gt = np.searchsorted(overlap.gt_ids, match.matched_pairs[:, 0])
    matched_pred = np.searchsorted(overlap.pred_ids, match.matched_pairs[:, 1])
    # A matched predicted cell belongs to the bin of its ground-truth cell.
    pred_bin[matched_pred] = gt_bin[matched_gt]
    tp_bin = gt_bin[matched_gt]

    rows = []
    for k in range(edges.size - 1):
        n_gt = int(np.count_nonzero(gt_bin == k))
        n_pred = int(np.count_nonzero(pred_bin == k))
        tp = int(np.count_nonzero(tp_bin == k))
        empty = n_gt == 0 and n_pred == 0
        low, high = float(edges[k]), float(edges[k + 1])
        row = {
            "min_voxels": low,
            "max_voxels": high if math.isfinite(high) else None,
            "n_gt": n_gt,
            "n_pred": n_pred,
            "tp": tp,
            "fp": n_pred - tp,
            "fn": n_gt - tp,
            "precision": None if empty else safe_ratio(tp, n_pred, both_empty=False),
            "recall": None if empty else safe_ratio(tp, n_gt, both_empty=False),
            "f1": None if empty else safe_ratio(2 * tp, n_gt + n_pred, both_empty=False),
        }
        if voxel_volume is not None:
            row["min_um3"] = low * voxel_volume
            row["max_um3"] = high * voxel_volume if math.isfinite(high) else None
        rows.append(row)
    return rows


def ignore_small_cells(
    gt: np.ndarray, pred: np.ndarray, min_gt_size: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Leave ground-truth cells under ``min_gt_size`` voxels out of an evaluation.

    Such cells (fragments of cells cut by a crop's border, typically) are set to background
    in ``gt``, and so is every predicted cell that lies mostly (over half its voxels) on
    them, so that it counts neither as a match nor as a false positive.

    Returns
    -------
    gt, pred : ndarray
        Copies with the ignored cells set to 0 (the inputs themselves when nothing is
        ignored).
    n_ignored_gt, n_ignored_pred : int
    """
    if min_gt_size < 0 or int(min_gt_size) != min_gt_size:
        raise InputError(
            f"min_gt_size {min_gt_size} must be a whole number of voxels, 0 or more"
        )
    if min_gt_size <= 1:
        return gt, pred, 0, 0
    ids, sizes = np.unique(gt[gt != 0], return_counts=True)
    small = ids[sizes < min_gt_size]
    if small.size == 0:
        return gt, pred, 0, 0
    on_small = np.isin(gt, small)
    pred_ids, pred_sizes = np.unique(pred[pred != 0], return_counts=True)
    overlap_ids, overlap_sizes = np.unique(pred[on_small & (pred != 0)], return_counts=True)
    sizes_of_overlapping = pred_sizes[np.searchsorted(pred_ids, overlap_ids)]
    dropped_pred = overlap_ids[overlap_sizes > 0.5 * sizes_of_overlapping]
    gt = np.where(on_small, 0, gt)
    if dropped_pred.size:
        pred = np.where(np.isin(pred, dropped_pred), 0, pred)
    return gt, pred, int(small.size), int(dropped_pred.size)


def evaluate_segmentation(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    size_bins: Sequence[float] | None = None,
    voxel_size: Sequence[float] | None = None,
    min_gt_size: int = 0,
) -> dict:
    """Evaluate a predicted label volume against its ground truth.

    Parameters
    ----------
    gt, pred : np.ndarray of int
        Label volumes (Z, Y, X) of the same shape, 0 = background. Ids need not be
        contiguous; relabelling either volume does not change any result.
    iou_thresholds : sequence of float
        Thresholds of the F1-vs-IoU curve, each in (0, 1]; a pair with ``IoU >= t`` is
        matchable (one-to-one Hungarian matching, see :mod:`segmentation.evaluation.matching`).
    size_bins : sequence of float, optional
        Increasing cell-size bin edges in voxels, intervals ``[edge_k, edge_k+1)``; cells
        outside all bins are left out of ``f1_by_size``. Default :data:`DEFAULT_SIZE_BINS`.
    voxel_size : (z, y, x) in micrometres, optional
        Only used to report the bin edges in µm³ as well.
    min_gt_size : int
        Ground-truth cells under this many voxels are left out, with the predicted cells
        that lie mostly on them (:func:`ignore_small_cells`); 0 keeps every cell.

    Returns
    -------
    dict
        JSON-serialisable (ints, floats, None, lists, dicts):

        ``n_gt``, ``n_pred``
            Cells (non-zero ids) in each volume.
        ``per_threshold``
            One dict per IoU threshold, in the given order: ``iou_threshold``, ``tp``,
            ``fp``, ``fn``, ``precision``, ``recall``, ``f1``.
        ``precision_iou50``, ``recall_iou50``, ``f1_iou50``
            The same at IoU 0.5 (computed even if 0.5 is not among the thresholds).
        ``merges``, ``splits``, ``merge_split_fraction``
            See :func:`~segmentation.evaluation.matching.merges_and_splits` (fraction 0.5).
        ``adapted_rand_error``, ``voi_split``, ``voi_merge``
            See :mod:`segmentation.evaluation.partition` (VOI in bits).
        ``f1_by_size``
            One dict per size bin: ``min_voxels``, ``max_voxels`` (None = unbounded),
            ``n_gt``, ``n_pred``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``
            at IoU 0.5 (None for a bin without cells; plus ``min_um3``, ``max_um3`` in µm³
            when a voxel size is given). A ground-truth
            cell falls in the bin of its size; a matched predicted cell in the bin of its
            ground-truth cell; an unmatched predicted cell in the bin of its own size.
        ``voxel_size``
            The voxel size as a list, or None.
        ``min_gt_size``, ``ignored_gt``, ``ignored_pred``
            The size limit and how many ground-truth and predicted cells it left out.
    """
    thresholds = [check_iou_threshold(t) for t in iou_thresholds]
    if not thresholds:
        raise InputError("No IoU thresholds given; pass at least one value in (0, 1].")
    edges = _check_size_bins(DEFAULT_SIZE_BINS if size_bins is None else size_bins)
    gt, pred, ignored_gt, ignored_pred = ignore_small_cells(gt, pred, min_gt_size)
    overlap = label_overlap(gt, pred)
    voxel = _check_voxel_size(voxel_size, np.ndim(gt))

    iou = overlap.iou()
    per_threshold = [
        match_from_iou(iou, overlap.gt_ids, overlap.pred_ids, t).counts() for t in thresholds
    ]
    headline = match_from_iou(iou, overlap.gt_ids, overlap.pred_ids, HEADLINE_IOU_THRESHOLD)
    merges, splits = merges_and_splits_from_overlap(overlap, DEFAULT_OVERLAP_FRACTION)
    voi_split, voi_merge = variation_of_information_from_overlap(overlap)
    voxel_volume = float(np.prod(voxel)) if voxel is not None else None
    logger.debug(
        "evaluated %d gt / %d predicted cells: F1@0.5 = %.3f",
        overlap.n_gt,
        overlap.n_pred,
        headline.f1,
    )
    return {
        "n_gt": overlap.n_gt,
        "n_pred": overlap.n_pred,
        "per_threshold": per_threshold,
        "precision_iou50": headline.precision,
        "recall_iou50": headline.recall,
        "f1_iou50": headline.f1,
        "merges": merges,
        "splits": splits,
        "merge_split_fraction": DEFAULT_OVERLAP_FRACTION,
        "adapted_rand_error": adapted_rand_error_from_overlap(overlap),
        "voi_split": voi_split,
        "voi_merge": voi_merge,
        "f1_by_size": _f1_by_size(overlap, headline, edges, voxel_volume),
        "voxel_size": list(voxel) if voxel is not None else None,
        "min_gt_size": int(min_gt_size),
        "ignored_gt": ignored_gt,
        "ignored_pred": ignored_pred,
    }

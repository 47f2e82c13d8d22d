"""One-to-one matching of predicted to ground-truth cells, and merge/split counts.

Conventions
-----------
* Background (label 0) is never a cell and is never matched.
* A (gt, pred) pair may be matched only if ``IoU >= iou_threshold`` (inclusive: two halves of
  a cell, IoU exactly 0.5, are matchable at threshold 0.5).
* Matching is one-to-one (Hungarian, ``scipy.optimize.linear_sum_assignment``). It maximises
  the number of matched pairs and, among matchings with that many pairs, the summed IoU. A
  predicted cell covering two ground-truth cells can therefore be a true positive for at most
  one of them (the reference counted it for both below IoU 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from segmentation.errors import InputError
from segmentation.evaluation.overlap import LabelOverlap, label_overlap

#: Fraction used by :func:`merges_and_splits` to decide that one cell substantially
#: overlaps another.
DEFAULT_OVERLAP_FRACTION = 0.5


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Outcome of matching predicted cells to ground-truth cells at one IoU threshold.

    Attributes
    ----------
    iou_threshold : float
        Smallest IoU of a matched pair.
    n_gt, n_pred : int
        Number of ground-truth and predicted cells (background excluded).
    tp, fp, fn : int
        Matched pairs, unmatched predicted cells, unmatched ground-truth cells.
    precision, recall, f1 : float
        ``tp / n_pred``, ``tp / n_gt`` and ``2 tp / (n_gt + n_pred)``. When a denominator is
        0 the value is 1.0 if both volumes are empty (nothing to find, nothing wrongly found)
        and 0.0 otherwise.
    matched_pairs : np.ndarray, shape (tp, 2)
        ``(gt id, predicted id)`` of every matched pair.
    matched_iou : np.ndarray, shape (tp,)
        IoU of every matched pair.
    """

    iou_threshold: float
    n_gt: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    matched_pairs: np.ndarray
    matched_iou: np.ndarray

    def counts(self) -> dict:
        """The scalar fields as a JSON-serialisable dict (matched pairs left out)."""
        return {
            "iou_threshold": self.iou_threshold,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def safe_ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    """``numerator / denominator``; 1.0 or 0.0 for an empty denominator (see MatchResult)."""
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def check_iou_threshold(iou_threshold: float) -> float:
    """Return the threshold as float; raise InputError unless ``0 < iou_threshold <= 1``."""
    threshold = float(iou_threshold)
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"IoU threshold {iou_threshold} is out of range; use a value in (0, 1].")
    return threshold


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection over union of every ground-truth cell with every predicted cell.

    Parameters
    ----------
    gt, pred : np.ndarray of int
        Label volumes of the same shape, 0 = background. Ids need not be contiguous.

    Returns
    -------
    iou : np.ndarray of float64, shape (n_gt, n_pred)
        ``iou[i, j]`` is the IoU of cell ``gt_ids[i]`` with cell ``pred_ids[j]``.
    gt_ids, pred_ids : np.ndarray
        Sorted non-zero ids of the rows and the columns.
    """
    overlap = label_overlap(gt, pred)
    return overlap.iou(), overlap.gt_ids, overlap.pred_ids


def match_from_iou(
    iou: np.ndarray, gt_ids: np.ndarray, pred_ids: np.ndarray, iou_threshold: float
) -> MatchResult:
    """One-to-one matching on a precomputed IoU matrix (see :func:`match_instances`)."""
    threshold = check_iou_threshold(iou_threshold)
    n_gt, n_pred = iou.shape
    matchable = iou >= threshold
    rows = np.flatnonzero(matchable.any(axis=1))
    cols = np.flatnonzero(matchable.any(axis=0))
    candidate_iou = iou[np.ix_(rows, cols)]
    candidate_ok = matchable[np.ix_(rows, cols)]
    # One point per matched pair, plus an IoU bonus whose total over any matching is < 1,
    # so the assignment never gives up a match for a higher summed IoU.
    bonus_scale = 2.0 * max(min(rows.size, cols.size), 1)
    weights = candidate_ok + np.where(candidate_ok, candidate_iou, 0.0) / bonus_scale
    row_index, col_index = linear_sum_assignment(weights, maximize=True)
    keep = candidate_ok[row_index, col_index]
    gt_index = rows[row_index[keep]]
    pred_index = cols[col_index[keep]]

    tp = int(gt_index.size)
    both_empty = n_gt == 0 and n_pred == 0
    return MatchResult(
        iou_threshold=threshold,
        n_gt=n_gt,
        n_pred=n_pred,
        tp=tp,
        fp=n_pred - tp,
        fn=n_gt - tp,
        precision=safe_ratio(tp, n_pred, both_empty),
        recall=safe_ratio(tp, n_gt, both_empty),
        f1=safe_ratio(2 * tp, n_gt + n_pred, both_empty),
        matched_pairs=np.stack([gt_ids[gt_index], pred_ids[pred_index]], axis=1),
        matched_iou=iou[gt_index, pred_index],
    )


def match_instances(gt: np.ndarray, pred: np.ndarray, iou_threshold: float) -> MatchResult:
    """Match predicted cells one-to-one to ground-truth cells and count TP, FP and FN.

    Parameters
    ----------
    gt, pred : np.ndarray of int
        Label volumes of the same shape, 0 = background. Ids need not be contiguous.
    iou_threshold : float
        A pair is matchable only if its IoU is ``>= iou_threshold``; in (0, 1].

    Returns
    -------
    MatchResult
        Counts, precision, recall, F1 and the matched pairs. The matching maximises the
        number of matches, then their summed IoU (Hungarian algorithm).
    """
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    return match_from_iou(iou, gt_ids, pred_ids, iou_threshold)


def merges_and_splits_from_overlap(
    overlap: LabelOverlap, overlap_fraction: float = DEFAULT_OVERLAP_FRACTION
) -> tuple[int, int]:
    """Merge and split counts from a precomputed overlap table (see :func:`merges_and_splits`)."""
    fraction = float(overlap_fraction)
    if not 0.0 < fraction <= 1.0:
        raise InputError(
            f"Overlap fraction {overlap_fraction} is out of range; use a value in (0, 1]."
        )
    gt_index, pred_index, counts = overlap.foreground_pairs()
    covers_gt = counts >= fraction * overlap.gt_sizes[gt_index]
    inside_gt = counts >= fraction * overlap.pred_sizes[pred_index]
    gt_cells_covered = np.bincount(pred_index[covers_gt], minlength=overlap.n_pred)
    pred_cells_inside = np.bincount(gt_index[inside_gt], minlength=overlap.n_gt)
    return int(np.count_nonzero(gt_cells_covered >= 2)), int(
        np.count_nonzero(pred_cells_inside >= 2)
    )


def merges_and_splits(
    gt: np.ndarray, pred: np.ndarray, overlap_fraction: float = DEFAULT_OVERLAP_FRACTION
) -> tuple[int, int]:
    """Count predicted cells that merge ground-truth cells, and ground-truth cells that are split.

    With ``f = overlap_fraction``:

    * a **merge** is a predicted cell ``p`` that covers at least two ground-truth cells, where
      ``p`` covers ``g`` if ``|g ∩ p| >= f |g|`` (at least a fraction f of g lies in p);
    * a **split** is a ground-truth cell ``g`` that contains at least two predicted cells,
      where ``g`` contains ``p`` if ``|g ∩ p| >= f |p|`` (at least a fraction f of p lies
      in g).

    The two definitions mirror each other: ``merges_and_splits(gt, pred) == (s, m)`` exactly
    when ``merges_and_splits(pred, gt) == (m, s)``. Unlike IoU, the fractions do not shrink
    because the merged (or split) cell is large, so a merge of two ground-truth cells counts
    however many cells it merges. Any predicted fragment counts, however small: filter tiny
    objects before evaluating if they are not cells.

    Parameters
    ----------
    gt, pred : np.ndarray of int
        Label volumes of the same shape, 0 = background.
    overlap_fraction : float
        The fraction ``f`` above, in (0, 1]; inclusive (``>=``).

    Returns
    -------
    merges, splits : int
        Number of merging predicted cells and number of split ground-truth cells.
    """
    return merges_and_splits_from_overlap(label_overlap(gt, pred), overlap_fraction)

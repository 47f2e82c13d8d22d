"""Sparse overlap (contingency) table of a ground-truth and a predicted label volume.

All evaluation metrics are computed from this table. It is built from the voxel-wise pairs
``(gt label, predicted label)`` with one ``np.unique`` pass, so label ids need not be
contiguous or small (the reference's histogram-based IoU silently assumed ids ``0..N``) and
no dense table over all ids is ever allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segmentation.errors import InputError

_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True, eq=False)
class LabelOverlap:
    """Label sizes and pairwise overlaps of a ground-truth and a predicted label volume.

    Attributes
    ----------
    gt_ids, pred_ids : np.ndarray
        Sorted non-zero label ids present in the ground truth and in the prediction.
    gt_sizes, pred_sizes : np.ndarray of int64
        Voxel count of each id in ``gt_ids`` / ``pred_ids``.
    pair_gt, pair_pred, pair_counts : np.ndarray
        One entry per (gt id, predicted id) that share at least one voxel, over the voxels
        where the ground truth is not background. ``pair_pred`` may be 0 (ground-truth
        voxels that the prediction left as background); ``pair_gt`` is never 0.
    """

    gt_ids: np.ndarray
    gt_sizes: np.ndarray
    pred_ids: np.ndarray
    pred_sizes: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    pair_counts: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    def foreground_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Overlaps between non-background labels as indices into ``gt_ids``/``pred_ids``.

        Returns
        -------
        gt_index, pred_index, counts : np.ndarray
            Row index into ``gt_ids``, column index into ``pred_ids`` and shared voxel count
            of every overlapping pair of cells.
        """
        keep = self.pair_pred != 0
        gt_index = np.searchsorted(self.gt_ids, self.pair_gt[keep])
        pred_index = np.searchsorted(self.pred_ids, self.pair_pred[keep])
        return gt_index, pred_index, self.pair_counts[keep]

    def iou(self) -> np.ndarray:
        """Intersection over union of every (gt cell, predicted cell), shape (n_gt, n_pred)."""
        gt_index, pred_index, counts = self.foreground_pairs()
        union = self.gt_sizes[gt_index] + self.pred_sizes[pred_index] - counts
        iou = np.zeros((self.n_gt, self.n_pred), dtype=np.float64)
        iou[gt_index, pred_index] = counts / union
        return iou


def check_label_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ground-truth and a predicted label volume and return them as arrays.

    Raises
    ------
    InputError
        If the shapes differ, a volume is not of integer (or bool) type, or holds negative ids.
    """
    arrays = []
    for name, labels in (("ground truth", gt), ("prediction", pred)):
        labels = np.asarray(labels)
        if labels.dtype == bool:
            labels = labels.astype(np.uint8)
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(
                f"The {name} label volume has dtype {labels.dtype}; pass an integer label "
                "image (0 = background, one id per cell)."
            )
        if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
            raise InputError(
                f"The {name} label volume holds negative ids; relabel it with ids >= 0 "
                "(0 = background)."
            )
        arrays.append(labels)
    if arrays[0].shape != arrays[1].shape:
        raise InputError(
            f"Ground truth shape {arrays[0].shape} differs from prediction shape "
            f"{arrays[1].shape}; evaluate a prediction of the same stack as its ground truth."
        )
    return arrays[0], arrays[1]


def label_overlap(gt: np.ndarray, pred: np.ndarray) -> LabelOverlap:
    """Build the sparse overlap table of two label volumes.

    Parameters
    ----------
    gt, pred : np.ndarray of int
        Ground-truth and predicted label volumes of the same shape; 0 is background. Ids may
        be arbitrary non-negative integers (gaps and huge ids are fine).

    Returns
    -------
    LabelOverlap
        Sizes of all cells and the voxel counts shared by every overlapping pair.
    """
    gt, pred = check_label_pair(gt, pred)
    gt_flat = gt.reshape(-1)
    pred_flat = pred.reshape(-1)
    gt_all, gt_all_sizes = np.unique(gt_flat, return_counts=True)
    pred_all, pred_all_sizes = np.unique(pred_flat, return_counts=True)

    gt_max = int(gt_all[-1]) if gt_all.size else 0
    pred_max = int(pred_all[-1]) if pred_all.size else 0
    # Pair small ids directly in one int64 key; pair the ranks of huge ids, which always fits.
    use_ranks = (gt_max + 1) * (pred_max + 1) - 1 > _INT64_MAX
    if use_ranks:
        key_base = pred_all.size
        keys = np.searchsorted(gt_all, gt_flat).astype(np.int64)
        keys *= key_base
        keys += np.searchsorted(pred_all, pred_flat)
    else:
        key_base = pred_max + 1
        keys = gt_flat.astype(np.int64)
        keys *= key_base
        keys += pred_flat.astype(np.int64, copy=False)
    keys, pair_counts = np.unique(keys, return_counts=True)
    pair_gt, pair_pred = np.divmod(keys, key_base)
    if use_ranks:
        pair_gt = gt_all[pair_gt]
        pair_pred = pred_all[pair_pred]

    in_gt_foreground = pair_gt != 0
    gt_foreground = gt_all != 0
    pred_foreground = pred_all != 0
    return LabelOverlap(
        gt_ids=gt_all[gt_foreground],
        gt_sizes=gt_all_sizes[gt_foreground].astype(np.int64),
        pred_ids=pred_all[pred_foreground],
        pred_sizes=pred_all_sizes[pred_foreground].astype(np.int64),
        pair_gt=pair_gt[in_gt_foreground],
        pair_pred=pair_pred[in_gt_foreground],
        pair_counts=pair_counts[in_gt_foreground].astype(np.int64),
    )

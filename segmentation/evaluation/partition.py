"""Voxel-pair metrics of a segmentation: adapted Rand error and variation of information.

Both compare the two label volumes as partitions of the ground-truth foreground: voxels that
are background (0) in the ground truth are ignored, while predicted background inside a
ground-truth cell counts as one more predicted segment (so missed foreground is penalised as
if it were merged). This is the convention of ``skimage.metrics`` with ``ignore_labels=(0,)``
on the ground truth. The reference instead compared ground-truth *edges* with predicted
foreground, which measures nothing useful.
"""

from __future__ import annotations

import numpy as np

from segmentation.evaluation.overlap import LabelOverlap, label_overlap


def _segment_sizes(overlap: LabelOverlap) -> tuple[np.ndarray, np.ndarray]:
    """Sizes of the gt and of the predicted segments inside the ground-truth foreground."""
    _, pred_inverse = np.unique(overlap.pair_pred, return_inverse=True)
    pred_sizes = np.bincount(pred_inverse.reshape(-1), weights=overlap.pair_counts)
    return overlap.gt_sizes, pred_sizes.astype(np.int64)


def adapted_rand_error_from_overlap(overlap: LabelOverlap) -> float:
    """Adapted Rand error from a precomputed overlap table (see :func:`adapted_rand_error`)."""
    gt_sizes, pred_sizes = _segment_sizes(overlap)
    n_voxels = int(overlap.pair_counts.sum())
    same_in_both = int(overlap.pair_counts @ overlap.pair_counts) - n_voxels
    same_in_gt = int(gt_sizes @ gt_sizes) - n_voxels
    same_in_pred = int(pred_sizes @ pred_sizes) - n_voxels
    if same_in_gt + same_in_pred == 0:
        return 0.0
    return 1.0 - 2.0 * same_in_both / (same_in_gt + same_in_pred)


def adapted_rand_error(gt: np.ndarray, pred: np.ndarray) -> float:
    """Adapted Rand error (SNEMI3D) of a predicted label volume against the ground truth.

    ``1 - F``, where F is the harmonic mean of Rand precision and recall over voxel pairs:
    ``F = 2 Σ n_ij² / (Σ a_i² + Σ b_j²)`` with ``n_ij`` the voxels in gt cell i and predicted
    segment j, ``a_i`` and ``b_j`` the segment sizes, each sum counting ordered pairs of
    distinct voxels (``Σ x² - N``). Equal to ``skimage.metrics.adapted_rand_error(gt,
    pred)[0]`` but computed from the sparse overlap table, so ids may be arbitrary.

    Parameters
    ----------
    gt, pred : np.ndarray of int
        Label volumes of the same shape, 0 = background. Ground-truth background voxels are
        ignored; predicted background inside ground-truth cells is one segment.

    Returns
    -------
    float
        0 for a perfect segmentation, towards 1 for a bad one. 0.0 when no two ground-truth
        foreground voxels exist (nothing to compare).
    """
    return adapted_rand_error_from_overlap(label_overlap(gt, pred))


def _entropy(counts: np.ndarray, n_voxels: int) -> float:
    # Sorted, so that the floating-point sum does not depend on the label ids.
    probabilities = np.sort(counts[counts > 0]) / n_voxels
    return float(-(probabilities * np.log2(probabilities)).sum())


def variation_of_information_from_overlap(overlap: LabelOverlap) -> tuple[float, float]:
    """Split and merge VOI from a precomputed overlap table."""
    n_voxels = int(overlap.pair_counts.sum())
    if n_voxels == 0:
        return 0.0, 0.0
    gt_sizes, pred_sizes = _segment_sizes(overlap)
    joint = _entropy(overlap.pair_counts, n_voxels)
    split = joint - _entropy(gt_sizes, n_voxels)
    merge = joint - _entropy(pred_sizes, n_voxels)
    return max(split, 0.0), max(merge, 0.0)


def variation_of_information(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Variation of information, in bits, split into its over- and under-segmentation parts.

    Parameters
    ----------
    gt, pred : np.ndarray of int
        Label volumes of the same shape, 0 = background (same voxel convention as
        :func:`adapted_rand_error`).

    Returns
    -------
    voi_split : float
        ``H(pred | gt)``: information needed to recover the prediction from the ground truth;
        grows when ground-truth cells are cut into several predicted segments.
    voi_merge : float
        ``H(gt | pred)``: grows when predicted segments merge several ground-truth cells.
        The total VOI is their sum. Same order and base as
        ``skimage.metrics.variation_of_information(gt, pred, ignore_labels=[0])``.
    """
    return variation_of_information_from_overlap(label_overlap(gt, pred))

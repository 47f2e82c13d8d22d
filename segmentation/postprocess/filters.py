"""Remove labels by mean foreground probability or by size (removed labels become 0)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segmentation.errors import InputError
from segmentation.parameters import (
    DEFAULT_FOREGROUND_THRESHOLD,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be an integer array, got {labels.dtype}")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise InputError("labels must not contain negative values")
    return labels


def _remove(labels: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Set every label whose entry in the per-label mask ``removed`` is True to 0."""
    removed[0] = False
    if not removed.any():
        return labels.copy()
    return np.where(removed[labels], labels.dtype.type(0), labels)


def remove_background(
    labels: np.ndarray,
    foreground_probability: np.ndarray,
    threshold: float = DEFAULT_FOREGROUND_THRESHOLD,
) -> np.ndarray:
    """Set labels whose mean foreground probability is below ``threshold`` to 0.

    Parameters
    ----------
    labels : ndarray of int
        Label volume, 0 = background.
    foreground_probability : ndarray of float, same shape
        Probability that a voxel belongs to a cell.
    threshold : float
        Smallest mean foreground probability a label must have to be kept.

    Returns
    -------
    ndarray
        Labels (same dtype) with background regions set to 0.
    """
    labels = _check_labels(labels)
    foreground = np.asarray(foreground_probability)
    if foreground.shape != labels.shape:
        raise InputError(
            f"foreground_probability shape {foreground.shape} differs from labels shape "
            f"{labels.shape}"
        )
    flat = labels.ravel()
    sizes = np.bincount(flat)
    totals = np.bincount(flat, weights=foreground.ravel(), minlength=sizes.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals / sizes
    return _remove(labels, (sizes > 0) & (means < threshold))


def _volume_to_voxels(
    volume_um3: float | None, voxel_size: Sequence[float] | None, name: str
) -> float | None:
    if volume_um3 is None:
        return None
    if voxel_size is None:
        raise InputError(
            f"{name} is in µm³ but the stack records no voxel size: save it with its voxel "
            "size (e.g. ImageJ Image > Properties) or give the size limit in voxels"
        )
    spacing = np.asarray(voxel_size, dtype=np.float64)
    if spacing.ndim != 1 or not np.all(spacing > 0):
        raise InputError(f"voxel_size must be positive numbers (z, y, x), got {voxel_size!r}")
    return float(volume_um3) / float(np.prod(spacing))


def filter_by_size(
    labels: np.ndarray,
    *,
    min_size: int | None = DEFAULT_MIN_SIZE,
    max_size: int | None = DEFAULT_MAX_SIZE,
    voxel_size: Sequence[float] | None = None,
    min_volume_um3: float | None = None,
    max_volume_um3: float | None = None,
) -> np.ndarray:
    """Set labels outside the size limits to 0.

    A label is kept when it has at least ``min_size`` and at most ``max_size`` voxels and
    its volume (voxel count times the voxel volume) is within
    ``[min_volume_um3, max_volume_um3]``. Each limit is ignored when None.

    Parameters
    ----------
    labels : ndarray of int
        Label volume, 0 = background.
    min_size, max_size : int, optional
        Limits in voxels.
    voxel_size : sequence of float, optional
        Voxel size (z, y, x) in µm; required by the µm³ limits.
    min_volume_um3, max_volume_um3 : float, optional
        Limits in cubic micrometres.

    Returns
    -------
    ndarray
        Labels (same dtype) with the removed cells set to 0.
    """
    labels = _check_labels(labels)
    sizes = np.bincount(labels.ravel()).astype(np.float64)
    removed = sizes == 0
    lower = [min_size, _volume_to_voxels(min_volume_um3, voxel_size, "min_volume_um3")]
    upper = [max_size, _volume_to_voxels(max_volume_um3, voxel_size, "max_volume_um3")]
    for limit in lower:
        if limit is not None:
            removed |= sizes < limit
    for limit in upper:
        if limit is not None:
            removed |= sizes > limit
    return _remove(labels, removed)

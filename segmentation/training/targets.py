"""Training targets built from instance labels: cell boundaries, foreground, and their weights."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from segmentation.errors import InputError

#: Boundary target modes of :func:`labels_to_boundaries`.
BOUNDARY_MODES = ("thick", "inner", "outer", "anisotropic", "anisotropic-symmetric")


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"labels must be a (Z, Y, X) volume, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise InputError(f"labels must have an integer dtype, got {labels.dtype}")
    return labels


def labels_to_boundaries(
    labels: np.ndarray, *, connectivity: int = 2, mode: str = "thick"
) -> np.ndarray:
    """Boundary mask of an instance label volume.

    Same semantics as :func:`skimage.segmentation.find_boundaries`: with ``mode="thick"`` a
    voxel is boundary when any neighbour (in the ``connectivity`` neighbourhood: 1 = 6,
    2 = 18, 3 = 26 neighbours) has a different label, so both sides of every cell–cell
    face and of every cell–background face are marked.

    ``mode="anisotropic"`` is meant for stacks whose Z step is several times the XY pixel
    size: label changes within a plane mark both sides (4-neighbourhood, 2 pixels wide), but
    a change between two planes marks only the lower plane, because one plane is already
    several pixels thick. ``connectivity`` is ignored in this mode. With "thick" boundaries,
    the faces between cells stacked in Z cover a large part of small cells (about 40 % of the
    foreground of a typical phantom, against about 12 % here).

    ``mode="anisotropic-symmetric"`` marks in-plane changes as "anisotropic" does, and a
    change between two planes with 0.5 on both planes: the mean of marking the lower and
    the upper plane, so the target no longer depends on the direction of the Z axis. A
    network trained on it leaves thin caps of cells cut by a stack's first or last plane
    below the watershed threshold (with "anisotropic" targets a one-plane cap on the first
    plane is all boundary).

    Parameters
    ----------
    labels : (Z, Y, X) integer array
        Instance labels, 0 = background.
    connectivity : int
        1, 2 or 3.
    mode : str
        ``"thick"``, ``"inner"`` or ``"outer"`` (see ``find_boundaries``), or
        ``"anisotropic"`` or ``"anisotropic-symmetric"``.

    Returns
    -------
    (Z, Y, X) float32 array of 0 and 1 (and 0.5 with ``"anisotropic-symmetric"``).
    """
    labels = _check_labels(labels)
    if connectivity not in (1, 2, 3):
        raise InputError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    if mode not in BOUNDARY_MODES:
        raise InputError(f"boundary mode must be one of {', '.join(BOUNDARY_MODES)}, got {mode!r}")
    if mode == "anisotropic":
        return _anisotropic_boundaries(labels).astype(np.float32)
    if mode == "anisotropic-symmetric":
        lower = _anisotropic_boundaries(labels).astype(np.float32)
        upper = _anisotropic_boundaries(labels[::-1])[::-1].astype(np.float32)
        return 0.5 * (lower + upper)
    boundaries = find_boundaries(labels, connectivity=connectivity, mode=mode, background=0)
    return boundaries.astype(np.float32)


def _anisotropic_boundaries(labels: np.ndarray) -> np.ndarray:
    """Both sides of in-plane label changes; the lower side of changes between planes."""
    boundaries = np.zeros(labels.shape, dtype=bool)
    for axis in range(1, labels.ndim):
        changed = np.diff(labels, axis=axis) != 0
        before = [slice(None)] * labels.ndim
        after = [slice(None)] * labels.ndim
        before[axis] = slice(None, -1)
        after[axis] = slice(1, None)
        boundaries[tuple(before)] |= changed
        boundaries[tuple(after)] |= changed
    if labels.ndim == 3:
        boundaries[:-1] |= labels[1:] != labels[:-1]
    return boundaries


def labels_to_foreground(labels: np.ndarray) -> np.ndarray:
    """Foreground mask (any cell) of an instance label volume, float32 0/1."""
    labels = _check_labels(labels)
    return (labels != 0).astype(np.float32)


def make_targets(labels: np.ndarray, *, connectivity: int = 2, mode: str = "thick") -> np.ndarray:
    """Network targets (2, Z, Y, X) float32: channel 0 boundaries, channel 1 foreground."""
    boundaries = labels_to_boundaries(labels, connectivity=connectivity, mode=mode)
    return np.stack([boundaries, labels_to_foreground(labels)])


def edge_weights(
    boundary: np.ndarray,
    weight_map: np.ndarray,
    *,
    edge_multiplier: float = 2.0,
    map_multiplier: float = 1.0,
    invert: bool = False,
    background_weight: float = 1.0,
) -> np.ndarray:
    """Voxel weights for the boundary channel.

    On boundary voxels the weight is ``edge_multiplier + map_multiplier * weight_map``
    (the reference's ``EdgeMaskWmap``). With ``invert=True`` the boundary weights are
    mirrored within their own range (``max + min - w``), so crowded cell–cell faces get the
    lowest and isolated cell–background faces the highest weight.

    Unlike the reference, which gave every non-boundary voxel weight 0 (so false-positive
    boundaries inside cells and on background were never penalised), non-boundary voxels get
    ``background_weight``.

    Parameters
    ----------
    boundary : array
        Boundary mask (non-zero = boundary).
    weight_map : array
        Per-voxel weights (e.g. :func:`segmentation.training.weight_maps.unet_weight_map`),
        same shape as ``boundary``.
    edge_multiplier, map_multiplier : float
        Constant and weight-map factors on boundary voxels.
    invert : bool
        Mirror boundary weights within their range.
    background_weight : float
        Weight of non-boundary voxels (must be > 0 for false positives to be penalised).

    Returns
    -------
    float32 array, same shape as ``boundary``.
    """
    boundary = np.asarray(boundary) != 0
    weight_map = np.asarray(weight_map, dtype=np.float32)
    if boundary.shape != weight_map.shape:
        raise InputError(
            f"boundary {boundary.shape} and weight_map {weight_map.shape} differ in shape"
        )
    if background_weight < 0:
        raise InputError(f"background_weight must be >= 0, got {background_weight}")
    edge_values = np.float32(edge_multiplier) + np.float32(map_multiplier) * weight_map[boundary]
    if invert and edge_values.size:
        edge_values = edge_values.max() + edge_values.min() - edge_values
    weights = np.full(boundary.shape, background_weight, dtype=np.float32)
    weights[boundary] = edge_values
    return weights

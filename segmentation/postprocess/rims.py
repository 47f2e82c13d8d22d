"""Give cells back the foreground rims that background super-pixels took from them."""

from __future__ import annotations

import logging

import bioimage_cpp.distance
import bioimage_cpp.segmentation
import numpy as np
from scipy import ndimage as ndi

from segmentation.errors import InputError
from segmentation.parameters import DEFAULT_FOREGROUND_THRESHOLD, DEFAULT_RIM_DISTANCE
from segmentation.postprocess.filters import _check_labels
from segmentation.watershed.distance_transform import relative_spacing

logger = logging.getLogger(__name__)


def grow_into_foreground(
    labels: np.ndarray,
    boundary_probability: np.ndarray,
    foreground_probability: np.ndarray,
    max_distance: float = DEFAULT_RIM_DISTANCE,
    foreground_threshold: float = DEFAULT_FOREGROUND_THRESHOLD,
    voxel_size: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Grow cells into unlabelled foreground voxels within ``max_distance`` of them.

    A super-pixel that straddles a cell's outer edge and the space outside the tissue is
    mostly background, so the whole super-pixel, cell rim included, is dropped. This puts
    back every unlabelled voxel whose foreground probability exceeds
    ``foreground_threshold``, that lies at most ``max_distance`` from a cell and that is
    connected to it through such voxels; a watershed on the boundary probability splits a
    rim between touching cells at their membrane. The distance limit keeps whole missed
    cells from being glued to a neighbour.

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X)
        Cell labels, 0 = background.
    boundary_probability, foreground_probability : ndarray of float, shape (Z, Y, X)
        Network outputs.
    max_distance : float
        Largest distance from a cell, in X pixels (Z scaled by the voxel size's anisotropy).
        0 returns ``labels`` unchanged.
    foreground_threshold : float
        Foreground probability above which an unlabelled voxel may be taken.
    voxel_size : tuple of float, optional
        (z, y, x) in µm; without it, voxels are treated as isotropic.

    Returns
    -------
    ndarray
        Labels (same dtype) with the rims filled in.
    """
    labels = _check_labels(labels)
    if labels.ndim != 3:
        raise InputError(f"labels must be (Z, Y, X), got shape {labels.shape}")
    for name, array in (
        ("boundary_probability", boundary_probability),
        ("foreground_probability", foreground_probability),
    ):
        if np.shape(array) != labels.shape:
            raise InputError(
                f"{name} shape {np.shape(array)} differs from labels shape {labels.shape}"
            )
    if max_distance < 0:
        raise InputError(f"max_distance must be >= 0, got {max_distance}")
    unlabelled = labels == 0
    if max_distance == 0 or unlabelled.all() or not unlabelled.any():
        return labels.copy()
    candidates = unlabelled & (np.asarray(foreground_probability) > foreground_threshold)
    if not candidates.any():
        return labels.copy()
    # distance of every unlabelled voxel to the nearest cell voxel
    anisotropy = relative_spacing(voxel_size, 3)
    # bioimage-cpp's distance transform on every core: 0.48 s against edt's 1.15 s (2 threads)
    distance = bioimage_cpp.distance.distance_transform(
        unlabelled, sampling=anisotropy, number_of_threads=0
    )
    candidates &= distance <= max_distance
    del distance
    if not candidates.any():
        return labels.copy()
    # flood only the candidates, from the cell voxels that touch them
    seeds = ndi.binary_dilation(candidates, structure=ndi.generate_binary_structure(3, 1))
    seeds &= ~unlabelled
    flooded = candidates | seeds
    box = ndi.find_objects(flooded.astype(np.uint8))[0]
    # bioimage-cpp's seeded watershed: 8x faster than scikit-image's here; voxels it
    # cannot reach (foreground not connected to a cell) stay 0
    grown = bioimage_cpp.segmentation.watershed(
        np.asarray(boundary_probability, dtype=np.float32)[box],
        np.where(seeds[box], labels[box], 0).astype(np.uint32),
        mask=flooded[box],
    )
    result = labels.copy()
    inside = candidates[box]
    taken = grown[inside]
    result[box][inside] = taken.astype(labels.dtype, copy=False)
    logger.debug("grew cells by %d rim voxels", int(np.count_nonzero(taken)))
    return result

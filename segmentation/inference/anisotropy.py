"""Show the network stacks at the anisotropy it was trained on.

A U-Net trained on germline stacks has only seen Z steps of about 4-8 XY pixels (the model
card's ``z_step_range``). A stack with much finer Z steps (a nearly isotropic crop: its
cells span 30 planes instead of 4-8) looks to it like cells stretched along Z, and its faces
between cells stacked in Z like nothing it knows. Such a stack is resampled along Z to the
nearest Z step in the trained range before the network, and the probabilities are
interpolated back to the stack's own planes, so that every later stage works on the
original grid with the real voxel size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

#: Z step over XY pixel size of the stacks a model was trained on, when its card does not say.
DEFAULT_Z_STEP_RANGE: tuple[float, float] = (4.0, 8.0)


def network_planes(
    planes: int,
    voxel_size: Sequence[float] | None,
    z_step_range: Sequence[float] = DEFAULT_Z_STEP_RANGE,
) -> int:
    """How many planes the network should see of a stack with ``planes`` planes.

    Parameters
    ----------
    planes : int
        The stack's number of planes.
    voxel_size : (z, y, x) in µm, or None
        The stack's voxel size; None (unknown) keeps the stack as it is.
    z_step_range : (low, high)
        Z step over the XY pixel size that the network was trained on.

    Returns
    -------
    int
        ``planes`` when the stack's Z step lies in the range (or is unknown); otherwise the
        number of planes that gives the nearest Z step in the range, at least 1.
    """
    if voxel_size is None:
        return planes
    z_step, y_step, x_step = (float(v) for v in voxel_size)
    ratio = z_step / (0.5 * (y_step + x_step))
    low, high = (float(v) for v in z_step_range)
    target = min(max(ratio, low), high)
    if np.isclose(target, ratio):
        return planes
    return max(1, int(round(planes * ratio / target)))


def resample_planes(array: np.ndarray, planes: int) -> np.ndarray:
    """Linearly resample the third-last axis (Z) of ``array`` to ``planes`` planes.

    The first and last planes stay aligned with the first and last planes of the input
    (``grid_mode=False``), so resampling there and back keeps the stack's extent.
    """
    current = array.shape[-3]
    if planes == current:
        return array
    zoom = [1.0] * array.ndim
    zoom[-3] = planes / current
    if current == 1 or planes == 1:
        index = np.linspace(0, current - 1, planes).round().astype(int)
        return np.take(array, index, axis=-3)
    resampled = ndimage.zoom(array, zoom, order=1, mode="nearest", grid_mode=False)
    return resampled.astype(array.dtype, copy=False)

"""U-Net weight maps (Ronneberger et al., 2015) in near-linear time.

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))`` where ``d1`` and ``d2``
are the distances from voxel ``x`` to the nearest and the second-nearest cell. Like the
reference, the formula is evaluated everywhere: inside a cell ``d1 = 0`` and ``d2`` is the
distance to the nearest other cell, so both sides of a narrow gap between cells are
emphasised, not only the background voxels in the gap.

Algorithm (exact where it matters, without a full-volume distance transform per cell)
------------------------------------------------------------------------------------
Let ``D = sigma * sqrt(2 * ln(1 / tolerance))``: where ``d1 + d2 > D`` the border term is below
``tolerance * w0``. For each cell, one Euclidean distance transform (``edt`` package,
anisotropic) is computed inside the cell's bounding box grown by ``D``; it is exact there,
because every point of the cell lies inside the box. A running minimum and second minimum
of these local distances gives ``d1`` and ``d2``.

Exactness: every cell within distance ``D`` of a voxel has that voxel in its grown box, so
wherever ``d2 <= D`` both the nearest and the second-nearest cell were seen and ``d1``,
``d2`` are exact (to float32 rounding). Elsewhere the returned values can only be larger
than the true ones (fewer cells were seen), and both the true and the returned ``d1 + d2``
exceed ``D``: the border term is below ``tolerance * w0`` either way, so its absolute error
is below ``tolerance * w0`` everywhere and zero wherever the term exceeds
``tolerance * w0``. The work is the total volume of the grown boxes (a few times the volume
for packed cells), not cells x volume.

Distances are measured in XY pixels: with ``voxel_size = (z, y, x)`` the sampling is
``(z / y, 1, x / y)``, so ``sigma`` is in XY pixels whatever the Z step.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import edt
import numpy as np
from scipy import ndimage as ndi

from segmentation.errors import InputError

logger = logging.getLogger(__name__)

#: Absolute error bound of the exponential term, relative to ``w0``.
DEFAULT_TOLERANCE = 1e-4


def _sampling(voxel_size) -> tuple[float, float, float]:
    if voxel_size is None:
        return (1.0, 1.0, 1.0)
    z, y, x = (float(v) for v in voxel_size)
    if min(z, y, x) <= 0:
        raise InputError(f"voxel_size must be positive, got {voxel_size}")
    return (z / y, 1.0, x / y)


def class_balance_weights(labels: np.ndarray) -> np.ndarray:
    """Class-balance term ``w_c``: ``0.5 / f`` for each class of frequency ``f``.

    Foreground (any cell) and background voxels each carry half of the total weight, so the
    mean of ``w_c`` over the volume is 1; when one class is absent ``w_c = 1`` everywhere.
    """
    foreground = np.asarray(labels) != 0
    fraction = float(foreground.mean()) if foreground.size else 0.0
    if fraction in (0.0, 1.0):
        return np.ones(foreground.shape, dtype=np.float32)
    return np.where(foreground, 0.5 / fraction, 0.5 / (1.0 - fraction)).astype(np.float32)


def _two_nearest_distances(
    labels: np.ndarray, sampling: tuple[float, float, float], max_distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (float32) to the nearest and second-nearest cell.

    Exact wherever the second-nearest distance is at most ``max_distance``; elsewhere both
    values are lower bounds of what is returned (``inf`` when fewer than two cells are
    within reach), so ``d1 + d2 > max_distance`` holds for the true and the returned values.
    """
    nearest = np.full(labels.shape, np.inf, dtype=np.float32)
    second = np.full(labels.shape, np.inf, dtype=np.float32)
    margin = [int(np.ceil(max_distance / step)) for step in sampling]
    for index, box in enumerate(ndi.find_objects(labels)):
        if box is None:
            continue
        grown = tuple(
            slice(max(0, part.start - pad), min(size, part.stop + pad))
            for part, pad, size in zip(box, margin, labels.shape, strict=True)
        )
        not_cell = np.ascontiguousarray(labels[grown] != index + 1)
        distance = edt.edt(not_cell, anisotropy=sampling).astype(np.float32, copy=False)
        local_nearest, local_second = nearest[grown], second[grown]
        np.minimum(local_second, np.maximum(local_nearest, distance), out=local_second)
        np.minimum(local_nearest, distance, out=local_nearest)
    return nearest, second


def unet_weight_map(
    labels: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    voxel_size=None,
    class_balance: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> np.ndarray:
    """U-Net weight map of an instance label volume.

    Parameters
    ----------
    labels : (Z, Y, X) integer array
        Instance labels, 0 = background.
    w0 : float
        Amplitude of the border term.
    sigma : float
        Width of the border term, in XY pixels.
    voxel_size : (z, y, x) tuple, optional
        Physical voxel size; only the ratios matter. ``None``: isotropic voxels.
    class_balance : bool
        Add the class-balance term ``w_c`` (see :func:`class_balance_weights`);
        otherwise ``w_c = 1``.
    tolerance : float
        Largest absolute error of the border term, as a fraction of ``w0`` (see the module
        docstring); the term is exact wherever it exceeds ``tolerance * w0``.

    Returns
    -------
    (Z, Y, X) float32 array.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"labels must be a (Z, Y, X) integer volume, got {labels.dtype} {labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise InputError("labels must be non-negative (0 = background)")
    if sigma <= 0 or w0 < 0:
        raise InputError(f"need sigma > 0 and w0 >= 0, got sigma={sigma}, w0={w0}")
    if not 0 < tolerance < 1:
        raise InputError(f"tolerance must be in (0, 1), got {tolerance}")
    base = (
        class_balance_weights(labels) if class_balance else np.ones(labels.shape, dtype=np.float32)
    )
    if w0 == 0 or labels.max() == 0:
        return base
    max_distance = sigma * float(np.sqrt(2.0 * np.log(1.0 / tolerance)))
    nearest, second = _two_nearest_distances(labels, _sampling(voxel_size), max_distance)
    total = nearest + second
    border = np.float32(w0) * np.exp(-(total * total) / np.float32(2.0 * sigma * sigma))
    return base + border.astype(np.float32)


def cached_weight_map(labels: np.ndarray, cache_dir: Path, key: str, **kwargs) -> np.ndarray:
    """:func:`unet_weight_map`, cached on disk as ``<cache_dir>/<key>-<hash>.npy``.

    The hash covers the labels' shape, dtype and bytes and the keyword arguments, so a
    changed label volume or parameter never returns a stale map. ``key`` only makes the
    file names readable (e.g. the stack's name).
    """
    labels = np.ascontiguousarray(labels)
    digest = hashlib.sha256()
    digest.update(json.dumps([labels.shape, str(labels.dtype)]).encode())
    digest.update(labels.tobytes())
    digest.update(json.dumps(kwargs, sort_keys=True, default=repr).encode())
    safe_key = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{safe_key}-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        logger.debug("weight map cache hit: %s", path)
        return np.load(path)
    weight_map = unet_weight_map(labels, **kwargs)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, weight_map)
    temporary.replace(path)
    return weight_map

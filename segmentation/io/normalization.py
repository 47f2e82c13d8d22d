"""Robust per-channel intensity normalisation, shared by training and inference."""

from __future__ import annotations

import math

import numpy as np

#: Percentiles are estimated on about this many voxels per channel when no step is given.
PERCENTILE_SAMPLE_VOXELS = 1 << 20


def _sample_step(shape: tuple[int, ...]) -> int:
    """Stride along the last two axes giving about PERCENTILE_SAMPLE_VOXELS samples."""
    if len(shape) < 2:
        return 1
    return max(1, int(math.sqrt(int(np.prod(shape)) / PERCENTILE_SAMPLE_VOXELS)))


def normalize_percentile(
    image: np.ndarray,
    low: float = 1.0,
    high: float = 99.8,
    *,
    sample_step: int | None = None,
) -> np.ndarray:
    """Map each channel's ``low`` and ``high`` percentiles to 0 and 1 (not clipped).

    Parameters
    ----------
    image : np.ndarray
        (C, ...) array, e.g. (C, Z, Y, X); channels along axis 0.
    low, high : float
        Percentiles (0-100) mapped to 0 and 1.
    sample_step : int, optional
        Stride along the last two axes of the subsample on which the percentiles are
        estimated; 1 uses every voxel. By default about 1 Mi voxels per channel are used.

    Returns
    -------
    np.ndarray
        float32 array of the same shape, ``(x - p_low) / (p_high - p_low)`` per channel.
        If ``p_high == p_low`` the channel's maximum replaces ``p_high``; a constant
        channel becomes all zeros.
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"expected a (C, ...) array, got shape {image.shape}")
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    normalized = np.empty(image.shape, dtype=np.float32)
    for channel in range(image.shape[0]):
        values = image[channel]
        step = sample_step if sample_step is not None else _sample_step(values.shape)
        sample = values[..., ::step, ::step] if values.ndim >= 2 else values[::step]
        p_low, p_high = np.percentile(sample, [low, high])
        scale = p_high - p_low
        if scale <= 0:
            scale = float(values.max()) - p_low
        out = normalized[channel]
        np.subtract(values, p_low, out=out, casting="unsafe")
        if scale > 0:
            out *= np.float32(1.0 / scale)
        else:
            out[...] = 0.0
    return normalized

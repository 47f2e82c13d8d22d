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


def percentile_scaling(
    image: np.ndarray,
    low: float = 1.0,
    high: float = 99.8,
    *,
    sample_step: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the offset and scale that map ``low`` and ``high`` percentiles to 0 and 1.

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
    offset, scale : ndarray of float64, shape (C,)
        The normalised intensity is ``(x - offset) / scale``. If ``p_high == p_low`` the
        channel's maximum replaces ``p_high``; a scale of 0 (a constant channel) maps
        everything to 0.
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"expected a (C, ...) array, got shape {image.shape}")
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    offset = np.zeros(image.shape[0])
    scale = np.zeros(image.shape[0])
    for channel in range(image.shape[0]):
        values = image[channel]
        step = sample_step if sample_step is not None else _sample_step(values.shape)
        sample = values[..., ::step, ::step] if values.ndim >= 2 else values[::step]
        p_low, p_high = np.percentile(sample, [low, high])
        offset[channel] = p_low
        scale[channel] = p_high - p_low
        if scale[channel] <= 0:
            scale[channel] = max(float(values.max()) - p_low, 0.0)
    return offset, scale


def apply_scaling(image: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(image - offset) / scale`` per channel (axis 0) as float32; a scale of 0 gives 0."""
    normalized = np.empty(image.shape, dtype=np.float32)
    for channel in range(image.shape[0]):
        out = normalized[channel]
        np.subtract(image[channel], offset[channel], out=out, casting="unsafe")
        if scale[channel] > 0:
            out *= np.float32(1.0 / scale[channel])
        else:
            out[...] = 0.0
    return normalized


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
    return apply_scaling(image, *percentile_scaling(image, low, high, sample_step=sample_step))


class NormalizedStack:
    """A (C, Z, Y, X) stack normalised on reading: ``view[key]`` is ``apply_scaling`` of
    ``image[key]``, so a sliding window normalises only the window it crops and the stack
    is never held in float32 as a whole.

    Parameters
    ----------
    image : np.ndarray
        The raw (C, Z, Y, X) stack.
    offset, scale : ndarray, shape (C,)
        As :func:`percentile_scaling` returns them.

    Notes
    -----
    A key must keep the channel axis whole (``view[..., z, y, x]`` or ``view[:, z, y, x]``).
    """

    def __init__(self, image: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> None:
        if image.ndim < 2 or len(offset) != image.shape[0] or len(scale) != image.shape[0]:
            raise ValueError("offset and scale need one value per channel of a (C, ...) image")
        self.image = image
        self.offset = np.asarray(offset, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image.shape

    @property
    def ndim(self) -> int:
        return self.image.ndim

    def __getitem__(self, key: object) -> np.ndarray:
        raw = self.image[key]
        if raw.ndim != self.image.ndim or raw.shape[0] != self.image.shape[0]:
            raise IndexError("a NormalizedStack key must keep every channel and every axis")
        return apply_scaling(raw, self.offset, self.scale)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        normalized = apply_scaling(self.image, self.offset, self.scale)
        return normalized if dtype is None else normalized.astype(dtype)

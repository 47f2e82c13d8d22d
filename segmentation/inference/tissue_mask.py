"""Where the stack shows tissue at all: a coarse intensity mask that gates the foreground.

The network sees one window at a time, and its first GroupNorm rescales each window to unit
variance; a window of pure camera noise far from the gonad then looks like texture and can
be called foreground. Fluorescent tissue is much brighter than the empty field around it,
so a smoothed-intensity threshold separates the two reliably, and the network's foreground
probability is multiplied by that mask. Stacks without a clear dark background (a crop
inside the gonad) are left unmasked.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

logger = logging.getLogger(__name__)


def tissue_mask(
    image: np.ndarray,
    *,
    bin_xy: int = 4,
    sigma_xy: float = 2.0,
    min_contrast: float = 2.0,
    margin_xy: int = 16,
) -> np.ndarray | None:
    """Boolean (Z, Y, X) mask of voxels near bright tissue, or None when there is no background.

    Parameters
    ----------
    image : ndarray, shape (C, Z, Y, X)
        Raw (not normalised) intensities.
    bin_xy : int
        XY binning before smoothing and thresholding (speed).
    sigma_xy : float
        Gaussian sigma in binned XY pixels (0.5 along Z).
    min_contrast : float
        Smallest ratio of the bright class's mean to the dark class's mean (Otsu classes)
        for the dark class to count as empty background; below it, None is returned.
    margin_xy : int
        The mask is grown by this many XY pixels so that dim outer cell borders stay inside.

    Returns
    -------
    ndarray of bool, shape (Z, Y, X), or None
    """
    total = image.sum(axis=0, dtype=np.float32)
    z, y, x = total.shape
    pad_y, pad_x = (-y) % bin_xy, (-x) % bin_xy
    padded = np.pad(total, ((0, 0), (0, pad_y), (0, pad_x)), mode="edge")
    binned = padded.reshape(z, padded.shape[1] // bin_xy, bin_xy, padded.shape[2] // bin_xy, bin_xy)
    binned = binned.mean(axis=(2, 4))
    smoothed = ndimage.gaussian_filter(binned, sigma=(0.5, sigma_xy, sigma_xy))
    if np.ptp(smoothed) == 0:
        return None
    threshold = threshold_otsu(smoothed)
    bright, dark = smoothed[smoothed > threshold], smoothed[smoothed <= threshold]
    if dark.size == 0 or bright.mean() < min_contrast * max(float(dark.mean()), 1e-6):
        logger.info("tissue mask: no clear dark background; foreground not gated")
        return None
    coarse = smoothed > threshold
    coarse = np.stack([ndimage.binary_fill_holes(plane) for plane in coarse])
    grow = max(1, int(round(margin_xy / bin_xy)))
    coarse = ndimage.binary_dilation(coarse, structure=np.ones((1, 3, 3), bool), iterations=grow)
    full = coarse.repeat(bin_xy, axis=1).repeat(bin_xy, axis=2)
    return full[:, :y, :x]

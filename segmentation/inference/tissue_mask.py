"""Where the stack shows tissue at all: a coarse intensity mask that gates the foreground.

The network sees one window at a time, and its first GroupNorm rescales each window to unit
variance; a window of pure camera noise far from the gonad then looks like texture and can
be called foreground. Fluorescent tissue is much brighter than the empty field around it,
so a smoothed-intensity threshold separates the two reliably, and the network's foreground
probability is multiplied by that mask. Stacks without a clear dark background (a crop
inside the gonad, a crop of tissue that fills the field) are left unmasked: the dark class
then holds cell interiors between bright membranes rather than empty field, so besides
being dark enough it must include regions wider than a cell (``min_background_width``).
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
    min_background_width: int = 64,
    min_background_fraction: float = 0.1,
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
    min_background_width : int
        Empty field is wide: the dark class counts as background only where it holds discs
        of this diameter (XY pixels) in at least ``min_background_fraction`` of the field.
        The dark interiors of cells between bright membranes (a crop that tissue fills)
        are narrower, so such stacks are left unmasked.
    min_background_fraction : float
        See ``min_background_width``.

    Returns
    -------
    ndarray of bool, shape (Z, Y, X), or None
        The same in every plane: the XY columns that hold tissue in some plane, grown by
        ``margin_xy``.
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
    # a few very bright voxels (stripe artefacts, puncta) must not become the "tissue" class
    threshold = threshold_otsu(np.minimum(smoothed, np.percentile(smoothed, 98)))
    bright, dark = smoothed[smoothed > threshold], smoothed[smoothed <= threshold]
    if dark.size == 0 or bright.mean() < min_contrast * max(float(dark.mean()), 1e-6):
        logger.info("tissue mask: no clear dark background; foreground not gated")
        return None
    # the tissue's footprint in XY: intensity falls with depth, so that the first or last
    # planes of a stack can be as dim as the field around the gonad; a column that holds
    # tissue in any plane is kept in every plane
    footprint = (smoothed > threshold).any(axis=0)
    radius = max(1, int(round(min_background_width / (2 * bin_xy))))
    wide_dark = ndimage.binary_erosion(~footprint, structure=_disc(radius), border_value=1)
    if wide_dark.mean() < min_background_fraction:
        logger.info(
            "tissue mask: no dark region wider than %d px (cell interiors, not empty field); "
            "foreground not gated",
            min_background_width,
        )
        return None
    footprint = ndimage.binary_fill_holes(footprint)
    grow = max(1, int(round(margin_xy / bin_xy)))
    footprint = ndimage.binary_dilation(footprint, structure=np.ones((3, 3), bool), iterations=grow)
    full = footprint.repeat(bin_xy, axis=0).repeat(bin_xy, axis=1)[:y, :x]
    return np.broadcast_to(full, (z, y, x)).copy()


def _disc(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2

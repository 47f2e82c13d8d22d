"""Whole-stack figures gathered block by block: the normalisation percentiles and the
tissue mask, equal to what the in-memory pipeline computes on the whole stack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segmentation.blockwise.blocks import Block
from segmentation.blockwise.lazy_stack import LazyStack
from segmentation.inference import tissue_mask
from segmentation.io.normalization import _sample_step, apply_scaling
from segmentation.io.reader import _validate_values

#: ``normalize_percentile``'s percentiles, mapped to 0 and 1.
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.8
#: ``tissue_mask``'s XY binning; blockwise scans use blocks that are multiples of it.
TISSUE_BIN_XY = 4
_TISSUE_MARGIN_XY = 16
_TISSUE_BACKGROUND_WIDTH = 64


@dataclass(frozen=True)
class StackStatistics:
    """What the network stage needs to know about the whole stack.

    Attributes
    ----------
    offset, scale : ndarray of float64, shape (2,)
        Per channel, the normalised intensity is ``(x - offset) / scale`` (scale 0: all 0).
    tissue : ndarray of bool, shape (Y, X), or None
        :func:`~segmentation.inference.tissue_mask`'s footprint (the same in every plane);
        None when the stack shows no clear dark background.
    """

    offset: np.ndarray
    scale: np.ndarray
    tissue: np.ndarray | None

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Normalise a raw (2, z, y, x) block exactly as ``normalize_percentile`` would."""
        return apply_scaling(raw, self.offset, self.scale)


def _binned_sum(raw: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """The channel sum of a block, edge-padded by ``pad`` (Y, X) and averaged over 4x4 bins."""
    total = raw.sum(axis=0, dtype=np.float32)
    padded = np.pad(total, ((0, 0), (0, pad[0]), (0, pad[1])), mode="edge")
    z, y, x = padded.shape
    binned = padded.reshape(z, y // TISSUE_BIN_XY, TISSUE_BIN_XY, x // TISSUE_BIN_XY, TISSUE_BIN_XY)
    return binned.mean(axis=(2, 4))


def scan_stack(stack: LazyStack, blocks: list[Block], *, mask_tissue: bool) -> StackStatistics:
    """Read the stack once, block by block, for its percentiles and its tissue mask.

    The percentiles come from the same strided subsample as ``normalize_percentile``
    takes of the whole stack; the tissue mask is ``tissue_mask`` on the 4x4-binned
    channel sum, which is gathered block by block (about 1/16 of a channel in memory).

    Parameters
    ----------
    stack : LazyStack
    blocks : list of Block
        Blocks spanning every plane whose Y and X starts are multiples of 4.
    mask_tissue : bool
        Whether to compute the tissue mask (models with a foreground output).

    Returns
    -------
    StackStatistics

    Raises
    ------
    InputError
        When a channel's subsample holds NaN or infinite values or is constant.
    """
    n_z, n_y, n_x = stack.shape
    step = _sample_step(stack.shape)
    samples: list[np.ndarray] = []
    largest = np.full(2, -np.inf)
    binned = None
    if mask_tissue:
        binned = np.empty(
            (n_z, -(-n_y // TISSUE_BIN_XY), -(-n_x // TISSUE_BIN_XY)), dtype=np.float32
        )
    for block in blocks:
        raw = stack.read(block.inner)
        _, ys, xs = block.inner
        sample = raw[:, :, (-ys.start) % step :: step, (-xs.start) % step :: step]
        samples.append(sample.reshape(2, -1))
        largest = np.maximum(largest, raw.reshape(2, -1).max(axis=1))
        if binned is not None:
            pad = ((-ys.stop) % TISSUE_BIN_XY, (-xs.stop) % TISSUE_BIN_XY)
            if ys.stop < n_y:
                pad = (0, pad[1])
            if xs.stop < n_x:
                pad = (pad[0], 0)
            binned[
                :,
                ys.start // TISSUE_BIN_XY : -(-ys.stop // TISSUE_BIN_XY),
                xs.start // TISSUE_BIN_XY : -(-xs.stop // TISSUE_BIN_XY),
            ] = _binned_sum(raw, pad)
    sample = np.concatenate(samples, axis=1)
    _validate_values(stack.name, sample, stack.channels)
    low, high = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE], axis=1)
    scale = high - low
    scale = np.where(scale > 0, scale, (largest - low).astype(scale.dtype))
    tissue = None
    if binned is not None:
        coarse = tissue_mask(
            binned[None],
            bin_xy=1,
            margin_xy=_TISSUE_MARGIN_XY // TISSUE_BIN_XY,
            min_background_width=_TISSUE_BACKGROUND_WIDTH // TISSUE_BIN_XY,
        )
        if coarse is not None:
            tissue = coarse[0].repeat(TISSUE_BIN_XY, axis=0).repeat(TISSUE_BIN_XY, axis=1)
            tissue = tissue[:n_y, :n_x]
    return StackStatistics(low, scale, tissue)

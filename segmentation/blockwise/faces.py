"""Faces between touching voxels of a label volume, gathered block by block.

A block counts the faces between each of its voxels and the next voxel along Z, Y and X,
reading one plane past its upper faces, so every face of the volume is counted exactly
once, by the block that holds its lower voxel.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import zarr

from segmentation.blockwise.blocks import Block, Index


def upper_extended(block: Block, shape: tuple[int, int, int]) -> Index:
    """``block.inner`` grown by one voxel past each upper face that lies inside ``shape``."""
    return tuple(
        slice(s.start, min(s.stop + 1, size)) for s, size in zip(block.inner, shape, strict=True)
    )


def block_faces(
    labels: np.ndarray, block: Block, extended: Index
) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """Per axis, the labels on both sides of the block's faces and where they lie.

    Parameters
    ----------
    labels : ndarray, shape of ``extended``
        Labels read over ``extended`` (from :func:`upper_extended`).
    block : Block
    extended : tuple of slice

    Yields
    ------
    low, high : ndarray
        Labels of the lower and upper voxel of each face along one axis (every face,
        equal labels included).
    index : (ndarray-index, ndarray-index)
        The index of the lower and of the upper voxels in ``labels``, to read other
        volumes read over ``extended`` (e.g. the boundary probability) at the faces.
    """
    inner = [s.stop - s.start for s in block.inner]
    for axis in range(3):
        low_index = [slice(0, n) for n in inner]
        high_index = list(low_index)
        available = extended[axis].stop - extended[axis].start
        low_index[axis] = slice(0, min(inner[axis], available - 1))
        high_index[axis] = slice(1, low_index[axis].stop + 1)
        low_index, high_index = tuple(low_index), tuple(high_index)
        yield labels[low_index], labels[high_index], (low_index, high_index)


def read_extended(array: zarr.Array, block: Block) -> tuple[np.ndarray, Index]:
    """A (Z, Y, X) array read over the block grown past its upper faces."""
    extended = upper_extended(block, array.shape[-3:])
    return array[extended], extended

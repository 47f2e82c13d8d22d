"""Blocks of a volume, and the block shape that a memory budget allows.

A block owns its ``inner`` part of the volume; it reads ``outer``, the inner part grown by a
halo on every side (clipped to the volume), so that filters, distance transforms and
floods near its faces see what lies beyond them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Index = tuple[slice, slice, slice]

GB = 1024**3
#: Peak bytes per voxel (Z*Y*X) of the whole-stack pipeline (two float32 channels, the
#: probabilities, the watershed's and post-processing's temporaries). Measured 2.1-2.7 GB
#: peak RSS on 2x25x1024x1024 stacks (README, *Speed and accuracy*), so 64 with
#: :data:`FIXED_BYTES` errs on the high side.
BYTES_PER_VOXEL = 64
#: Bytes taken whatever the stack: the interpreter, PyTorch, the model and one window.
FIXED_BYTES = 1 * GB
#: Blocks are at least this wide in Y and X (and multiples of it unless the axis is shorter).
BLOCK_XY_MULTIPLE = 64


@dataclass(frozen=True)
class Block:
    """One block of a block grid.

    Attributes
    ----------
    inner : tuple of slice
        The voxels the block owns (Z, Y, X).
    outer : tuple of slice
        The voxels it reads: ``inner`` grown by the halo, clipped to the volume.
    """

    inner: Index
    outer: Index

    @property
    def local(self) -> Index:
        """``inner`` in the coordinates of an array holding ``outer``."""
        return tuple(
            slice(i.start - o.start, i.stop - o.start)
            for i, o in zip(self.inner, self.outer, strict=True)
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of ``inner``."""
        return tuple(s.stop - s.start for s in self.inner)


def block_grid(
    shape: tuple[int, int, int],
    block_shape: tuple[int, int, int],
    halo: tuple[int, int, int] = (0, 0, 0),
) -> list[Block]:
    """Blocks of ``block_shape`` (the last along each axis may be smaller) tiling ``shape``.

    Parameters
    ----------
    shape : (int, int, int)
        The volume's (Z, Y, X).
    block_shape : (int, int, int)
        Inner size of the blocks.
    halo : (int, int, int)
        Voxels read beyond each face of a block, per axis.

    Returns
    -------
    list of Block
        In C order of their positions (Z slowest).
    """
    starts = [range(0, size, step) for size, step in zip(shape, block_shape, strict=True)]
    blocks = []
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                inner = tuple(
                    slice(start, min(start + step, size))
                    for start, step, size in zip((z, y, x), block_shape, shape, strict=True)
                )
                outer = tuple(
                    slice(max(0, s.start - h), min(size, s.stop + h))
                    for s, h, size in zip(inner, halo, shape, strict=True)
                )
                blocks.append(Block(inner, outer))
    return blocks


def in_memory_bytes(shape: tuple[int, int, int]) -> int:
    """Estimated peak memory (bytes) of segmenting a (Z, Y, X) stack in one piece."""
    return FIXED_BYTES + BYTES_PER_VOXEL * math.prod(shape)


def fits_in_memory(shape: tuple[int, int, int], memory_budget_gb: float) -> bool:
    """Whether the whole-stack pipeline stays within ``memory_budget_gb`` for ``shape``."""
    return in_memory_bytes(shape) <= memory_budget_gb * GB


def _balanced(size: int, largest: int, multiple: int) -> int:
    """The smallest block length, a multiple of ``multiple``, that splits ``size`` into as
    few blocks as blocks of ``largest`` would."""
    if largest >= size:
        return size
    count = math.ceil(size / largest)
    length = math.ceil(size / count)
    return min(size, math.ceil(length / multiple) * multiple)


def block_shape_for_budget(
    shape: tuple[int, int, int], memory_budget_gb: float, halo: tuple[int, int, int]
) -> tuple[int, int, int]:
    """The block shape whose blocks (with their halo) fit in ``memory_budget_gb``.

    Blocks span every plane when a block of at least :data:`BLOCK_XY_MULTIPLE` pixels in
    Y and X then fits, else as many planes as fit; Y and X are split into equal blocks,
    multiples of :data:`BLOCK_XY_MULTIPLE`.

    Parameters
    ----------
    shape : (int, int, int)
        The stack's (Z, Y, X).
    memory_budget_gb : float
        The budget.
    halo : (int, int, int)
        The largest halo any blockwise stage reads.

    Returns
    -------
    (int, int, int)
    """
    voxels = max((memory_budget_gb * GB - FIXED_BYTES) / BYTES_PER_VOXEL, 1.0)
    n_z, n_y, n_x = shape
    smallest_xy = (BLOCK_XY_MULTIPLE + 2 * halo[1]) * (BLOCK_XY_MULTIPLE + 2 * halo[2])
    depth = n_z
    if n_z * smallest_xy > voxels:
        depth = max(1, int(voxels // smallest_xy) - 2 * halo[0])
    planes_read = min(n_z, depth + 2 * halo[0])
    side = int(math.sqrt(voxels / planes_read))
    largest_y = max(BLOCK_XY_MULTIPLE, side - 2 * halo[1])
    largest_x = max(BLOCK_XY_MULTIPLE, side - 2 * halo[2])
    return (
        _balanced(n_z, depth, 1),
        _balanced(n_y, largest_y, BLOCK_XY_MULTIPLE),
        _balanced(n_x, largest_x, BLOCK_XY_MULTIPLE),
    )


def halo_voxels(
    pixels: float, voxel_size: tuple[float, float, float] | None
) -> tuple[int, int, int]:
    """A halo of ``pixels`` X pixels as voxels per axis (fewer planes along a coarser Z)."""
    spacing = (1.0, 1.0, 1.0) if voxel_size is None else np.asarray(voxel_size) / voxel_size[2]
    return tuple(int(math.ceil(pixels / float(step))) for step in spacing)

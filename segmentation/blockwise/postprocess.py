"""Post-processing of on-disk labels with the whole-volume decisions of the in-memory chain.

The in-memory chain (:func:`segmentation.pipeline.cells_from_superpixels`) removes
background cells, grows cells into foreground rims, merges fragments, filters by size and
relabels. Every decision but rim growth depends only on per-label sums (sizes, foreground
sums, contact areas), which are gathered block by block and decided on once for the whole
volume, giving one lookup table; rim growth is local (a few pixels) and runs per block
with a halo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from segmentation.blockwise.blocks import Block
from segmentation.blockwise.faces import block_faces, read_extended
from segmentation.blockwise.storage import create_array
from segmentation.blockwise.watershed import read_probabilities
from segmentation.graph import RegionGraph
from segmentation.parameters import DEFAULT_FRAGMENT_CONTACT, SegmentationParameters
from segmentation.postprocess import grow_into_foreground
from segmentation.postprocess.filters import _volume_to_voxels

logger = logging.getLogger(__name__)

#: Label of the stack's Y and X faces in contact counts (as in ``merge_fragments``).
_OUTSIDE = -1


def rim_halo_pixels(rim_distance: float) -> int:
    """Halo (X pixels) around a block for rim growth ``rim_distance`` pixels deep."""
    return int(np.ceil(2 * rim_distance)) + 4


def remove_background_cells(
    graph: RegionGraph, node_labels: np.ndarray, foreground_threshold: float
) -> np.ndarray:
    """Set to 0 the cells (node labels) whose mean foreground probability is below the
    threshold, as ``remove_background`` does to the projected labels."""
    if graph.node_foreground is None:
        return node_labels
    totals = np.nan_to_num(graph.node_foreground) * graph.node_size
    sizes = np.bincount(node_labels, weights=graph.node_size)
    foreground = np.bincount(node_labels, weights=totals, minlength=sizes.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        removed = (sizes > 0) & (foreground / sizes < foreground_threshold)
    removed[0] = False
    return np.where(removed[node_labels], 0, node_labels).astype(node_labels.dtype)


def grow_rims_blockwise(
    superpixels: zarr.Array,
    probabilities: zarr.Array,
    piece_labels: np.ndarray,
    blocks: list[Block],
    work_dir: Path,
    parameters: SegmentationParameters,
    voxel_size: tuple[float, float, float] | None,
) -> zarr.Array:
    """Cell labels ``piece_labels[superpixels]`` grown into foreground rims, per block.

    Parameters
    ----------
    piece_labels : ndarray of uint32
        Cell label (0 = background) of each piece id of ``superpixels``.
    blocks : list of Block
        Blocks with a halo of at least :func:`rim_halo_pixels` X pixels.

    Returns
    -------
    zarr.Array
        uint32 (Z, Y, X) at ``work_dir/cells.zarr``.
    """
    cells = create_array(work_dir / "cells.zarr", superpixels.shape, np.uint32)
    for block in blocks:
        labels = piece_labels[superpixels[block.outer]]
        boundary, foreground = read_probabilities(probabilities, block.outer)
        if foreground is not None:
            labels = grow_into_foreground(
                labels,
                boundary,
                foreground,
                max_distance=parameters.rim_distance,
                foreground_threshold=parameters.foreground_threshold,
                voxel_size=voxel_size,
            )
        cells[block.inner] = labels[block.local]
    return cells


def label_contacts(
    cells: zarr.Array, blocks: list[Block], n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sizes and contact areas of the labels of ``cells``, as ``segment_contacts`` counts
    them on the whole volume (background included, the Y and X borders as label -1).

    Returns
    -------
    sizes : ndarray of int64, shape (n_labels,)
    first, second, area : ndarray of int64
        Each touching pair once (``first < second``) and its number of faces.
    """
    sizes = np.zeros(n_labels, dtype=np.int64)
    offset = n_labels + 1
    keys: list[np.ndarray] = []
    areas: list[np.ndarray] = []

    def add(first: np.ndarray, second: np.ndarray) -> None:
        unique, count = np.unique((first + 1) * offset + second, return_counts=True)
        keys.append(unique)
        areas.append(count)

    for block in blocks:
        labels, extended = read_extended(cells, block)
        inner = labels[tuple(slice(0, n) for n in block.shape)]
        sizes += np.bincount(inner.ravel(), minlength=n_labels)
        for low, high, _ in block_faces(labels, block, extended):
            differ = low != high
            a, b = low[differ].astype(np.int64), high[differ].astype(np.int64)
            add(np.minimum(a, b), np.maximum(a, b))
        for axis in (1, 2):
            span = block.inner[axis]
            for index, on_border in ((0, span.start == 0), (-1, span.stop == cells.shape[axis])):
                if on_border:
                    face = np.take(inner, index, axis=axis).ravel().astype(np.int64)
                    add(np.full(face.shape, _OUTSIDE, np.int64), face)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    area = np.bincount(inverse, weights=np.concatenate(areas)).astype(np.int64)
    return sizes, unique // offset - 1, unique % offset, area


def fragment_targets(
    sizes: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    area: np.ndarray,
    max_size_ratio: float,
    min_contact: float = DEFAULT_FRAGMENT_CONTACT,
) -> np.ndarray:
    """The label each label ends up with after ``merge_fragments`` (itself when kept).

    The rule of :func:`segmentation.postprocess.merge_fragments`, on contacts gathered
    blockwise: a segment whose largest contact is a cell holding at least ``min_contact``
    of its surface, and that is at most ``max_size_ratio`` of that cell's size, joins it;
    chains end at the last host.
    """
    n_labels = sizes.size
    target = np.arange(n_labels, dtype=np.int64)
    if max_size_ratio == 0 or area.size == 0:
        return target
    owner = np.concatenate([first, second])
    other = np.concatenate([second, first])
    shared = np.concatenate([area, area])
    is_cell = owner > 0
    owner, other, shared = owner[is_cell], other[is_cell], shared[is_cell]
    surface = np.bincount(owner, weights=shared, minlength=n_labels)
    order = np.lexsort((-shared, owner))
    owner, other, shared = owner[order], other[order], shared[order]
    first_of_owner = np.ones(owner.size, bool)
    first_of_owner[1:] = owner[1:] != owner[:-1]
    best_owner, best_other, best_area = (
        owner[first_of_owner],
        other[first_of_owner],
        shared[first_of_owner],
    )
    enclosed = (
        (best_other > 0)
        & (best_area >= min_contact * surface[best_owner])
        & (sizes[best_owner] <= max_size_ratio * sizes[np.maximum(best_other, 0)])
    )
    for segment, host in sorted(
        zip(best_owner[enclosed], best_other[enclosed], strict=True), key=lambda p: sizes[p[0]]
    ):
        target[segment] = host
    for _ in range(n_labels):
        following = target[target]
        if np.array_equal(following, target):
            break
        target = following
    merged = int(np.count_nonzero(target != np.arange(n_labels)))
    if merged:
        logger.info("merged %d fragments into the cells they lie against", merged)
    return target


def final_lookup(
    sizes: np.ndarray,
    target: np.ndarray,
    parameters: SegmentationParameters,
    voxel_size: tuple[float, float, float] | None,
) -> np.ndarray:
    """Final label per label of ``cells``: fragments merged, size limits applied (as
    ``filter_by_size``), consecutive 1..N in increasing order (as ``relabel_sequential``).

    Returns
    -------
    ndarray of uint16, or uint32 beyond 65,535 cells
    """
    merged = np.bincount(target, weights=sizes, minlength=sizes.size)
    removed = merged == 0
    lower = [
        parameters.min_size,
        _volume_to_voxels(parameters.min_volume_um3, voxel_size, "min_volume_um3"),
    ]
    upper = [
        parameters.max_size,
        _volume_to_voxels(parameters.max_volume_um3, voxel_size, "max_volume_um3"),
    ]
    for limit in lower:
        if limit is not None:
            removed |= merged < limit
    for limit in upper:
        if limit is not None:
            removed |= merged > limit
    removed[0] = True
    count = int(np.count_nonzero(~removed))
    dtype = np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32
    renumbered = np.zeros(sizes.size, dtype=dtype)
    renumbered[~removed] = np.arange(1, count + 1, dtype=dtype)
    return renumbered[target]


@dataclass(frozen=True)
class BlockwiseLabels:
    """On-disk cell labels before their lookup table, and what the outputs need.

    Attributes
    ----------
    cells : zarr.Array
        uint32 (Z, Y, X) cell labels before fragment merging and size filtering.
    lookup : ndarray
        Final label of each label of ``cells`` (uint16 or uint32).
    graph : RegionGraph
        The super-pixel region graph.
    neighbours : dict of int to list of int
        Touching neighbours of each final cell.
    timings : dict of str to float
        Seconds per stage.
    """

    cells: zarr.Array
    lookup: np.ndarray
    graph: RegionGraph
    neighbours: dict[int, list[int]]
    timings: dict[str, float]

    @property
    def n_cells(self) -> int:
        return int(self.lookup.max()) if self.lookup.size else 0

    def read(self, index: tuple[slice, slice, slice]) -> np.ndarray:
        """Final labels of a block."""
        return self.lookup[self.cells[index]]

"""The distance-transform watershed block by block, stitched into one over-segmentation.

Each block runs :func:`~segmentation.watershed.distance_transform_watershed` on itself and
a halo, keeps its inner part and shifts its ids past those of the blocks before it, so a
super-pixel that crosses a block face is cut there into one piece per block. The pieces
are joined again from what each block's watershed saw past its faces: the block keeps its
own super-pixel ids on the plane just beyond each face (0 where a super-pixel lies
outside it), and two pieces that face each other across a block face are one
super-pixel when most of the faces between them join voxels that either block put into
one super-pixel. (Joining them through the region graph instead fails where a block face
runs through a cell boundary that a super-pixel straddles: the pieces' shared face is then
a boundary and they stay apart.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import zarr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from segmentation.blockwise.blocks import Block
from segmentation.blockwise.prediction import BOUNDARY, FOREGROUND
from segmentation.blockwise.storage import create_array
from segmentation.parameters import SegmentationParameters
from segmentation.watershed import distance_transform_watershed

logger = logging.getLogger(__name__)

#: Halo of the watershed blocks, in X pixels: twice the default seed footprint plus the
#: smoothing, so that seeds, distances and floods near a block's faces are those of the
#: whole stack.
WATERSHED_HALO_PIXELS = 48
#: Two facing pieces are joined when at least this fraction of their shared faces lies
#: inside one super-pixel of either block's watershed.
JOIN_FRACTION = 0.5

#: (block's inner start, axis, "below" or "above") -> a block's ids on the plane beyond a face.
FaceViews = dict[tuple[tuple[int, int, int], int, str], np.ndarray]


def read_probabilities(
    probabilities: zarr.Array, index: tuple[slice, slice, slice]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Boundary and (when stored) foreground probability of a block, as float32."""
    block = probabilities[(slice(None), *index)].astype(np.float32)
    foreground = block[FOREGROUND] if block.shape[0] > FOREGROUND else None
    return block[BOUNDARY], foreground


def _plane(labels: np.ndarray, block: Block, axis: int, position: int) -> np.ndarray:
    """The plane at ``position`` (outer-local) along ``axis``, over the block's inner extent."""
    index = list(block.local)
    index[axis] = position
    return labels[tuple(index)]


def _face_views(
    raw: np.ndarray, lookup: np.ndarray, block: Block, shape: tuple[int, ...]
) -> FaceViews:
    """The block's global ids on the planes just below and just above its inner part."""
    views: FaceViews = {}
    start = tuple(s.start for s in block.inner)
    for axis in range(3):
        local = block.local[axis]
        if block.inner[axis].start > 0:
            views[(start, axis, "below")] = lookup[_plane(raw, block, axis, local.start - 1)]
        if block.inner[axis].stop < shape[axis]:
            views[(start, axis, "above")] = lookup[_plane(raw, block, axis, local.stop)]
    return views


def watershed_blockwise(
    probabilities: zarr.Array,
    blocks: list[Block],
    work_dir: Path,
    parameters: SegmentationParameters,
    voxel_size: tuple[float, float, float] | None,
) -> tuple[zarr.Array, np.ndarray]:
    """Super-pixels of the whole stack into ``work_dir/superpixels.zarr``.

    Parameters
    ----------
    probabilities : zarr.Array
        (K, Z, Y, X) from :func:`~segmentation.blockwise.prediction.predict_blockwise`.
    blocks : list of Block
        Blocks of a regular grid whose halo is at least :data:`WATERSHED_HALO_PIXELS` X
        pixels.
    work_dir : Path
    parameters : SegmentationParameters
        Threshold, footprint, foreground threshold and seed distance.
    voxel_size : (float, float, float), optional
        (z, y, x) in µm for the anisotropic distance transform.

    Returns
    -------
    zarr.Array
        uint32 (Z, Y, X) piece ids 1..P, unique over all blocks.
    ndarray of int64, shape (P + 1,)
        The super-pixel 1..N of each piece (0 for 0).
    """
    shape = probabilities.shape[1:]
    superpixels = create_array(work_dir / "superpixels.zarr", shape, np.uint32)
    views: FaceViews = {}
    count = 0
    for block in blocks:
        boundary, foreground = read_probabilities(probabilities, block.outer)
        raw = distance_transform_watershed(
            boundary,
            threshold=parameters.threshold,
            footprint=parameters.footprint,
            voxel_size=voxel_size,
            foreground_probability=foreground,
            foreground_threshold=parameters.foreground_threshold,
            foreground_seed_distance=parameters.foreground_seed_distance,
        )
        inner = raw[block.local]
        present = np.unique(inner)
        present = present[present > 0]
        lookup = np.zeros(int(raw.max()) + 1, dtype=np.uint32)
        lookup[present] = np.arange(count + 1, count + 1 + present.size, dtype=np.uint32)
        superpixels[block.inner] = lookup[inner]
        views.update(_face_views(raw, lookup, block, shape))
        count += present.size
    pieces = join_pieces(superpixels, blocks, views, count)
    logger.info(
        "watershed (blockwise): %d super-pixels (%d pieces in %d blocks)",
        int(pieces.max()),
        count,
        len(blocks),
    )
    return superpixels, pieces


def join_pieces(
    superpixels: zarr.Array, blocks: list[Block], views: FaceViews, count: int
) -> np.ndarray:
    """The super-pixel of each piece, joining pieces across block faces (see the module).

    Returns
    -------
    ndarray of int64, shape (count + 1,)
        Super-pixel ids 1..N in the order of their first piece; 0 for 0.
    """
    shape = superpixels.shape
    starts = {tuple(s.start for s in block.inner): block for block in blocks}
    firsts, seconds = [], []
    for start, block in starts.items():
        for axis in range(3):
            if block.inner[axis].stop >= shape[axis]:
                continue
            above_start = list(start)
            above_start[axis] = block.inner[axis].stop
            above = starts[tuple(above_start)]
            last = list(block.inner)
            last[axis] = block.inner[axis].stop - 1
            first = list(block.inner)
            first[axis] = above.inner[axis].start
            low = superpixels[tuple(last)].astype(np.int64).ravel()
            high = superpixels[tuple(first)].astype(np.int64).ravel()
            joined = (views[(start, axis, "above")].ravel() == low) | (
                views[(tuple(above_start), axis, "below")].ravel() == high
            )
            keys, faces = np.unique(low * (count + 1) + high, return_counts=True)
            inside = np.bincount(
                np.searchsorted(keys, (low * (count + 1) + high)[joined]), minlength=keys.size
            )
            keep = inside >= JOIN_FRACTION * faces
            firsts.append(keys[keep] // (count + 1))
            seconds.append(keys[keep] % (count + 1))
    first = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    second = np.concatenate(seconds) if seconds else np.zeros(0, np.int64)
    adjacency = coo_matrix((np.ones(first.size), (first, second)), shape=(count + 1, count + 1))
    _, components = connected_components(adjacency, directed=False)
    # node 0 (no piece) is component 0; the others follow in the order of their first piece
    return components.astype(np.int64)

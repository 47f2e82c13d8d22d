"""The region adjacency graph of on-disk super-pixels, gathered block by block.

Each block adds its node sizes and foreground sums and, for every face between two
super-pixels (faces across its upper block faces included, see
:mod:`segmentation.blockwise.faces`), the face's larger boundary probability. The graph
has the features :func:`segmentation.graph.region_graph` gives the whole volume, and it
is small (one node per super-pixel), so it is partitioned in memory.
"""

from __future__ import annotations

import numpy as np
import zarr

from segmentation.blockwise.blocks import Block
from segmentation.blockwise.faces import block_faces, read_extended
from segmentation.blockwise.prediction import BOUNDARY, FOREGROUND
from segmentation.graph import RegionGraph


def _summed_by_key(
    keys: np.ndarray, totals: np.ndarray, areas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique keys with their summed totals and areas."""
    unique, inverse = np.unique(keys, return_inverse=True)
    return (
        unique,
        np.bincount(inverse, weights=totals, minlength=unique.size),
        np.bincount(inverse, weights=areas, minlength=unique.size),
    )


def region_graph_blockwise(
    superpixels: zarr.Array, probabilities: zarr.Array, blocks: list[Block], pieces: np.ndarray
) -> RegionGraph:
    """Region adjacency graph of the super-pixels ``pieces[superpixels]`` (1..N).

    Parameters
    ----------
    superpixels : zarr.Array
        (Z, Y, X) super-pixel ids, from
        :func:`~segmentation.blockwise.watershed.watershed_blockwise`.
    probabilities : zarr.Array
        (K, Z, Y, X) boundary (and foreground) probabilities.
    blocks : list of Block
        Any block grid of the volume (halos are not read).
    pieces : ndarray of int, shape (P + 1,)
        Super-pixel of each piece id of ``superpixels``.

    Returns
    -------
    RegionGraph
        As :func:`segmentation.graph.region_graph` of the whole volume.
    """
    n_nodes = int(pieces.max()) + 1
    has_foreground = probabilities.shape[0] > FOREGROUND
    node_size = np.zeros(n_nodes, dtype=np.int64)
    foreground_total = np.zeros(n_nodes) if has_foreground else None
    gathered: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for block in blocks:
        labels, extended = read_extended(superpixels, block)
        labels = pieces[labels]
        boundary = probabilities[(BOUNDARY, *extended)].astype(np.float32)
        keys, values = [], []
        for low, high, (low_index, high_index) in block_faces(labels, block, extended):
            face = (low != high) & (low != 0) & (high != 0)
            first, second = low[face].astype(np.int64), high[face].astype(np.int64)
            keys.append(np.minimum(first, second) * n_nodes + np.maximum(first, second))
            values.append(
                np.maximum(boundary[low_index][face], boundary[high_index][face]).astype(np.float64)
            )
        all_keys = np.concatenate(keys)
        gathered.append(_summed_by_key(all_keys, np.concatenate(values), np.ones(all_keys.size)))
        inner = labels[tuple(slice(0, n) for n in block.shape)].ravel()
        node_size += np.bincount(inner, minlength=n_nodes)
        if foreground_total is not None:
            foreground = probabilities[(FOREGROUND, *block.inner)].astype(np.float32)
            foreground_total += np.bincount(inner, weights=foreground.ravel(), minlength=n_nodes)
    keys, totals, areas = _summed_by_key(
        *(np.concatenate(parts) for parts in zip(*gathered, strict=True))
    )
    node_foreground = None
    if foreground_total is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            node_foreground = np.where(node_size > 0, foreground_total / node_size, np.nan)
    return RegionGraph(
        n_nodes=n_nodes,
        edges=np.stack([keys // n_nodes, keys % n_nodes], axis=1),
        mean_boundary=totals / np.maximum(areas, 1),
        contact_area=areas,
        node_size=node_size,
        node_foreground=node_foreground,
    )

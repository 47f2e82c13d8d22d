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
from segmentation.graph.region_graph import face_columns, node_means, summed_by_key


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
    boundary_total = np.zeros(n_nodes)
    gathered: list[tuple[np.ndarray, np.ndarray]] = []
    for block in blocks:
        labels, extended = read_extended(superpixels, block)
        labels = pieces[labels]
        boundary = probabilities[(BOUNDARY, *extended)].astype(np.float32)
        foreground = (
            probabilities[(FOREGROUND, *extended)].astype(np.float32) if has_foreground else None
        )
        keys, columns = [], []
        for axis, (low, high, (low_index, high_index)) in enumerate(
            block_faces(labels, block, extended)
        ):
            face = (low != high) & (low != 0) & (high != 0)
            first, second = low[face].astype(np.int64), high[face].astype(np.int64)
            keys.append(np.minimum(first, second) * n_nodes + np.maximum(first, second))
            columns.append(
                face_columns(
                    boundary[low_index][face],
                    boundary[high_index][face],
                    None if foreground is None else foreground[low_index][face],
                    None if foreground is None else foreground[high_index][face],
                    along_z=axis == 0,
                )
            )
        block_keys, counts, sums = summed_by_key(np.concatenate(keys), np.concatenate(columns))
        gathered.append((block_keys, np.column_stack([counts, sums])))
        inner_index = tuple(slice(0, n) for n in block.shape)
        inner = labels[inner_index].ravel()
        node_size += np.bincount(inner, minlength=n_nodes)
        boundary_total += np.bincount(
            inner, weights=boundary[inner_index].ravel(), minlength=n_nodes
        )
        if foreground_total is not None:
            foreground_total += np.bincount(
                inner, weights=foreground[inner_index].ravel(), minlength=n_nodes
            )
    all_keys = np.concatenate([keys for keys, _ in gathered])
    unique, _, sums = summed_by_key(all_keys, np.concatenate([rows for _, rows in gathered]))
    areas = sums[:, 0]
    return RegionGraph(
        n_nodes=n_nodes,
        edges=np.stack([unique // n_nodes, unique % n_nodes], axis=1),
        mean_boundary=sums[:, 1] / np.maximum(areas, 1),
        contact_area=areas,
        node_size=node_size,
        node_foreground=None
        if foreground_total is None
        else node_means(foreground_total, node_size),
        face_statistics=sums[:, 2:],
        node_boundary=node_means(boundary_total, node_size),
    )

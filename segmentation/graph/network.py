"""Export a region graph (or the cell graph after merging) to networkx."""

from __future__ import annotations

import networkx
import numpy as np

from segmentation.errors import InputError
from segmentation.graph.region_graph import RegionGraph


def _merged_nodes(graph: RegionGraph, node_labels: np.ndarray):
    """Cell ids, sizes and mean foreground of the cells that ``node_labels`` form."""
    occupied = (graph.node_size > 0) & (node_labels != 0)
    cells, inverse = np.unique(node_labels[occupied], return_inverse=True)
    sizes = np.bincount(inverse, weights=graph.node_size[occupied], minlength=cells.size)
    foreground = None
    if graph.node_foreground is not None:
        weighted = graph.node_foreground[occupied] * graph.node_size[occupied]
        foreground = np.bincount(inverse, weights=weighted, minlength=cells.size) / sizes
    return cells, sizes, foreground


def _merged_edges(graph: RegionGraph, node_labels: np.ndarray):
    """Cell pairs with summed contact area and area-weighted mean boundary."""
    cell_u = node_labels[graph.edges[:, 0]].astype(np.int64)
    cell_v = node_labels[graph.edges[:, 1]].astype(np.int64)
    keep = (cell_u != cell_v) & (cell_u != 0) & (cell_v != 0)
    pairs = np.stack([np.minimum(cell_u, cell_v), np.maximum(cell_u, cell_v)], axis=1)[keep]
    pairs, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    area = graph.contact_area[keep]
    summed_area = np.bincount(inverse, weights=area, minlength=len(pairs))
    summed_boundary = np.bincount(
        inverse, weights=graph.mean_boundary[keep] * area, minlength=len(pairs)
    )
    return pairs, summed_boundary / np.maximum(summed_area, 1e-12), summed_area


def to_networkx(graph: RegionGraph, node_labels: np.ndarray | None = None) -> networkx.Graph:
    """Region graph as a :class:`networkx.Graph`.

    Without ``node_labels`` the nodes are the non-empty super-pixels. With ``node_labels``
    (a cell label per node, 0 = background, dropped) the nodes are cells and each edge
    aggregates the super-pixel edges between two cells: ``contact_area`` summed and
    ``mean_boundary`` averaged weighted by contact area.

    Node attributes: ``size`` (voxels) and, when the graph has it, ``foreground`` (mean
    foreground probability). Edge attributes: ``mean_boundary``, ``contact_area``.

    Parameters
    ----------
    graph : RegionGraph
    node_labels : ndarray of int, shape (n_nodes,), optional

    Returns
    -------
    networkx.Graph
    """
    if node_labels is None:
        node_labels = np.arange(graph.n_nodes)
    node_labels = np.asarray(node_labels)
    if node_labels.shape != (graph.n_nodes,):
        raise InputError(
            f"node_labels must have one entry per node ({graph.n_nodes}), got {node_labels.shape}"
        )
    cells, sizes, foreground = _merged_nodes(graph, node_labels)
    pairs, mean_boundary, contact_area = _merged_edges(graph, node_labels)
    result = networkx.Graph()
    for index, cell in enumerate(cells.tolist()):
        attributes = {"size": int(sizes[index])}
        if foreground is not None:
            attributes["foreground"] = float(foreground[index])
        result.add_node(int(cell), **attributes)
    result.add_edges_from(
        (int(u), int(v), {"mean_boundary": float(boundary), "contact_area": float(area)})
        for (u, v), boundary, area in zip(pairs.tolist(), mean_boundary, contact_area, strict=True)
    )
    return result

"""Region adjacency graph of a super-pixel volume with boundary and size features."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from segmentation.errors import InputError

_LABEL_DTYPES = (np.uint32, np.uint64, np.int32, np.int64)

#: Columns of :attr:`RegionGraph.face_statistics`: sums over each face's voxel pairs.
FACE_STATISTICS = ("boundary_squared", "above_half", "above_high", "along_z", "foreground")
#: Boundary probabilities above which a face voxel pair counts in "above_high".
HIGH_BOUNDARY = 0.9


@dataclass(frozen=True)
class RegionGraph:
    """Super-pixels as nodes, touching pairs as edges.

    Node ``i`` is super-pixel label ``i`` (ids ``0 .. n_nodes - 1``). Label 0 is not a
    super-pixel: it marks voxels outside the segmented region, so node 0 has no edges and
    every partition maps it to cell 0 (background). Super-pixels from
    :func:`segmentation.watershed.distance_transform_watershed` start at 1.

    Attributes
    ----------
    n_nodes : int
        Number of node ids (largest super-pixel label + 1).
    edges : ndarray of int64, shape (n_edges, 2)
        Touching super-pixel pairs ``(u, v)`` with ``0 < u < v``, sorted.
    mean_boundary : ndarray of float64, shape (n_edges,)
        Mean boundary probability over the contact face: the average over all face voxel
        pairs of the larger of the two voxels' probabilities. (The larger, not the mean: a
        boundary between Z planes is drawn on one side of the face only, see the
        "anisotropic" training targets, and the mean of both sides would halve it.)
    contact_area : ndarray of float64, shape (n_edges,)
        Number of face voxel pairs (6-connected neighbours with one voxel in each
        super-pixel).
    node_size : ndarray of int64, shape (n_nodes,)
        Voxels per super-pixel.
    node_foreground : ndarray of float64, shape (n_nodes,), or None
        Mean foreground probability per super-pixel (NaN for empty ids), if given.
    face_statistics : ndarray of float64, shape (n_edges, len(FACE_STATISTICS)), or None
        Per edge, sums over its face voxel pairs of the columns named in
        :data:`FACE_STATISTICS` (the pair's larger boundary probability squared, whether
        it is above 0.5 and above 0.9, whether the pair lies along Z, the pair's smaller
        foreground probability); the features of
        :mod:`segmentation.graph.edge_classifier`. None when built without them.
    node_boundary : ndarray of float64, shape (n_nodes,), or None
        Mean boundary probability inside each super-pixel (NaN for empty ids).
    """

    n_nodes: int
    edges: np.ndarray
    mean_boundary: np.ndarray
    contact_area: np.ndarray
    node_size: np.ndarray
    node_foreground: np.ndarray | None = None
    face_statistics: np.ndarray | None = None
    node_boundary: np.ndarray | None = None

    def with_edges(self, keep: np.ndarray) -> RegionGraph:
        """The same graph with only the edges where ``keep`` is True."""
        return replace(
            self,
            edges=self.edges[keep],
            mean_boundary=self.mean_boundary[keep],
            contact_area=self.contact_area[keep],
            face_statistics=None if self.face_statistics is None else self.face_statistics[keep],
        )

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return int(self.edges.shape[0])


def _as_label_volume(superpixels: np.ndarray) -> np.ndarray:
    labels = np.asarray(superpixels)
    if labels.ndim not in (2, 3) or labels.size == 0:
        raise InputError(f"superpixels must be a non-empty 2D or 3D array, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"superpixels must be integer labels, got {labels.dtype}")
    if labels.dtype.type not in _LABEL_DTYPES:
        if np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
            raise InputError("superpixels must not contain negative labels")
        labels = labels.astype(np.uint32 if labels.max() < 2**32 else np.uint64)
    return np.ascontiguousarray(labels)


def _check_same_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise InputError(f"{name} shape {array.shape} differs from superpixels shape {shape}")
    return array


def face_columns(
    boundary_low: np.ndarray,
    boundary_high: np.ndarray,
    foreground_low: np.ndarray | None,
    foreground_high: np.ndarray | None,
    along_z: bool,
) -> np.ndarray:
    """Per face voxel pair: its value (the larger boundary probability) and the
    :data:`FACE_STATISTICS` columns, shape (n_pairs, 1 + len(FACE_STATISTICS))."""
    value = np.maximum(boundary_low, boundary_high).astype(np.float64)
    columns = np.empty((value.size, 1 + len(FACE_STATISTICS)))
    columns[:, 0] = value
    columns[:, 1] = value * value
    columns[:, 2] = value > 0.5
    columns[:, 3] = value > HIGH_BOUNDARY
    columns[:, 4] = along_z
    if foreground_low is None or foreground_high is None:
        columns[:, 5] = 0.0
    else:
        columns[:, 5] = np.minimum(foreground_low, foreground_high)
    return columns


def summed_by_key(
    keys: np.ndarray, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique keys, the number of rows of each and the column sums of its rows."""
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, minlength=unique.size).astype(np.float64)
    sums = np.stack(
        [np.bincount(inverse, weights=column, minlength=unique.size) for column in columns.T],
        axis=1,
    )
    return unique, counts, sums


def _face_features(
    labels: np.ndarray, boundary: np.ndarray, foreground: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Touching label pairs, their mean face boundary probability, face count and
    :data:`FACE_STATISTICS` sums.

    Every pair of 6-connected (4-connected in 2D) voxels with two different non-zero labels
    is one face; its value is the larger of the two voxels' boundary probabilities.
    """
    n_labels = int(labels.max()) + 1 if labels.size else 1
    keys, columns = [], []
    for axis in range(labels.ndim):
        low = np.moveaxis(labels, axis, 0)[:-1]
        high = np.moveaxis(labels, axis, 0)[1:]
        face = (low != high) & (low != 0) & (high != 0)
        first = low[face].astype(np.int64)
        second = high[face].astype(np.int64)
        keys.append(np.minimum(first, second) * n_labels + np.maximum(first, second))
        along = np.moveaxis(boundary, axis, 0)
        fore = None if foreground is None else np.moveaxis(foreground, axis, 0)
        columns.append(
            face_columns(
                along[:-1][face],
                along[1:][face],
                None if fore is None else fore[:-1][face],
                None if fore is None else fore[1:][face],
                along_z=labels.ndim == 3 and axis == 0,
            )
        )
    all_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    if all_keys.size == 0:
        empty = np.zeros((0, len(FACE_STATISTICS)))
        return np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0), empty
    unique, area, sums = summed_by_key(all_keys, np.concatenate(columns))
    edges = np.stack([unique // n_labels, unique % n_labels], axis=1)
    return edges, sums[:, 0] / area, area, sums[:, 1:]


def region_graph(
    superpixels: np.ndarray,
    boundary_probability: np.ndarray,
    foreground_probability: np.ndarray | None = None,
) -> RegionGraph:
    """Build the region adjacency graph of ``superpixels`` with boundary features.

    Parameters
    ----------
    superpixels : ndarray of int, shape (Z, Y, X) or (Y, X)
        Over-segmentation; 0 = outside the segmented region (no node edges).
    boundary_probability : ndarray of float, same shape
        Boundary probability; each contact face gets the mean over its voxel pairs of the
        larger value of the pair.
    foreground_probability : ndarray of float, same shape, optional
        Foreground probability averaged over each super-pixel.

    Returns
    -------
    RegionGraph
    """
    labels = _as_label_volume(superpixels)
    boundary = _check_same_shape("boundary_probability", boundary_probability, labels.shape)
    foreground = None
    if foreground_probability is not None:
        foreground = _check_same_shape(
            "foreground_probability", foreground_probability, labels.shape
        )
    edges, mean_boundary, contact_area, face_statistics = _face_features(
        labels, boundary, foreground
    )
    n_nodes = int(labels.max()) + 1 if labels.size else 1
    flat = labels.ravel()
    node_size = np.bincount(flat, minlength=n_nodes).astype(np.int64)
    node_foreground = None
    if foreground is not None:
        node_foreground = node_means(
            np.bincount(flat, weights=foreground.ravel(), minlength=n_nodes), node_size
        )
    return RegionGraph(
        n_nodes=n_nodes,
        edges=edges,
        mean_boundary=mean_boundary,
        contact_area=contact_area,
        node_size=node_size,
        node_foreground=node_foreground,
        face_statistics=face_statistics,
        node_boundary=node_means(
            np.bincount(flat, weights=boundary.ravel(), minlength=n_nodes), node_size
        ),
    )


def node_means(totals: np.ndarray, node_size: np.ndarray) -> np.ndarray:
    """``totals / node_size`` per node, NaN for empty node ids."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(node_size > 0, totals / node_size, np.nan)


def separate_background(
    graph: RegionGraph, foreground_threshold: float
) -> tuple[RegionGraph, np.ndarray]:
    """Cut every edge that joins a background super-pixel to any other.

    A super-pixel is background when its mean foreground probability is below
    ``foreground_threshold``. Partitioning the returned graph can then never merge a cell
    with background (such as the rachis) into one segment that is later dropped as
    background as a whole, or kept with the background glued on.

    Parameters
    ----------
    graph : RegionGraph
        Graph with ``node_foreground``.
    foreground_threshold : float
        Mean foreground probability below which a super-pixel is background.

    Returns
    -------
    RegionGraph
        The graph without the edges that touch background nodes.
    ndarray of bool, shape (n_nodes,)
        True for background nodes (empty node ids included).
    """
    if graph.node_foreground is None:
        raise InputError("separate_background needs a graph built with foreground_probability")
    foreground = np.nan_to_num(graph.node_foreground, nan=0.0)
    background = (foreground < foreground_threshold) | (graph.node_size == 0)
    keep = ~(background[graph.edges[:, 0]] | background[graph.edges[:, 1]])
    return graph.with_edges(keep), background


def project_node_labels(superpixels: np.ndarray, node_labels: np.ndarray) -> np.ndarray:
    """Paint each super-pixel with the label of its node: ``node_labels[superpixels]``.

    Parameters
    ----------
    superpixels : ndarray of int
        The over-segmentation the graph was built from.
    node_labels : ndarray of int, shape (n_nodes,)
        Cell label per node (0 = background).

    Returns
    -------
    ndarray
        Cell labels per voxel, dtype of ``node_labels``.
    """
    node_labels = np.asarray(node_labels)
    labels = np.asarray(superpixels)
    if node_labels.ndim != 1:
        raise InputError(f"node_labels must be 1D, got shape {node_labels.shape}")
    if labels.size and int(labels.max()) >= node_labels.shape[0]:
        raise InputError(
            f"superpixels contain label {int(labels.max())} but node_labels has only "
            f"{node_labels.shape[0]} entries; pass the labels of the graph built from them"
        )
    return node_labels[labels]


def cell_neighbours(graph: RegionGraph, node_labels: np.ndarray) -> dict[int, list[int]]:
    """Touching cells per cell after merging super-pixels into cells.

    Parameters
    ----------
    graph : RegionGraph
    node_labels : ndarray of int, shape (n_nodes,)
        Cell label per node; 0 = background, excluded from the result.

    Returns
    -------
    dict of int to list of int
        For every cell label present among non-empty nodes, the sorted labels of the other
        cells it shares a face with.
    """
    node_labels = np.asarray(node_labels)
    if node_labels.shape != (graph.n_nodes,):
        raise InputError(
            f"node_labels must have one entry per node ({graph.n_nodes}), got {node_labels.shape}"
        )
    cells = np.unique(node_labels[graph.node_size > 0])
    neighbours: dict[int, list[int]] = {int(cell): [] for cell in cells if cell != 0}
    cell_u = node_labels[graph.edges[:, 0]]
    cell_v = node_labels[graph.edges[:, 1]]
    keep = (cell_u != cell_v) & (cell_u != 0) & (cell_v != 0)
    pairs = np.stack([cell_u[keep], cell_v[keep]], axis=1)
    pairs = np.unique(np.concatenate([pairs, pairs[:, ::-1]]), axis=0)
    for cell, other in pairs.tolist():
        neighbours.setdefault(int(cell), []).append(int(other))
    return neighbours

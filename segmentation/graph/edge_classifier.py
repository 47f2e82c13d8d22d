"""A learned merge probability for each region-graph edge.

The mean boundary probability on a face is a weak signal where the network's boundary map
is faint or grainy: on the held-out phantoms the best partition of the watershed's
super-pixels (each given to the true cell it overlaps most) scores F1@0.5 0.85, the
partition by mean boundary 0.69. A small multilayer perceptron on per-edge features of
the face (boundary statistics, its orientation along Z, the foreground along it) and of
the two super-pixels (sizes, foreground, boundary inside) predicts whether the two belong
to one cell; ``1 - merge probability`` then replaces the mean boundary as the weight that
agglomeration or multicut cut at ``cutoff``, as in the learned edge probabilities of
multicut pipelines (ilastik, PlantSeg).

The classifier is part of a model's card (``edge_classifier``): it is trained on that
network's outputs (:mod:`segmentation.training.edge_classifier`) and runs in NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation.errors import InputError
from segmentation.graph.region_graph import FACE_STATISTICS, RegionGraph

if TYPE_CHECKING:
    from segmentation.model import ModelCard

#: The features :func:`edge_features` computes, in its column order.
EDGE_FEATURES = (
    "mean_boundary",
    "face_std",
    "face_above_half",
    "face_above_high",
    "z_fraction",
    "log_area",
    "log_size_min",
    "log_size_max",
    "foreground_min",
    "foreground_max",
    "interior_boundary_min",
    "interior_boundary_max",
    "relative_area",
    "face_foreground",
)


def _column(graph: RegionGraph, name: str) -> np.ndarray:
    assert graph.face_statistics is not None
    return graph.face_statistics[:, FACE_STATISTICS.index(name)]


def has_edge_features(graph: RegionGraph) -> bool:
    """Whether ``graph`` carries what :func:`edge_features` needs (foreground included)."""
    return (
        graph.face_statistics is not None
        and graph.node_boundary is not None
        and graph.node_foreground is not None
    )


def edge_features(graph: RegionGraph) -> np.ndarray:
    """Per-edge features (n_edges, len(EDGE_FEATURES)) of a region graph.

    Parameters
    ----------
    graph : RegionGraph
        Built with a foreground probability (:func:`~segmentation.graph.region_graph` or
        its blockwise counterpart), so that it has face statistics.

    Returns
    -------
    ndarray of float64
        Columns as named in :data:`EDGE_FEATURES`: the face's mean boundary, its standard
        deviation, the fractions of face voxel pairs above 0.5 and above 0.9, the fraction
        along Z, log contact area, log sizes of the smaller and the larger super-pixel,
        their smaller and larger mean foreground and mean boundary inside, the contact
        area over the smaller size to the power 2/3, and the face's mean foreground.
    """
    if not has_edge_features(graph):
        raise InputError("edge features need a region graph built with a foreground probability")
    assert graph.node_boundary is not None and graph.node_foreground is not None
    area = np.maximum(graph.contact_area, 1.0)
    mean = graph.mean_boundary
    variance = _column(graph, "boundary_squared") / area - mean**2
    u, v = graph.edges[:, 0], graph.edges[:, 1]
    size = np.maximum(graph.node_size.astype(np.float64), 1.0)
    foreground = np.nan_to_num(graph.node_foreground, nan=0.0)
    interior = np.nan_to_num(graph.node_boundary, nan=0.0)
    smaller = np.minimum(size[u], size[v])
    return np.stack(
        [
            mean,
            np.sqrt(np.maximum(variance, 0.0)),
            _column(graph, "above_half") / area,
            _column(graph, "above_high") / area,
            _column(graph, "along_z") / area,
            np.log(area),
            np.log(smaller),
            np.log(np.maximum(size[u], size[v])),
            np.minimum(foreground[u], foreground[v]),
            np.maximum(foreground[u], foreground[v]),
            np.minimum(interior[u], interior[v]),
            np.maximum(interior[u], interior[v]),
            area / smaller ** (2.0 / 3.0),
            _column(graph, "foreground") / area,
        ],
        axis=1,
    )


@dataclass(frozen=True)
class EdgeClassifier:
    """A multilayer perceptron (ReLU between layers) from edge features to a merge logit.

    Attributes
    ----------
    feature_names : tuple of str
        The features it reads, a subset of :data:`EDGE_FEATURES` in any order.
    mean, scale : ndarray of float64, shape (n_features,)
        Standardisation of the features: ``(x - mean) / scale``.
    layers : tuple of (weight, bias)
        ``weight`` (out, in) and ``bias`` (out,) per layer; the last layer has one output.
    """

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def __post_init__(self) -> None:
        unknown = [name for name in self.feature_names if name not in EDGE_FEATURES]
        if unknown:
            raise InputError(f"edge classifier reads unknown features {unknown}")
        width = len(self.feature_names)
        for weight, bias in self.layers:
            if weight.ndim != 2 or weight.shape[1] != width or bias.shape != (weight.shape[0],):
                raise InputError("edge classifier layers do not fit together")
            width = weight.shape[0]
        if not self.layers or width != 1:
            raise InputError("edge classifier must end in one output")

    def merge_probability(self, features: np.ndarray) -> np.ndarray:
        """Probability that each edge joins two parts of one cell.

        Parameters
        ----------
        features : ndarray, shape (n_edges, len(EDGE_FEATURES))
            From :func:`edge_features`.
        """
        columns = [EDGE_FEATURES.index(name) for name in self.feature_names]
        hidden = (np.asarray(features, dtype=np.float64)[:, columns] - self.mean) / self.scale
        for index, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight.T + bias
            if index < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0.0)
        return 1.0 / (1.0 + np.exp(-np.clip(hidden[:, 0], -60.0, 60.0)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in a model card."""
        return {
            "features": list(self.feature_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.layers],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EdgeClassifier:
        """The classifier :meth:`to_dict` wrote."""
        try:
            return cls(
                feature_names=tuple(values["features"]),
                mean=np.asarray(values["mean"], dtype=np.float64),
                scale=np.asarray(values["scale"], dtype=np.float64),
                layers=tuple(
                    (
                        np.asarray(layer["weight"], dtype=np.float64),
                        np.asarray(layer["bias"], dtype=np.float64),
                    )
                    for layer in values["layers"]
                ),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"the model card's edge classifier is malformed: {error}") from error


def card_edge_classifier(card: ModelCard) -> EdgeClassifier | None:
    """The learned edge weights a model card holds, or None."""
    return None if card.edge_classifier is None else EdgeClassifier.from_dict(card.edge_classifier)


def with_learned_weights(graph: RegionGraph, classifier: EdgeClassifier) -> RegionGraph:
    """``graph`` with each edge's ``mean_boundary`` replaced by ``1 - merge probability``.

    Partitioning (:func:`~segmentation.graph.partition`) then cuts the edges whose merge
    probability is below ``1 - cutoff``; the other fields stay as they are.
    """
    if graph.n_edges == 0:
        return graph
    merge = classifier.merge_probability(edge_features(graph))
    return replace(graph, mean_boundary=1.0 - merge)


def merge_targets(superpixels: np.ndarray, labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Training targets: whether both super-pixels of each edge belong to one true cell.

    Each super-pixel belongs to the true label it overlaps most (0: background); an edge
    is a merge when both ends belong to the same cell other than 0.

    Parameters
    ----------
    superpixels : ndarray of int
        The over-segmentation the graph was built from.
    labels : ndarray of int, same shape
        True cells, 0 = background.
    edges : ndarray of int, shape (n_edges, 2)
        The graph's edges.

    Returns
    -------
    ndarray of bool, shape (n_edges,)
    """
    superpixels = np.asarray(superpixels)
    labels = np.asarray(labels)
    if superpixels.shape != labels.shape:
        raise InputError(f"labels {labels.shape} must match the super-pixels {superpixels.shape}")
    n_nodes = int(superpixels.max()) + 1
    _, cells = np.unique(labels, return_inverse=True)
    cells = cells.reshape(labels.shape)
    n_cells = int(cells.max()) + 1
    joint = np.bincount(
        superpixels.ravel().astype(np.int64) * n_cells + cells.ravel(),
        minlength=n_nodes * n_cells,
    ).reshape(n_nodes, n_cells)
    values = np.unique(labels)
    owner = values[joint.argmax(axis=1)]
    first, second = owner[edges[:, 0]], owner[edges[:, 1]]
    return (first == second) & (first != 0)

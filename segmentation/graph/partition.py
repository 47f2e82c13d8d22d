"""Partition a region graph into cells: average-linkage agglomeration or multicut."""

from __future__ import annotations

import logging

import bioimage_cpp.graph
import numpy as np
from bioimage_cpp.graph.agglomeration import GaspClusterPolicy
from bioimage_cpp.graph.multicut import (
    GreedyAdditiveMulticut,
    KernighanLinMulticut,
    MulticutObjective,
)

from segmentation.errors import InputError
from segmentation.graph.edge_classifier import (
    EdgeClassifier,
    has_edge_features,
    with_learned_weights,
)
from segmentation.graph.region_graph import RegionGraph, separate_background
from segmentation.parameters import DEFAULT_CUTOFF

logger = logging.getLogger(__name__)

#: Boundary probabilities are clipped to this distance from 0 and 1 before taking logs.
PROBABILITY_EPSILON = 0.001
MULTICUT_SOLVERS = ("kernighan-lin", "greedy-additive")
PARTITION_METHODS = ("agglomeration", "multicut")


def _check_cutoff(cutoff: float) -> float:
    cutoff = float(cutoff)
    if not 0.0 < cutoff < 1.0:
        raise InputError(f"cutoff must be strictly between 0 and 1, got {cutoff}")
    return cutoff


def _graph(graph: RegionGraph) -> bioimage_cpp.graph.UndirectedGraph:
    return bioimage_cpp.graph.UndirectedGraph.from_unique_edges(
        graph.n_nodes, graph.edges.astype(np.uint64)
    )


def _cell_labels(graph: RegionGraph, clusters: np.ndarray) -> np.ndarray:
    """Consecutive cell labels 1..K per node from arbitrary cluster ids; empty nodes get 0."""
    clusters = np.asarray(clusters, dtype=np.int64)
    occupied = graph.node_size > 0
    _, inverse = np.unique(clusters[occupied], return_inverse=True)
    labels = np.zeros(graph.n_nodes, dtype=np.uint32)
    labels[occupied] = inverse.astype(np.uint32) + 1
    return labels


def agglomerate(graph: RegionGraph, cutoff: float = DEFAULT_CUTOFF) -> np.ndarray:
    """Average-linkage agglomeration of super-pixels into cells.

    Repeatedly merges the two clusters whose shared boundary has the lowest mean
    probability (contact-area weighted over all their super-pixel faces) and stops when the
    weakest remaining boundary is above ``cutoff``. Runs bioimage-cpp's GASP with mean
    linkage on the signed weights ``cutoff - mean_boundary``, which gives the same
    partition as a heap-based average linkage.

    Parameters
    ----------
    graph : RegionGraph
    cutoff : float
        Boundary probability in (0, 1) above which two clusters stay separate.

    Returns
    -------
    ndarray of uint32, shape (n_nodes,)
        Cell label 1..K per node; 0 for empty node ids (such as node 0).
    """
    cutoff = _check_cutoff(cutoff)
    if graph.n_edges == 0:
        return _cell_labels(graph, np.arange(graph.n_nodes))
    clusters = GaspClusterPolicy(linkage="mean").optimize(
        _graph(graph),
        cutoff - graph.mean_boundary.astype(np.float64),
        edge_sizes=graph.contact_area.astype(np.float64),
    )
    return _cell_labels(graph, clusters)


def probabilities_to_costs(
    mean_boundary: np.ndarray,
    contact_area: np.ndarray,
    cutoff: float = DEFAULT_CUTOFF,
    weighting_exponent: float = 1.0,
) -> np.ndarray:
    """Multicut edge costs from boundary probabilities; positive = merge.

    ``p`` is clipped to ``[0.001, 0.999]`` and
    ``cost = log((1 - p) / p) - log((1 - cutoff) / cutoff)``, so a boundary with
    ``p == cutoff`` costs 0, ``p < cutoff`` is attractive and ``p > cutoff`` repulsive.
    Costs are then scaled by ``(contact_area / contact_area.max()) ** weighting_exponent``.

    Parameters
    ----------
    mean_boundary, contact_area : ndarray, shape (n_edges,)
    cutoff : float
        Boundary probability in (0, 1) at which an edge is neutral.
    weighting_exponent : float
        Exponent of the contact-area weighting; 0 disables it.

    Returns
    -------
    ndarray of float64, shape (n_edges,)
    """
    cutoff = _check_cutoff(cutoff)
    probability = np.clip(
        np.asarray(mean_boundary, dtype=np.float64), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON
    )
    costs = np.log((1 - probability) / probability) - np.log((1 - cutoff) / cutoff)
    area = np.asarray(contact_area, dtype=np.float64)
    if area.size and area.max() > 0:
        costs *= (area / area.max()) ** weighting_exponent
    return costs


def multicut(
    graph: RegionGraph,
    cutoff: float = DEFAULT_CUTOFF,
    *,
    solver: str = "kernighan-lin",
    weighting_exponent: float = 1.0,
) -> np.ndarray:
    """Multicut partition of super-pixels into cells.

    Edge costs come from :func:`probabilities_to_costs`. ``"greedy-additive"`` runs greedy
    additive edge contraction (GAEC); ``"kernighan-lin"`` refines the GAEC solution with
    Kernighan-Lin moves (as elf's ``multicut_kernighan_lin`` does).

    Parameters
    ----------
    graph : RegionGraph
    cutoff : float
        Boundary probability in (0, 1) at which merging and cutting cost the same.
    solver : {"kernighan-lin", "greedy-additive"}
    weighting_exponent : float
        Exponent of the contact-area weighting of the costs.

    Returns
    -------
    ndarray of uint32, shape (n_nodes,)
        Cell label 1..K per node; 0 for empty node ids (such as node 0).
    """
    if solver not in MULTICUT_SOLVERS:
        raise InputError(f"unknown multicut solver {solver!r}; use one of {MULTICUT_SOLVERS}")
    costs = probabilities_to_costs(
        graph.mean_boundary, graph.contact_area, cutoff, weighting_exponent
    )
    if graph.n_edges == 0:
        return _cell_labels(graph, np.arange(graph.n_nodes))
    undirected = _graph(graph)
    clusters = GreedyAdditiveMulticut().optimize(MulticutObjective(undirected, costs))
    if solver == "kernighan-lin":
        objective = MulticutObjective(undirected, costs, initial_labels=clusters)
        clusters = KernighanLinMulticut().optimize(objective)
    return _cell_labels(graph, clusters)


def partition(
    graph: RegionGraph,
    cutoff: float = DEFAULT_CUTOFF,
    method: str = "agglomeration",
) -> np.ndarray:
    """Partition super-pixels into cells with ``method`` ("agglomeration" or "multicut").

    Returns
    -------
    ndarray of uint32, shape (n_nodes,)
        Cell label 1..K per node; 0 for empty node ids.
    """
    if method == "agglomeration":
        labels = agglomerate(graph, cutoff)
    elif method == "multicut":
        labels = multicut(graph, cutoff)
    else:
        raise InputError(f"unknown partition method {method!r}; use one of {PARTITION_METHODS}")
    logger.info("%s: %d super-pixels -> %d cells", method, graph.n_nodes - 1, labels.max())
    return labels


def partition_cells(
    graph: RegionGraph,
    *,
    cutoff: float = DEFAULT_CUTOFF,
    method: str = "agglomeration",
    foreground_threshold: float | None = None,
    edge_classifier: EdgeClassifier | None = None,
) -> np.ndarray:
    """Cell label per node: :func:`partition` with background kept apart and learned weights.

    Parameters
    ----------
    graph : RegionGraph
    cutoff, method
        As for :func:`partition`.
    foreground_threshold : float, optional
        With a graph that has ``node_foreground``: super-pixels below it are background
        (:func:`~segmentation.graph.separate_background`), never merged, and labelled 0.
    edge_classifier : EdgeClassifier, optional
        Weights the edges by ``1 - merge probability``
        (:func:`~segmentation.graph.edge_classifier.with_learned_weights`) instead of the
        mean boundary; used only where the graph has the features it needs.

    Returns
    -------
    ndarray of uint32, shape (n_nodes,)
    """
    background = None
    if foreground_threshold is not None and graph.node_foreground is not None:
        graph, background = separate_background(graph, foreground_threshold)
    if edge_classifier is not None:
        if has_edge_features(graph):
            graph = with_learned_weights(graph, edge_classifier)
        else:
            logger.info("the graph has no foreground features: edges weighted by boundary")
    labels = partition(graph, cutoff=cutoff, method=method)
    if background is not None:
        labels[background] = 0
    return labels

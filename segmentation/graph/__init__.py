"""Region adjacency graph of super-pixels and its partition into cells."""

from __future__ import annotations

from segmentation.graph.edge_classifier import (
    EDGE_FEATURES,
    EdgeClassifier,
    card_edge_classifier,
    edge_features,
    merge_targets,
)
from segmentation.graph.network import to_networkx
from segmentation.graph.partition import (
    agglomerate,
    multicut,
    partition,
    partition_cells,
    probabilities_to_costs,
)
from segmentation.graph.region_graph import (
    RegionGraph,
    cell_neighbours,
    project_node_labels,
    region_graph,
    separate_background,
)

__all__ = [
    "EDGE_FEATURES",
    "EdgeClassifier",
    "RegionGraph",
    "agglomerate",
    "card_edge_classifier",
    "cell_neighbours",
    "edge_features",
    "merge_targets",
    "multicut",
    "partition",
    "partition_cells",
    "probabilities_to_costs",
    "project_node_labels",
    "region_graph",
    "separate_background",
    "to_networkx",
]

"""Region adjacency graph of super-pixels and its partition into cells."""

from __future__ import annotations

from segmentation.graph.network import to_networkx
from segmentation.graph.partition import agglomerate, multicut, partition, probabilities_to_costs
from segmentation.graph.region_graph import (
    RegionGraph,
    cell_neighbours,
    project_node_labels,
    region_graph,
    separate_background,
)

__all__ = [
    "RegionGraph",
    "agglomerate",
    "cell_neighbours",
    "multicut",
    "partition",
    "probabilities_to_costs",
    "project_node_labels",
    "region_graph",
    "separate_background",
    "to_networkx",
]

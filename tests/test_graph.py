"""Tests of the region adjacency graph and its partitions."""

from __future__ import annotations

import networkx
import numpy as np
import pytest

from segmentation.errors import InputError
from segmentation.graph import (
    RegionGraph,
    agglomerate,
    cell_neighbours,
    multicut,
    partition,
    probabilities_to_costs,
    project_node_labels,
    region_graph,
    separate_background,
    to_networkx,
)
from segmentation.parameters import SegmentationParameters
from segmentation.pipeline import BoundaryPrediction, cells_from_superpixels
from segmentation.watershed import distance_transform_watershed


def two_cubes() -> tuple[np.ndarray, np.ndarray]:
    """Two 6x6x6 cubes touching along X, with a boundary plane of 0.8 / 0.6 on the face."""
    superpixels = np.ones((6, 6, 12), dtype=np.uint32)
    superpixels[:, :, 6:] = 2
    boundary = np.zeros(superpixels.shape, dtype=np.float32)
    boundary[:, :, 5] = 0.8
    boundary[:, :, 6] = 0.6
    return superpixels, boundary


def chain_graph(mean_boundary, contact_area=None) -> RegionGraph:
    """Super-pixels 1 - 2 - 3 - ... in a chain with the given boundaries (node 0 empty)."""
    mean_boundary = np.asarray(mean_boundary, dtype=np.float64)
    n_edges = mean_boundary.size
    if contact_area is None:
        contact_area = np.full(n_edges, 10.0)
    nodes = np.arange(1, n_edges + 1)
    return RegionGraph(
        n_nodes=n_edges + 2,
        edges=np.stack([nodes, nodes + 1], axis=1).astype(np.int64),
        mean_boundary=mean_boundary,
        contact_area=np.asarray(contact_area, dtype=np.float64),
        node_size=np.r_[0, np.full(n_edges + 1, 100)].astype(np.int64),
    )


def test_two_cubes_give_one_edge_with_mean_and_area():
    superpixels, boundary = two_cubes()
    foreground = np.zeros(superpixels.shape, dtype=np.float32)
    foreground[:, :, 6:] = 1.0
    graph = region_graph(superpixels, boundary, foreground)
    assert graph.n_nodes == 3
    assert graph.edges.tolist() == [[1, 2]]
    assert graph.mean_boundary[0] == pytest.approx(0.8)  # the larger side of each face pair
    assert graph.contact_area[0] == 36
    assert graph.node_size.tolist() == [0, 216, 216]
    assert graph.node_foreground[1:].tolist() == [0.0, 1.0]


def test_one_sided_boundary_between_planes_counts_in_full():
    """A boundary between Z planes is drawn on one side of the face (anisotropic targets):
    the face must read as boundary, not as the mean of boundary and interior."""
    superpixels = np.ones((6, 8, 8), dtype=np.uint32)
    superpixels[3:] = 2
    boundary = np.full(superpixels.shape, 0.1, dtype=np.float32)
    boundary[2] = 0.9  # only the plane below the face
    graph = region_graph(superpixels, boundary)
    assert graph.edges.tolist() == [[1, 2]]
    assert graph.mean_boundary[0] == pytest.approx(0.9)
    assert graph.contact_area[0] == 64
    assert agglomerate(graph, 0.5)[1] != agglomerate(graph, 0.5)[2]


def test_graph_on_labels_with_gaps_and_in_2d():
    superpixels = np.array([[1, 1, 0, 3], [1, 1, 0, 3], [4, 4, 4, 3]], dtype=np.uint32)
    boundary = np.arange(superpixels.size, dtype=np.float32).reshape(superpixels.shape) / 20
    graph = region_graph(superpixels, boundary)
    assert graph.n_nodes == 5
    assert graph.edges.tolist() == [[1, 4], [3, 4]]
    # faces 1|4: (1,0)-(2,0) and (1,1)-(2,1): max values 8/20 and 9/20
    assert graph.mean_boundary[0] == pytest.approx(8.5 / 20)
    assert graph.contact_area.tolist() == [2, 1]
    assert graph.node_size.tolist() == [2, 4, 0, 3, 3]


def test_watershed_then_graph_on_bright_plane():
    boundary = np.zeros((8, 24, 40), dtype=np.float32)
    boundary[:, :, 19:21] = 1.0
    superpixels = distance_transform_watershed(boundary, footprint=15)
    graph = region_graph(superpixels, boundary)
    assert graph.n_edges == 1
    assert graph.mean_boundary[0] > 0.9
    assert graph.contact_area[0] == 8 * 24


def test_edges_to_label_zero_are_dropped():
    superpixels, boundary = two_cubes()
    superpixels[:, :, :2] = 0
    graph = region_graph(superpixels, boundary)
    assert graph.edges.tolist() == [[1, 2]]
    assert graph.node_size[0] == 72


def test_agglomeration_merges_weak_and_keeps_strong_boundaries():
    graph = chain_graph([0.2, 0.9, 0.3])
    labels = agglomerate(graph, cutoff=0.5)
    assert labels[0] == 0
    assert labels[1] == labels[2]
    assert labels[2] != labels[3]
    assert labels[3] == labels[4]
    assert sorted(set(labels[1:].tolist())) == [1, 2]


def test_agglomeration_uses_area_weighted_average_linkage():
    # Triangle 1-2-3: 1 and 2 merge (0.1); the merged cluster meets 3 through a strong
    # small face (0.9, area 10) and a weak large face (0.4, area 90): average 0.45 < 0.5.
    graph = RegionGraph(
        n_nodes=4,
        edges=np.array([[1, 2], [1, 3], [2, 3]]),
        mean_boundary=np.array([0.1, 0.9, 0.4]),
        contact_area=np.array([50.0, 10.0, 90.0]),
        node_size=np.array([0, 100, 100, 100]),
    )
    assert np.unique(agglomerate(graph, cutoff=0.5)[1:]).size == 1
    assert np.unique(agglomerate(graph, cutoff=0.42)[1:]).size == 2


@pytest.mark.parametrize("solver", ["kernighan-lin", "greedy-additive"])
def test_multicut_cuts_strong_and_merges_weak_boundaries(solver):
    graph = chain_graph([0.2, 0.9, 0.3])
    labels = multicut(graph, cutoff=0.5, solver=solver)
    assert labels[0] == 0
    assert labels[1] == labels[2] != labels[3] == labels[4]


def test_cost_sign_convention():
    costs = probabilities_to_costs(
        np.array([0.3, 0.3, 0.2, 0.5, 0.0, 1.0]),
        np.ones(6),
        cutoff=0.3,
    )
    assert costs[0] == pytest.approx(0.0)
    assert costs[1] == pytest.approx(0.0)
    assert costs[2] > 0
    assert costs[3] < 0
    assert costs[4] == pytest.approx(np.log(999) - np.log(7 / 3))
    assert costs[5] == pytest.approx(-np.log(999) - np.log(7 / 3))


def test_costs_weighted_by_contact_area():
    costs = probabilities_to_costs(
        np.array([0.1, 0.1]), np.array([5.0, 20.0]), cutoff=0.5, weighting_exponent=2.0
    )
    assert costs[0] == pytest.approx(costs[1] / 16)


def test_multicut_cutoff_controls_merging():
    graph = chain_graph([0.4, 0.4])
    assert np.unique(multicut(graph, cutoff=0.5)[1:]).size == 1
    assert np.unique(multicut(graph, cutoff=0.3)[1:]).size == 3


def test_partition_dispatch_and_errors():
    graph = chain_graph([0.2, 0.9])
    assert np.array_equal(partition(graph, 0.5, "agglomeration"), agglomerate(graph, 0.5))
    assert np.array_equal(partition(graph, 0.5, "multicut"), multicut(graph, 0.5))
    with pytest.raises(InputError):
        partition(graph, 0.5, "watershed")
    with pytest.raises(InputError):
        multicut(graph, 0.5, solver="exact")
    with pytest.raises(InputError):
        agglomerate(graph, 1.5)


def test_project_node_labels():
    superpixels = np.array([[[1, 2], [3, 0]]], dtype=np.uint32)
    projected = project_node_labels(superpixels, np.array([0, 5, 5, 7], dtype=np.uint32))
    assert projected.tolist() == [[[5, 5], [7, 0]]]
    with pytest.raises(InputError):
        project_node_labels(superpixels, np.array([0, 1]))


def test_cell_neighbours_after_merging():
    graph = chain_graph([0.2, 0.9, 0.3, 0.9])
    node_labels = np.array([0, 1, 1, 2, 2, 0])
    assert cell_neighbours(graph, node_labels) == {1: [2], 2: [1]}
    assert cell_neighbours(graph, np.arange(6)) == {1: [2], 2: [1, 3], 3: [2, 4], 4: [3, 5],
                                                    5: [4]}


def test_to_networkx_superpixel_graph():
    superpixels, boundary = two_cubes()
    foreground = np.full(superpixels.shape, 0.25, dtype=np.float32)
    graph = to_networkx(region_graph(superpixels, boundary, foreground))
    assert isinstance(graph, networkx.Graph)
    assert sorted(graph.nodes) == [1, 2]
    assert graph.nodes[1] == {"size": 216, "foreground": pytest.approx(0.25)}
    assert graph.edges[1, 2]["mean_boundary"] == pytest.approx(0.8)
    assert graph.edges[1, 2]["contact_area"] == 36


def test_to_networkx_merged_cell_graph_aggregates_edges():
    graph = RegionGraph(
        n_nodes=4,
        edges=np.array([[1, 2], [1, 3], [2, 3]]),
        mean_boundary=np.array([0.1, 0.9, 0.5]),
        contact_area=np.array([50.0, 10.0, 30.0]),
        node_size=np.array([0, 100, 200, 300]),
        node_foreground=np.array([np.nan, 1.0, 0.4, 0.8]),
    )
    cells = to_networkx(graph, np.array([0, 1, 1, 2]))
    assert sorted(cells.nodes) == [1, 2]
    assert cells.nodes[1]["size"] == 300
    assert cells.nodes[1]["foreground"] == pytest.approx(0.6)
    assert cells.number_of_edges() == 1
    assert cells.edges[1, 2]["contact_area"] == 40
    assert cells.edges[1, 2]["mean_boundary"] == pytest.approx((0.9 * 10 + 0.5 * 30) / 40)


def test_separate_background_cuts_every_edge_of_background_nodes():
    graph = chain_graph([0.1, 0.1, 0.9])  # nodes 1 - 2 - 3 - 4
    foreground = np.array([np.nan, 0.9, 0.2, 0.9, 0.8])
    graph = RegionGraph(**{**graph.__dict__, "node_foreground": foreground})
    separated, background = separate_background(graph, foreground_threshold=0.5)
    np.testing.assert_array_equal(background, [True, False, True, False, False])
    np.testing.assert_array_equal(separated.edges, [[3, 4]])
    np.testing.assert_allclose(separated.mean_boundary, [0.9])
    # without the cut, the weak boundaries through the background node join cells 1 and 3
    assert len(set(agglomerate(graph, 0.5)[1:4])) == 1
    labels = agglomerate(separated, 0.5)
    assert labels[1] != labels[3] and labels[3] != labels[4]


def test_separate_background_needs_foreground():
    with pytest.raises(InputError, match="foreground_probability"):
        separate_background(chain_graph([0.1]), 0.5)


def test_cell_touching_background_without_boundary_survives():
    """A cell whose face to a large background region (such as the rachis) shows no boundary
    is kept: merged with the background it would be dropped as background as a whole."""
    superpixels = np.zeros((4, 20, 40), dtype=np.uint32)
    superpixels[:, :, :10] = 1  # cell
    superpixels[:, :, 10:] = 2  # background, four times the cell's volume
    boundary = np.zeros(superpixels.shape, dtype=np.float32)
    foreground = np.where(superpixels == 1, 0.95, 0.1).astype(np.float32)
    prediction = BoundaryPrediction(boundary, foreground)
    result = cells_from_superpixels(
        superpixels, prediction, SegmentationParameters(min_size=1, cutoff=0.5)
    )
    assert result.n_cells == 1
    np.testing.assert_array_equal(result.labels > 0, superpixels == 1)

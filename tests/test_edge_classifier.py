"""Tests of the learned region-graph edge weights: features, classifier, training, use."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from segmentation.blockwise.blocks import block_grid
from segmentation.blockwise.graph import region_graph_blockwise
from segmentation.blockwise.storage import create_array
from segmentation.errors import InputError
from segmentation.graph import (
    EDGE_FEATURES,
    EdgeClassifier,
    card_edge_classifier,
    edge_features,
    merge_targets,
    partition_cells,
    region_graph,
)
from segmentation.model import default_weights_path, read_card
from segmentation.parameters import SegmentationParameters
from segmentation.pipeline import BoundaryPrediction, segment_from_boundaries
from segmentation.training.edge_classifier import fit_edge_classifier


def _column(name: str) -> int:
    return EDGE_FEATURES.index(name)


def four_boxes():
    """Four super-pixels in a 2 x 2 grid of (Z, X) halves; one bright face along X."""
    superpixels = np.zeros((4, 6, 8), dtype=np.uint32)
    superpixels[:2, :, :4] = 1
    superpixels[:2, :, 4:] = 2
    superpixels[2:, :, :4] = 3
    superpixels[2:, :, 4:] = 4
    boundary = np.full(superpixels.shape, 0.1, dtype=np.float32)
    boundary[:, :, 3] = 0.95  # the face between 1|2 and 3|4, on one side
    foreground = np.full(superpixels.shape, 0.9, dtype=np.float32)
    return superpixels, boundary, foreground


def test_edge_features_describe_each_face():
    superpixels, boundary, foreground = four_boxes()
    graph = region_graph(superpixels, boundary, foreground)
    features = edge_features(graph)
    assert features.shape == (graph.n_edges, len(EDGE_FEATURES))
    edges = [tuple(edge) for edge in graph.edges.tolist()]
    across_x, across_z = edges.index((1, 2)), edges.index((1, 3))
    np.testing.assert_allclose(features[:, _column("mean_boundary")], graph.mean_boundary)
    assert features[across_x, _column("mean_boundary")] == pytest.approx(0.95)
    assert features[across_x, _column("face_above_high")] == 1.0
    assert features[across_z, _column("face_above_half")] == pytest.approx(0.25)  # x = 3 only
    assert features[across_x, _column("z_fraction")] == 0.0
    assert features[across_z, _column("z_fraction")] == 1.0
    assert features[across_z, _column("face_std")] == pytest.approx(np.std([0.1] * 3 + [0.95]))
    assert features[across_x, _column("log_area")] == pytest.approx(np.log(2 * 6))
    assert features[across_x, _column("face_foreground")] == pytest.approx(0.9)
    interior = boundary[superpixels == 1].mean()
    assert features[across_x, _column("interior_boundary_min")] == pytest.approx(
        min(interior, boundary[superpixels == 2].mean())
    )


def test_edge_features_need_the_foreground():
    superpixels, boundary, _ = four_boxes()
    with pytest.raises(InputError, match="foreground"):
        edge_features(region_graph(superpixels, boundary))


def test_blockwise_graph_has_the_in_memory_features(tmp_path):
    rng = np.random.default_rng(4)
    shape = (6, 40, 44)
    superpixels = (rng.integers(0, 3, shape) + 3 * (np.arange(44) // 11)).astype(np.uint32) + 1
    probabilities = rng.random((2, *shape)).astype(np.float32)
    stored = create_array(tmp_path / "superpixels.zarr", shape, np.uint32)
    stored[...] = superpixels
    stored_probabilities = create_array(tmp_path / "probabilities.zarr", (2, *shape), np.float32)
    stored_probabilities[...] = probabilities
    pieces = np.arange(int(superpixels.max()) + 1)
    blockwise = region_graph_blockwise(
        stored, stored_probabilities, block_grid(shape, (4, 16, 20)), pieces
    )
    whole = region_graph(superpixels, probabilities[0], probabilities[1])
    np.testing.assert_array_equal(blockwise.edges, whole.edges)
    np.testing.assert_allclose(edge_features(blockwise), edge_features(whole), rtol=1e-9)


def test_classifier_is_a_perceptron_that_round_trips_through_a_dict():
    weight = np.zeros((1, len(EDGE_FEATURES)))
    weight[0, _column("mean_boundary")] = -10.0
    classifier = EdgeClassifier(
        EDGE_FEATURES,
        np.zeros(len(EDGE_FEATURES)),
        np.ones(len(EDGE_FEATURES)),
        ((weight, np.array([5.0])),),
    )
    features = np.zeros((2, len(EDGE_FEATURES)))
    features[:, _column("mean_boundary")] = [0.1, 0.9]
    expected = 1 / (1 + np.exp(-(5.0 - 10.0 * np.array([0.1, 0.9]))))
    np.testing.assert_allclose(classifier.merge_probability(features), expected)
    again = EdgeClassifier.from_dict(classifier.to_dict())
    np.testing.assert_array_equal(
        again.merge_probability(features), classifier.merge_probability(features)
    )
    with pytest.raises(InputError, match="malformed"):
        EdgeClassifier.from_dict({"features": list(EDGE_FEATURES)})
    with pytest.raises(InputError, match="unknown features"):
        EdgeClassifier(("colour",), np.zeros(1), np.ones(1), ((np.ones((1, 1)), np.zeros(1)),))


def test_learned_weights_decide_what_merges():
    superpixels, boundary, foreground = four_boxes()
    graph = region_graph(superpixels, boundary, foreground)
    weight = np.zeros((1, len(EDGE_FEATURES)))
    weight[0, _column("z_fraction")] = 20.0  # merge across Z, cut across X
    classifier = EdgeClassifier(
        EDGE_FEATURES,
        np.zeros(len(EDGE_FEATURES)),
        np.ones(len(EDGE_FEATURES)),
        ((weight, np.array([-10.0])),),
    )
    by_boundary = partition_cells(graph, cutoff=0.6, foreground_threshold=0.5)
    learned = partition_cells(
        graph, cutoff=0.6, foreground_threshold=0.5, edge_classifier=classifier
    )
    # the boundary mean cuts only the bright X face: 1+3 and 2+4 merge; so do the learned
    assert by_boundary[1] == by_boundary[3] != by_boundary[2] == by_boundary[4]
    assert learned[1] == learned[3] != learned[2] == learned[4]
    # a classifier that cuts across Z instead
    weight[0, _column("z_fraction")] = -20.0
    flipped = replace(classifier, layers=((weight, np.array([10.0])),))
    cut_z = partition_cells(graph, cutoff=0.6, foreground_threshold=0.5, edge_classifier=flipped)
    assert cut_z[1] == cut_z[2] != cut_z[3] == cut_z[4]


def test_merge_targets_follow_the_true_cell_of_most_overlap():
    superpixels, _, _ = four_boxes()
    truth = np.zeros(superpixels.shape, dtype=np.uint16)
    truth[:, :, :4] = 7  # super-pixels 1 and 3 are one cell
    truth[:2, :, 4:] = 9  # 2 is another, 4 is background
    graph = region_graph(superpixels, np.zeros(superpixels.shape, np.float32))
    targets = dict(
        zip(
            map(tuple, graph.edges.tolist()),
            merge_targets(superpixels, truth, graph.edges),
            strict=True,
        )
    )
    assert targets == {(1, 2): False, (1, 3): True, (2, 4): False, (3, 4): False}


def test_fitting_learns_a_separable_rule_deterministically():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, len(EDGE_FEATURES)))
    targets = features[:, _column("mean_boundary")] + 0.5 * features[:, _column("z_fraction")] < 0
    classifier = fit_edge_classifier(features, targets, epochs=200)
    accuracy = ((classifier.merge_probability(features) > 0.5) == targets).mean()
    assert accuracy > 0.95
    again = fit_edge_classifier(features, targets, epochs=200)
    np.testing.assert_array_equal(
        again.merge_probability(features), classifier.merge_probability(features)
    )
    with pytest.raises(InputError, match="both merges and cuts"):
        fit_edge_classifier(features, np.ones(600, bool))


def test_bundled_card_has_learned_edge_weights_that_the_pipeline_uses():
    classifier = card_edge_classifier(read_card(default_weights_path()))
    assert classifier is not None and set(classifier.feature_names) <= set(EDGE_FEATURES)
    superpixels, boundary, foreground = four_boxes()
    prediction = BoundaryPrediction(boundary, foreground, edge_classifier=classifier)
    learned = segment_from_boundaries(prediction, SegmentationParameters(min_size=0))
    plain = segment_from_boundaries(
        replace(prediction, edge_classifier=None), SegmentationParameters(min_size=0)
    )
    chosen = segment_from_boundaries(
        prediction, SegmentationParameters(min_size=0, edge_weights="boundary")
    )
    np.testing.assert_array_equal(chosen.labels, plain.labels)
    assert learned.labels.shape == plain.labels.shape
    with pytest.raises(InputError, match="edge_weights"):
        SegmentationParameters(edge_weights="random")

"""Train the bundled model's learned edge weights and store them in its model card.

For each tuning phantom (seeds 20000-20011, 2 x 25 x 1024 x 1024, never used to train the
network nor to score it) the network predicts (OpenVINO float32), the watershed
over-segments with the default parameters, and every region-graph edge gets its features
and its target (both super-pixels in one true cell). The training part of the real plant
crop (its first 120 X pixels, ``--voxel-size 1,1,1``) adds its edges, weighted
``--plant-weight`` times. A small perceptron is fitted
(:func:`segmentation.training.edge_classifier.fit_edge_classifier`) and written into the
card beside ``--weights`` as ``edge_classifier``, with how it was trained.

Run: ``python weights/train_edge_classifier.py [--cache DIR]`` (about 15 minutes on a
2-core CPU; predictions are cached by weights, seed and shape).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile

from segmentation.graph import edge_features, merge_targets, region_graph
from segmentation.io import Stack, read_stack
from segmentation.model import card_path, default_weights_path, load_model, read_card, write_card
from segmentation.parameters import InferenceParameters, SegmentationParameters
from segmentation.pipeline import BoundaryPrediction, predict, superpixels_from_boundaries
from segmentation.synthetic import make_phantom
from segmentation.training.edge_classifier import fit_edge_classifier

logger = logging.getLogger("train_edge_classifier")

PLANT_TRAINING_X = 120


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def _prediction(stack: Stack, model, cache: Path, key: str) -> BoundaryPrediction:
    path = cache / f"{key}.npz"
    if path.is_file():
        stored = np.load(path)
        return BoundaryPrediction(stored["boundary"], stored["foreground"])
    prediction = predict(stack, model, InferenceParameters(engine="openvino", autocast="none"))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        boundary=prediction.boundary_probability,
        foreground=prediction.foreground_probability,
    )
    return prediction


def _edges(prediction: BoundaryPrediction, labels: np.ndarray, voxel_size, window=...):
    """Features and targets of the default watershed's region graph (over ``window``)."""
    superpixels = superpixels_from_boundaries(prediction, SegmentationParameters(), voxel_size)
    superpixels, labels = superpixels[window], labels[window]
    graph = region_graph(
        superpixels,
        prediction.boundary_probability[window],
        prediction.foreground_probability[window],
    )
    return edge_features(graph), merge_targets(superpixels, labels, graph.edges)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=default_weights_path())
    parser.add_argument("--seeds", default="20000-20011")
    parser.add_argument("--shape", default="25,1024,1024")
    parser.add_argument(
        "--plant", type=Path, default=Path(__file__).parents[2] / "shared/data/plant-membrane-patch"
    )
    parser.add_argument("--plant-weight", type=float, default=10.0)
    parser.add_argument("--cache", type=Path, default=Path("runs/edge-classifier-cache"))
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    model = load_model(arguments.weights, device="cpu")
    digest = hashlib.sha256(Path(arguments.weights).read_bytes()).hexdigest()[:10]
    shape = tuple(int(size) for size in arguments.shape.split(","))
    features, targets, weights = [], [], []
    for seed in _seeds(arguments.seeds):
        phantom = make_phantom(shape, seed)
        stack = Stack(phantom.image.astype(np.float32), phantom.voxel_size, "CZYX", "uint16", ())
        prediction = _prediction(
            stack, model, arguments.cache, f"{digest}-{seed}-{arguments.shape}"
        )
        x, y = _edges(prediction, phantom.labels, phantom.voxel_size)
        logger.info("phantom %d: %d edges, %.3f merges", seed, len(y), y.mean())
        features.append(x)
        targets.append(y)
        weights.append(np.ones(len(y)))
    plant_edges = 0
    if arguments.plant is not None and (arguments.plant / "image.tif").is_file():
        stack = replace(read_stack(arguments.plant / "image.tif"), voxel_size=(1.0, 1.0, 1.0))
        labels = tifffile.imread(arguments.plant / "labels.tif")
        prediction = _prediction(stack, model, arguments.cache, f"{digest}-plant")
        x, y = _edges(prediction, labels, stack.voxel_size, (..., slice(0, PLANT_TRAINING_X)))
        logger.info("plant crop X < %d: %d edges, %.3f merges", PLANT_TRAINING_X, len(y), y.mean())
        plant_edges = len(y)
        features.append(x)
        targets.append(y)
        weights.append(np.full(len(y), arguments.plant_weight))
    classifier = fit_edge_classifier(
        np.concatenate(features), np.concatenate(targets), sample_weight=np.concatenate(weights)
    )
    card = read_card(arguments.weights)
    training = dict(card.training)
    training["edge_classifier"] = {
        "data": f"tuning phantoms {arguments.seeds} ({arguments.shape}), "
        f"{sum(len(y) for y in targets) - plant_edges} edges; plant crop X < "
        f"{PLANT_TRAINING_X}, {plant_edges} edges weighted {arguments.plant_weight:g}",
        "targets": "both super-pixels overlap one true cell most (graph.merge_targets)",
        "super-pixels": "default watershed parameters; network OpenVINO float32",
        "model": "perceptron 14-32-32-1, ReLU, full-batch Adam 400 steps, lr 1e-2, "
        "weight decay 1e-4, seed 0",
        "command": "python weights/train_edge_classifier.py",
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_card(
        arguments.weights, replace(card, edge_classifier=classifier.to_dict(), training=training)
    )
    logger.info("wrote the edge classifier into %s", card_path(arguments.weights))
    print(json.dumps(training["edge_classifier"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

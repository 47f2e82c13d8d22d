"""Evaluate a model on phantom seeds never used in training, optionally sweeping parameters.

Usage::

    python benchmarks/eval_model.py --weights weights/germseg_unet3d.pt \
        --seeds 10000-10003 --shape 25,1024,1024 [--autocast bf16] [--test-time-flip] \
        [--sweep] [--json OUT] \
        [--single-channel membrane|cytoplasm]

Training used seeds 0..N-1 (``weights/train_bundled.sh``); seeds from 10000 are for testing,
seeds from 20000 for tuning the post-network defaults. Network outputs are cached under
``--cache`` so that parameter sweeps and re-runs skip the network.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from segmentation.cli import parse_triple
from segmentation.evaluation import evaluate_segmentation
from segmentation.graph import card_edge_classifier
from segmentation.inference import resolve_autocast
from segmentation.io import Stack
from segmentation.model import load_model
from segmentation.parameters import (
    DEFAULT_FRAGMENT_RATIO,
    EDGE_WEIGHTS,
    InferenceParameters,
    SegmentationParameters,
)
from segmentation.pipeline import (
    BoundaryPrediction,
    cells_from_superpixels,
    predict,
    segment_from_boundaries,
)
from segmentation.synthetic import make_phantom
from segmentation.watershed import distance_transform_watershed

logger = logging.getLogger("eval_model")


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def weights_hash(model) -> str:
    """Short hash of the network's weights (for cache keys)."""
    weights = hashlib.sha256()
    for tensor in model.network.state_dict().values():
        weights.update(tensor.detach().cpu().numpy().tobytes())
    return weights.hexdigest()[:10]


SINGLE_CHANNELS = {"membrane": 1, "cytoplasm": 0}


def cached_prediction(
    seed: int,
    shape,
    model,
    weights: str,
    inference: InferenceParameters,
    cache: Path,
    single_channel: str | None = None,
) -> tuple[BoundaryPrediction, np.ndarray, tuple]:
    """The network's output on phantom ``seed``, from ``cache`` when it was computed before.

    ``single_channel`` ("membrane" or "cytoplasm") feeds that phantom channel to both model
    inputs, as :func:`segmentation.io.read_stack` does for a single-channel stack.
    """
    phantom = make_phantom(shape, seed)
    image = phantom.image
    if single_channel is not None:
        channel = image[SINGLE_CHANNELS[single_channel]]
        image = np.stack([channel, channel])
    window = "x".join(map(str, inference.patch))
    # the key names the exact weights and the exact phantom, so that neither a retrained
    # model nor a changed generator can pick up stale predictions
    image_hash = hashlib.sha256(image.tobytes()).hexdigest()[:10]
    # windows are multiples of the network's grid, short axes edge-padded, blended with
    # separable weights (predict_probabilities); "-sep" keeps out predictions from before
    grid = getattr(model.network, "downsampling_factor", 1)
    key = (
        f"{model.card.name}-{weights}-{seed}-{image_hash}"
        f"-{'x'.join(map(str, shape))}-{resolve_autocast(inference.autocast, model.device)}"
        f"-{window}-{inference.overlap}"
        f"-g{grid}p-sep{'-tflip' if inference.test_time_flip else ''}-{inference.engine}"
    )
    path = cache / f"{key}.npz"
    if path.is_file():
        stored = np.load(path)
        prediction = BoundaryPrediction(
            stored["boundary"],
            stored["foreground"],
            "cache",
            float(stored["seconds"]),
            edge_classifier=card_edge_classifier(model.card),
        )
    else:
        stack = Stack(image.astype(np.float32), phantom.voxel_size, "CZYX", "uint16", ())
        prediction = predict(stack, model, inference)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            boundary=prediction.boundary_probability,
            foreground=prediction.foreground_probability,
            seconds=prediction.seconds,
        )
    return prediction, phantom.labels, phantom.voxel_size


def sweep(
    prediction,
    truth,
    voxel_size,
    base: SegmentationParameters,
    thresholds=(0.3, 0.4, 0.5, 0.6, 0.7),
    footprints=(9, 13, 17, 21, 25),
    methods=("agglomeration", "multicut"),
    cutoffs=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    fragment_ratios=(DEFAULT_FRAGMENT_RATIO,),
) -> list[dict]:
    """Scores over a grid; the watershed runs once per (threshold, footprint)."""
    rows = []
    for threshold, footprint in itertools.product(thresholds, footprints):
        superpixels = distance_transform_watershed(
            prediction.boundary_probability,
            threshold=threshold,
            footprint=footprint,
            voxel_size=voxel_size,
            foreground_probability=prediction.foreground_probability,
            foreground_threshold=base.foreground_threshold,
            foreground_seed_distance=base.foreground_seed_distance,
        )
        for method, cutoff, ratio in itertools.product(methods, cutoffs, fragment_ratios):
            parameters = replace(base, method=method, cutoff=cutoff, fragment_ratio=ratio)
            labels = cells_from_superpixels(superpixels, prediction, parameters, voxel_size).labels
            scores = evaluate_segmentation(truth, labels)
            rows.append(
                {
                    "threshold": threshold,
                    "footprint": footprint,
                    "method": method,
                    "cutoff": cutoff,
                    "fragment_ratio": ratio,
                    "f1_iou50": scores["f1_iou50"],
                    "adapted_rand_error": scores["adapted_rand_error"],
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("10000-10003"))
    parser.add_argument("--shape", type=parse_triple, default=(25, 1024, 1024))
    parser.add_argument("--autocast", choices=("none", "bf16", "fp16"), default=None)
    parser.add_argument(
        "--engine", default=None, help="network engine (default: InferenceParameters')"
    )
    parser.add_argument("--method", choices=("agglomeration", "multicut"), default=None)
    parser.add_argument("--edge-weights", choices=EDGE_WEIGHTS, default=None)
    parser.add_argument("--patch", type=parse_triple, default=None)
    parser.add_argument("--overlap", type=float, default=None)
    parser.add_argument(
        "--test-time-flip", action="store_true", help="average with the Z-flipped prediction"
    )
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--sweep-thresholds", default="0.3,0.4,0.5,0.6,0.7")
    parser.add_argument("--sweep-footprints", default="9,13,17,21,25")
    parser.add_argument("--sweep-methods", default="agglomeration,multicut")
    parser.add_argument("--sweep-cutoffs", default="0.3,0.4,0.5,0.6,0.7,0.8")
    parser.add_argument("--sweep-fragment-ratios", default=str(DEFAULT_FRAGMENT_RATIO))
    parser.add_argument("--cache", type=Path, default=Path("scratch/prediction-cache"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--single-channel",
        choices=tuple(SINGLE_CHANNELS),
        default=None,
        help="feed only this phantom channel, to both inputs (as for a single-channel stack)",
    )
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model = load_model(arguments.weights, device="auto")
    inference = InferenceParameters()
    if arguments.autocast:
        inference = replace(inference, autocast=arguments.autocast)
    if arguments.engine:
        inference = replace(inference, engine=arguments.engine)
    if arguments.patch:
        inference = replace(inference, patch=arguments.patch)
    if arguments.overlap is not None:
        inference = replace(inference, overlap=arguments.overlap)
    if arguments.test_time_flip:
        inference = replace(inference, test_time_flip=True)
    parameters = SegmentationParameters()
    if arguments.method:
        parameters = replace(parameters, method=arguments.method)
    if arguments.edge_weights:
        parameters = replace(parameters, edge_weights=arguments.edge_weights)

    weights = weights_hash(model)
    results = []
    for seed in arguments.seeds:
        prediction, truth, voxel_size = cached_prediction(
            seed,
            arguments.shape,
            model,
            weights,
            inference,
            arguments.cache,
            arguments.single_channel,
        )
        start = time.perf_counter()
        result = segment_from_boundaries(prediction, parameters, voxel_size)
        seconds = time.perf_counter() - start
        scores = evaluate_segmentation(truth, result.labels)
        row = {
            "seed": seed,
            "shape": list(arguments.shape),
            "autocast": resolve_autocast(inference.autocast, model.device),
            "engine": inference.engine,
            "patch": list(inference.patch),
            "overlap": inference.overlap,
            "test_time_flip": inference.test_time_flip,
            "method": parameters.method,
            "edge_weights": parameters.edge_weights,
            "single_channel": arguments.single_channel,
            "network_seconds": round(prediction.seconds, 1),
            "postnetwork_seconds": round(seconds, 1),
            "n_gt": scores["n_gt"],
            "n_pred": scores["n_pred"],
            "f1_iou50": round(scores["f1_iou50"], 4),
            "precision_iou50": round(scores["precision_iou50"], 4),
            "recall_iou50": round(scores["recall_iou50"], 4),
            "adapted_rand_error": round(scores["adapted_rand_error"], 4),
            "merges": scores["merges"],
            "splits": scores["splits"],
            "per_threshold": scores["per_threshold"],
        }
        if arguments.sweep:
            row["sweep"] = sweep(
                prediction,
                truth,
                voxel_size,
                parameters,
                tuple(float(t) for t in arguments.sweep_thresholds.split(",")),
                tuple(int(f) for f in arguments.sweep_footprints.split(",")),
                tuple(arguments.sweep_methods.split(",")),
                tuple(float(c) for c in arguments.sweep_cutoffs.split(",")),
                tuple(float(r) for r in arguments.sweep_fragment_ratios.split(",")),
            )
        logger.info(
            "seed %d: F1@0.5 %.3f, ARand %.3f, %d/%d cells, merges %d, splits %d",
            seed,
            row["f1_iou50"],
            row["adapted_rand_error"],
            row["n_pred"],
            row["n_gt"],
            row["merges"],
            row["splits"],
        )
        results.append(row)
    summary = {
        "model": model.card.name,
        "mean_f1_iou50": round(float(np.mean([r["f1_iou50"] for r in results])), 4),
        "mean_adapted_rand_error": round(
            float(np.mean([r["adapted_rand_error"] for r in results])), 4
        ),
        "stacks": results,
    }
    logger.info(
        "mean F1@0.5 %.3f, mean adapted Rand error %.3f",
        summary["mean_f1_iou50"],
        summary["mean_adapted_rand_error"],
    )
    if arguments.sweep:
        table: dict[tuple, list[tuple[float, float]]] = {}
        for row in results:
            for entry in row["sweep"]:
                key = (
                    entry["threshold"],
                    entry["footprint"],
                    entry["method"],
                    entry["cutoff"],
                    entry["fragment_ratio"],
                )
                table.setdefault(key, []).append((entry["f1_iou50"], entry["adapted_rand_error"]))
        # ranked by mean F1 minus mean adapted Rand error: both targets count
        ranked = sorted(
            (
                (float(np.mean([f for f, _ in v])), float(np.mean([a for _, a in v])), k)
                for k, v in table.items()
            ),
            key=lambda item: item[0] - item[1],
            reverse=True,
        )
        summary["sweep_top"] = [
            {
                "threshold": k[0],
                "footprint": k[1],
                "method": k[2],
                "cutoff": k[3],
                "fragment_ratio": k[4],
                "mean_f1_iou50": round(f, 4),
                "mean_adapted_rand_error": round(a, 4),
            }
            for f, a, k in ranked[:15]
        ]
        for entry in summary["sweep_top"]:
            logger.info("%s", entry)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

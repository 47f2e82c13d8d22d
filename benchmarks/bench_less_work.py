"""What skipping network windows outside the tissue saves, in time and in cells.

A held-out phantom (seed 10000 by default) of ``--tissue-rows`` rows is placed in a
full-size field whose other rows are empty camera background, drawn voxel by voxel from
the phantom's own voxels at least 16 pixels from any cell (per channel and plane), as a gonad arm
that fills only part of the field looks. The network then runs twice on the same engine,
interleaved ``--repeats`` times: over every window, and only over windows that hold
tissue (what :func:`~segmentation.pipeline.predict` does). Both predictions are segmented
with the defaults and scored against the phantom's cells.

Appends one JSON record to ``results/bench_less_work.jsonl``.

Usage:
    python benchmarks/bench_less_work.py [--seed 10000] [--shape 25,1024,1024]
        [--tissue-rows 512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from segmentation.cli import parse_triple
from segmentation.evaluation import evaluate_segmentation
from segmentation.inference import predict_probabilities, tissue_mask
from segmentation.inference.engines import engine_precision, load_engine, resolve_engine
from segmentation.io import normalize_percentile
from segmentation.model import load_model
from segmentation.parameters import InferenceParameters, SegmentationParameters
from segmentation.pipeline import BoundaryPrediction, segment_from_boundaries
from segmentation.synthetic import make_phantom

logger = logging.getLogger("bench_less_work")

RESULTS = Path(__file__).parent / "results" / "bench_less_work.jsonl"
#: Background voxels are drawn from this far (pixels) from the phantom's cells.
FAR_FROM_CELLS = 16


def phantom_in_empty_field(
    shape: tuple[int, int, int], tissue_rows: int, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A phantom of ``tissue_rows`` rows at the top of a ``shape`` field of background.

    Returns the image (C, Z, Y, X) float32, the labels (Z, Y, X) and the voxel size.
    """
    depth, height, width = shape
    phantom = make_phantom((depth, tissue_rows, width), seed)
    image = phantom.image.astype(np.float32)
    footprint = (phantom.labels > 0).any(axis=0)
    far = ndimage.distance_transform_edt(~footprint) >= FAR_FROM_CELLS
    rng = np.random.default_rng(seed)
    field = np.empty((image.shape[0], depth, height, width), dtype=np.float32)
    field[:, :, :tissue_rows] = image
    for channel in range(image.shape[0]):
        for plane in range(depth):
            background = image[channel, plane][far]
            if background.size == 0:
                background = np.array([image[channel, plane].min()])
            field[channel, plane, tissue_rows:] = rng.choice(
                background, size=(height - tissue_rows, width)
            )
    labels = np.zeros(shape, dtype=phantom.labels.dtype)
    labels[:, :tissue_rows] = phantom.labels
    return field, labels, phantom.voxel_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=10000)
    parser.add_argument("--shape", type=parse_triple, default=(25, 1024, 1024))
    parser.add_argument("--tissue-rows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--json", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    image, labels, voxel_size = phantom_in_empty_field(
        arguments.shape, arguments.tissue_rows, arguments.seed
    )
    model = load_model(None, device="cpu")
    inference = InferenceParameters(engine=arguments.engine)
    engine = resolve_engine(inference.engine, model.device, model.network)
    precision = engine_precision(engine, inference.autocast, model.device)
    network = load_engine(model.network, engine, precision)
    normalised = normalize_percentile(image)
    mask = tissue_mask(image)
    needed = np.broadcast_to(mask[:1], mask.shape)
    grid = getattr(model.network, "downsampling_factor", 1)

    def run(needed_voxels: np.ndarray | None) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        probabilities = predict_probabilities(
            network,
            normalised,
            patch=inference.patch,
            overlap=inference.overlap,
            batch_size=inference.batch_size,
            device=model.device,
            autocast=inference.autocast,
            multiple_of=grid,
            needed=needed_voxels,
        )
        return time.perf_counter() - start, probabilities

    seconds: dict[str, list[float]] = {"every window": [], "tissue windows only": []}
    probabilities = {}
    for _ in range(arguments.repeats):
        for name, needed_voxels in (("every window", None), ("tissue windows only", needed)):
            elapsed, probabilities[name] = run(needed_voxels)
            seconds[name].append(elapsed)
    record = {
        "seed": arguments.seed,
        "shape": list(arguments.shape),
        "tissue_rows": arguments.tissue_rows,
        "tissue_fraction": round(float(mask[0].mean()), 3),
        "engine": engine,
        "precision": precision,
        "repeats": arguments.repeats,
        "runs": {},
    }
    for name, values in seconds.items():
        boundary = probabilities[name][model.card.boundary_channel]
        foreground = probabilities[name][model.card.foreground_channel] * mask
        result = segment_from_boundaries(
            BoundaryPrediction(boundary, foreground, device="cpu", seconds=0.0),
            SegmentationParameters(),
            voxel_size,
        )
        scores = evaluate_segmentation(labels, result.labels)
        record["runs"][name] = {
            "median_network_seconds": round(statistics.median(values), 2),
            "network_seconds": [round(value, 2) for value in values],
            "f1_iou50": round(scores["f1_iou50"], 4),
            "adapted_rand_error": round(scores["adapted_rand_error"], 4),
            "n_cells": int(result.n_cells),
        }
    full = record["runs"]["every window"]["median_network_seconds"]
    skipped = record["runs"]["tissue windows only"]["median_network_seconds"]
    record["time_ratio"] = round(skipped / full, 3)
    print(json.dumps(record, indent=2))
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    with arguments.json.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

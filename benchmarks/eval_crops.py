"""Evaluate a model on small crops of held-out phantoms, segmented as files of their own.

The real stack that judges the product is a crop, 2 × 24 × 200 × 200 with 31 cells; a user
who crops a stack runs germseg on the crop alone, so its intensities are normalised by the
crop's own percentiles and the network sees the crop's edges as stack edges. This script
does the same with phantoms never used in training: for each seed it draws a (Z, 512, 512)
phantom, picks the ``--crops`` 200 × 200 windows inside the tissue with the most cells
(:func:`tissue_crops`), segments each crop with all defaults and scores it against its
ground truth (F1 at IoU 0.5, one-to-one, ignoring ground-truth cells under 100 voxels, as
``germseg evaluate --min-gt-size 100``; adapted Rand error).

Usage::

    python benchmarks/eval_crops.py --weights weights/germseg_unet3d.pt \
        --seeds 10000-10007 [--engine openvino --autocast none] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_model import parse_seeds  # noqa: E402

from segmentation.cli import parse_triple  # noqa: E402
from segmentation.evaluation import evaluate_segmentation  # noqa: E402
from segmentation.io import Stack  # noqa: E402
from segmentation.model import load_model  # noqa: E402
from segmentation.parameters import (  # noqa: E402
    EDGE_WEIGHTS,
    InferenceParameters,
    SegmentationParameters,
)
from segmentation.pipeline import predict, segment_from_boundaries  # noqa: E402
from segmentation.synthetic import make_phantom  # noqa: E402

logger = logging.getLogger("eval_crops")

#: Ground-truth cells under this many voxels are ignored (``germseg evaluate --min-gt-size``).
MIN_GT_SIZE = 100


def tissue_crops(labels: np.ndarray, side: int, count: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` side × side windows inside the tissue with many cells.

    Windows lie on a ``stride`` grid and are at least half foreground (as the judging crop,
    which lies mostly inside the gonad); they are ranked by how many cells of at
    least :data:`MIN_GT_SIZE` voxels they hold, and a window overlapping an already chosen
    one by more than half its area is skipped.
    """
    height, width = labels.shape[1:]
    candidates = []
    for y in range(0, height - side + 1, stride):
        for x in range(0, width - side + 1, stride):
            window = labels[:, y : y + side, x : x + side]
            if (window > 0).mean() < 0.5:
                continue
            ids, sizes = np.unique(window[window > 0], return_counts=True)
            candidates.append((int((sizes >= MIN_GT_SIZE).sum()), y, x))
    chosen: list[tuple[int, int]] = []
    for _, y, x in sorted(candidates, reverse=True):
        overlaps = (
            max(0, side - abs(y - cy)) * max(0, side - abs(x - cx)) > side * side / 2
            for cy, cx in chosen
        )
        if not any(overlaps):
            chosen.append((y, x))
        if len(chosen) == count:
            break
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("10000-10007"))
    parser.add_argument("--field", type=parse_triple, default=(24, 512, 512), metavar="Z,Y,X")
    parser.add_argument("--side", type=int, default=200)
    parser.add_argument("--crops", type=int, default=2, help="crops per phantom")
    parser.add_argument("--engine", default=None)
    parser.add_argument("--autocast", choices=("none", "bf16", "fp16"), default=None)
    parser.add_argument("--edge-weights", choices=EDGE_WEIGHTS, default=None)
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model = load_model(arguments.weights, device="auto")
    inference = InferenceParameters()
    if arguments.engine:
        inference = replace(inference, engine=arguments.engine)
    if arguments.autocast:
        inference = replace(inference, autocast=arguments.autocast)
    parameters = SegmentationParameters()
    if arguments.edge_weights:
        parameters = replace(parameters, edge_weights=arguments.edge_weights)
    rows = []
    for seed in arguments.seeds:
        phantom = make_phantom(arguments.field, seed)
        for y, x in tissue_crops(phantom.labels, arguments.side, arguments.crops, 100):
            window = (slice(None), slice(y, y + arguments.side), slice(x, x + arguments.side))
            image = phantom.image[(slice(None), *window)]
            truth = phantom.labels[window]
            stack = Stack(image.astype(np.float32), phantom.voxel_size, "CZYX", "uint16", ())
            prediction = predict(stack, model, inference)
            labels = segment_from_boundaries(prediction, parameters, phantom.voxel_size).labels
            scores = evaluate_segmentation(truth, labels, min_gt_size=MIN_GT_SIZE)
            row = {
                "seed": seed,
                "corner_yx": [y, x],
                "foreground_fraction": round(float((truth > 0).mean()), 3),
                "n_gt": scores["n_gt"],
                "n_pred": scores["n_pred"],
                "f1_iou50": round(scores["f1_iou50"], 4),
                "adapted_rand_error": round(scores["adapted_rand_error"], 4),
            }
            logger.info("seed %d crop %s: %s", seed, (y, x), row)
            rows.append(row)
    summary = {
        "model": model.card.name,
        "weights": str(arguments.weights or "bundled"),
        "field": list(arguments.field),
        "side": arguments.side,
        "engine": inference.engine,
        "mean_f1_iou50": round(float(np.mean([r["f1_iou50"] for r in rows])), 4),
        "median_f1_iou50": round(float(np.median([r["f1_iou50"] for r in rows])), 4),
        "mean_adapted_rand_error": round(
            float(np.mean([r["adapted_rand_error"] for r in rows])), 4
        ),
        "crops": rows,
    }
    logger.info(
        "%d crops: mean F1@0.5 %.3f (median %.3f), mean adapted Rand error %.3f",
        len(rows),
        summary["mean_f1_iou50"],
        summary["median_f1_iou50"],
        summary["mean_adapted_rand_error"],
    )
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

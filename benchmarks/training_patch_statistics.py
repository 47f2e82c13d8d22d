"""What the network is shown: appearance statistics of training patches after augmentation.

Builds the training patch dataset exactly as ``germseg train`` does
(:func:`segmentation.training.trainer.training_dataset`, default augmentation), draws
patches with their augmented labels, measures each with
:func:`segmentation.evaluation.appearance.stack_statistics` (normalised figures only: a
patch is no longer in camera counts), and prints the median and 10-90 % range per figure
beside the real stack's value, with and without augmentation.

Usage:
    python benchmarks/training_patch_statistics.py --data runs/v6-data/data.csv \
        [--patches 96] [--patch 32,128,128] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace

import numpy as np

from segmentation.evaluation.appearance import REAL_STACK_STATISTICS, stack_statistics
from segmentation.training.data import read_training_sources, split_by_stack
from segmentation.training.trainer import TrainingConfig, load_training_stack, training_dataset

#: Normalised figures that mean something on a patch.
FIGURES = (
    "interior_mean",
    "background_mean",
    "cell_cell_face_over_interior",
    "cell_background_face_over_interior",
    "cell_cell_face_contrast_to_noise",
    "pixel_noise_over_interior",
    "high_pass_correlation_x_lag1",
    "interior_cv",
)


def patch_records(dataset, count: int) -> list[dict]:
    records = []
    for index in range(count):
        item = dataset[index % len(dataset)]
        labels = item["labels"].numpy()
        if np.count_nonzero(labels) < 1000 or len(np.unique(labels)) < 3:
            continue  # no interior or no face between two cells to measure
        records.append(stack_statistics(item["image"].numpy(), labels, raw_counts=False))
    return records


def summarise(records: list[dict]) -> dict:
    summary = {}
    for channel in REAL_STACK_STATISTICS:
        summary[channel] = {}
        for figure in FIGURES:
            values = np.array([r[channel][figure] for r in records], dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                summary[channel][figure] = {
                    "median": float(np.median(values)),
                    "p10": float(np.percentile(values, 10)),
                    "p90": float(np.percentile(values, 90)),
                    "p5": float(np.percentile(values, 5)),
                    "p95": float(np.percentile(values, 95)),
                }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--patches", type=int, default=96)
    parser.add_argument("--patch", default="32,128,128")
    parser.add_argument("--stacks", type=int, default=12, help="training stacks to load")
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    patch = tuple(int(n) for n in args.patch.split(","))
    config = TrainingConfig(
        patch=patch,
        patches_per_epoch=args.patches,
        padding="edge",
        z_margin=8,
        max_background_fraction=None,
        single_channel_fraction=0.1,
    )
    pairs, _ = split_by_stack(read_training_sources(args.data))
    # every k-th stack, so that the sample spans the data set; repeated rows count once
    unique = list(dict.fromkeys(pairs))
    chosen = unique[:: max(1, len(unique) // args.stacks)][: args.stacks]
    stacks = [load_training_stack(pair) for pair in chosen]
    names = [f"{pair.image_path.parent.name}/{pair.image_path.name}" for pair in chosen]
    results = {}
    for name, augment in (("augmented", True), ("not augmented", False)):
        dataset = training_dataset(
            stacks, replace(config, augment=augment), names=names, keep_labels=True
        )
        results[name] = summarise(patch_records(dataset, args.patches))
    print(f"{args.patches} patches of {patch} from {len(stacks)} training stacks\n")
    print(
        "| figure | channel | real | augmented median (10–90 %) | not augmented median "
        "(10–90 %) |\n|---|---|---|---|---|"
    )
    for figure in FIGURES:
        for channel in REAL_STACK_STATISTICS:
            cells = [figure, channel[-1], f"{REAL_STACK_STATISTICS[channel][figure]:g}"]
            for name in results:
                value = results[name][channel].get(figure)
                cells.append(
                    f"{value['median']:.3g} ({value['p10']:.3g}–{value['p90']:.3g})"
                    if value
                    else "—"
                )
            print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"stacks": names, "patch": patch, "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()

"""How real the phantoms look: appearance statistics over seeds against the real stack's.

Generates phantoms of one shape for a range of seeds, measures each with
:func:`segmentation.evaluation.appearance.stack_statistics` (the figures of
``shared/tools/stack_statistics.py`` plus a depth profile), and prints a Markdown table of
the real value, the phantom median and the phantom 10-90 % range per figure and channel,
with the figures whose median is out of tolerance (±30 %, correlations ±0.15).

Usage:
    python benchmarks/phantom_statistics.py --shape 25,1024,1024 --seeds 0-11 \
        [--json OUT.json] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
from multiprocessing import Pool

import numpy as np

from segmentation.evaluation.appearance import (
    MATCHED_FIGURES,
    REAL_STACK_STATISTICS,
    compare_with_real,
    stack_statistics,
)
from segmentation.synthetic import make_phantom


def _parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def measure(job: tuple[tuple[int, int, int], int]) -> dict:
    shape, seed = job
    phantom = make_phantom(shape, seed)
    return {"seed": seed, **stack_statistics(phantom.image, phantom.labels)}


def summarise(records: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Median and 10/90th percentiles of every figure over the records, per channel."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for channel in REAL_STACK_STATISTICS:
        summary[channel] = {}
        for figure in records[0][channel]:
            values = np.array([record[channel][figure] for record in records], dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            summary[channel][figure] = {
                "median": float(np.median(values)),
                "p10": float(np.percentile(values, 10)),
                "p90": float(np.percentile(values, 90)),
            }
    return summary


def markdown_table(summary: dict) -> str:
    rows = [
        "| figure | real ch0 | phantom ch0 median (10-90 %) | real ch1 "
        "| phantom ch1 median (10-90 %) |",
        "|---|---|---|---|---|",
    ]
    for figure in REAL_STACK_STATISTICS["channel_0"]:
        cells = [figure if figure in MATCHED_FIGURES else f"{figure} (not matched)"]
        for channel in ("channel_0", "channel_1"):
            real = REAL_STACK_STATISTICS[channel][figure]
            value = summary[channel].get(figure)
            cells.append(f"{real:g}")
            cells.append(
                f"{value['median']:.3g} ({value['p10']:.3g}–{value['p90']:.3g})" if value else "—"
            )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="25,1024,1024")
    parser.add_argument("--seeds", default="0-11")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="write the per-seed records and the summary here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shape = tuple(int(n) for n in args.shape.split(","))
    seeds = _parse_seeds(args.seeds)
    with Pool(args.workers) as pool:
        records = pool.map(measure, [(shape, seed) for seed in seeds])
    summary = summarise(records)
    medians = {
        channel: {figure: value["median"] for figure, value in figures.items()}
        for channel, figures in summary.items()
    }
    problems = compare_with_real(medians)
    print(f"{len(seeds)} phantoms of shape {shape}, seeds {args.seeds}\n")
    print(markdown_table(summary))
    print("\nout of tolerance:" if problems else "\nall matched figures within tolerance")
    for problem in problems:
        print("  " + problem)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"shape": shape, "seeds": seeds, "records": records, "summary": summary},
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()

"""Time blockwise segmentation of a stack larger than the memory budget; record peak RSS.

Usage::

    nice python benchmarks/bench_blockwise.py [--shape 25,2048,2048] [--memory-budget 4]

Writes a 2 x Z x Y x X phantom with ``germseg synth`` (a child process, not measured), then
runs ``germseg segment IN --format ome-zarr`` in a child process with the budget (the stack
exceeds it, so the run goes blockwise on its own), and appends one JSON record (seconds per
stage as the command reports them, wall time, the child's peak RSS, CPU) to
``benchmarks/results/bench_blockwise.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import cpu_model_name, run_measured  # noqa: E402

from segmentation.parameters import DEFAULT_MEMORY_BUDGET_GB  # noqa: E402

logger = logging.getLogger("bench_blockwise")
RESULTS = Path(__file__).resolve().parent / "results" / "bench_blockwise.jsonl"
_STAGES = re.compile(r"(\d+) cells \(([^)]*)\)")


def _germseg(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "segmentation", *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="25,2048,2048", metavar="Z,Y,X")
    parser.add_argument("--memory-budget", type=float, default=DEFAULT_MEMORY_BUDGET_GB)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--blockwise", action="store_true", help="force blockwise (a stack within the budget)"
    )
    parser.add_argument("--note", default="", help="free text kept in the record")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / "phantom", Path(folder) / "out"
        start = time.perf_counter()
        _germseg(
            "synth", "--out", str(data), "--shape", arguments.shape, "--seed", str(arguments.seed)
        )
        logger.info("phantom %s written in %.0f s", arguments.shape, time.perf_counter() - start)
        wall, peak_gb, stderr = run_measured(
            [
                sys.executable,
                "-m",
                "segmentation",
                "segment",
                str(data / "image.tif"),
                "--out",
                str(out),
                "--format",
                "ome-zarr",
                "--memory-budget",
                str(arguments.memory_budget),
                *(["--blockwise"] if arguments.blockwise else []),
            ],
            capture=True,
        )
    found = _STAGES.search(stderr)
    stages = {}
    if found:
        for part in found.group(2).split(", "):
            name, seconds, _ = part.split(" ")
            stages[name] = float(seconds)
    record = {
        "benchmark": "blockwise",
        "shape": [2, *(int(n) for n in arguments.shape.split(","))],
        "memory_budget_gb": arguments.memory_budget,
        "forced_blockwise": arguments.blockwise,
        "cells": int(found.group(1)) if found else None,
        "stages_s": stages,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak_gb, 2),
        "cpu": {"model": cpu_model_name(), "cores": os.cpu_count()},
        "note": arguments.note,
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

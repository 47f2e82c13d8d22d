"""Re-segmentation from a cached prediction in the web app: what a slider change costs.

Runs the web app's job manager (``app.jobs.JobManager``, the code behind the REST API and
the UI) in this process on a ``germseg synth`` phantom: one job with the defaults (network
run, prediction cached), then ``--repeats`` jobs on the same upload with another threshold
and cutoff, which reuse the cached prediction as a slider change in the UI does. Prints the
stage seconds of every job and appends one JSON record to ``results/bench_resegment.jsonl``.

Usage:
    python benchmarks/bench_resegment.py [--shape 25,1024,1024] [--seed 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from app.jobs import JobManager, JobRequest
from app.settings import Settings
from segmentation.cli import parse_triple
from segmentation.model import load_model
from segmentation.synthetic import write_phantom

logger = logging.getLogger("bench_resegment")

RESULTS = Path(__file__).parent / "results" / "bench_resegment.jsonl"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _run_job(manager: JobManager, path: Path, request: JobRequest) -> dict:
    with path.open("rb") as stream:
        job = manager.submit(stream, path.name, request)
    manager.wait(job)
    if job.status != "done":
        raise RuntimeError(f"job {job.id} ended {job.status}: {job.error}")
    return {
        "network_reused": job.network_reused,
        "timings": {stage: round(seconds, 2) for stage, seconds in job.timings.items()},
        "n_cells": job.n_cells,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_triple, default=(25, 1024, 1024))
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="germseg-reseg-") as folder:
        folder = Path(folder)
        path, _ = write_phantom(folder / "stack", args.shape, args.seed)
        manager = JobManager(load_model(device="cpu"), Settings(results_dir=folder / "results"))
        try:
            first = _run_job(manager, path, JobRequest())
            changed = JobRequest()
            changed = replace(
                changed, segmentation=replace(changed.segmentation, threshold=0.7, cutoff=0.5)
            )
            again = [_run_job(manager, path, changed) for _ in range(args.repeats)]
        finally:
            manager.close()
    if not all(run["network_reused"] for run in again):
        raise RuntimeError("a re-segmentation ran the network again: the cache missed")
    totals = [run["timings"]["total"] for run in again]
    record = {
        "benchmark": "resegment",
        "shape": list(args.shape),
        "seed": args.seed,
        "cpu": {"model": _cpu_model(), "cores": len(os.sched_getaffinity(0))},
        "first_job": first,
        "resegment_jobs": again,
        "median_resegment_seconds": round(statistics.median(totals), 2),
        "note": args.note,
    }
    named = [("first job", first)] + [(f"re-segment {i}", r) for i, r in enumerate(again, 1)]
    for name, run in named:
        stages = ", ".join(f"{stage} {seconds}" for stage, seconds in run["timings"].items())
        print(f"{name}: {stages} ({run['n_cells']} cells)")
    print(f"median re-segmentation: {record['median_resegment_seconds']} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as file:
        file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()

"""Re-segmentation from a cached prediction in the web app: what a slider change costs.

Runs the web app's job manager (``app.jobs.JobManager``, the code behind the REST API and
the UI) in this process on a ``germseg synth`` phantom: one job with the defaults (network
run, prediction cached), then, ``--repeats`` times, a job with another threshold (the cached
prediction is reused, the watershed runs again) and one with another cutoff only (the
cached super-pixels are reused too), as slider changes in the UI do. Prints the stage
seconds of every job and appends one JSON record to ``results/bench_resegment.jsonl``.

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


def _median_total(runs: list[dict]) -> float:
    return round(statistics.median(run["timings"]["total"] for run in runs), 2)


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
            defaults = JobRequest().segmentation
            threshold_jobs, cutoff_jobs = [], []
            for repeat in range(args.repeats):
                threshold = 0.7 - 0.05 * repeat
                threshold_jobs.append(
                    _run_job(manager, path, JobRequest(replace(defaults, threshold=threshold)))
                )
                cutoff_jobs.append(
                    _run_job(
                        manager,
                        path,
                        JobRequest(replace(defaults, threshold=threshold, cutoff=0.5)),
                    )
                )
        finally:
            manager.close()
    again = threshold_jobs + cutoff_jobs
    if not all(run["network_reused"] for run in again):
        raise RuntimeError("a re-segmentation ran the network again: the cache missed")
    if any("watershed" in run["timings"] for run in cutoff_jobs):
        raise RuntimeError("a cutoff change ran the watershed again: the cache missed")
    record = {
        "benchmark": "resegment",
        "shape": list(args.shape),
        "seed": args.seed,
        "cpu": {"model": _cpu_model(), "cores": len(os.sched_getaffinity(0))},
        "first_job": first,
        "threshold_change_jobs": threshold_jobs,
        "cutoff_change_jobs": cutoff_jobs,
        "median_threshold_change_seconds": _median_total(threshold_jobs),
        "median_cutoff_change_seconds": _median_total(cutoff_jobs),
        "note": args.note,
    }
    named = [("first job", first)]
    named += [(f"threshold change {i}", r) for i, r in enumerate(threshold_jobs, 1)]
    named += [(f"cutoff change {i}", r) for i, r in enumerate(cutoff_jobs, 1)]
    for name, run in named:
        stages = ", ".join(f"{stage} {seconds}" for stage, seconds in run["timings"].items())
        print(f"{name}: {stages} ({run['n_cells']} cells)")
    print(
        f"median re-segmentation: threshold change {record['median_threshold_change_seconds']}"
        f" s, cutoff change {record['median_cutoff_change_seconds']} s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as file:
        file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()

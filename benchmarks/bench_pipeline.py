"""Time each pipeline stage on a synthetic full-size stack and record peak memory.

Usage::

    python benchmarks/bench_pipeline.py [--shape 25,1024,1024] [--weights PATH] [--autocast bf16]
        [--engine openvino] [--end-to-end | --cli-only] [--json results/bench_pipeline.jsonl]

Writes a phantom with ``germseg synth`` (in a child process, so that its memory is not
counted), then runs read → network → watershed → graph → outputs in this process, printing
seconds per stage and this process's peak RSS. With ``--end-to-end`` it also times the
``germseg segment`` command itself (its peak RSS is that child's own, read with
``os.wait4``); ``--cli-only`` times only the command. The record names the engine and the
precision it computed in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from segmentation.cli import parse_triple


def peak_rss_gb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024**2


def run_measured(command: list[str], *, capture: bool = False) -> tuple[float, float, str]:
    """Run ``command``; its wall seconds, its own peak RSS (GB, from ``os.wait4``), stderr.

    ``RUSAGE_CHILDREN`` would give the largest of all children waited for so far (the
    phantom writer's too), so the child's own resource usage is read when it exits.
    Raises SystemExit when the command fails.
    """
    start = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.PIPE if capture else None, text=True)
    stderr = child.stderr.read() if capture else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed with exit status {child.returncode}")
    return seconds, usage.ru_maxrss / 1024**2, stderr


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_triple, default=(25, 1024, 1024))
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--autocast", choices=("none", "bf16", "fp16"), default=None)
    parser.add_argument("--patch", type=parse_triple, default=None)
    parser.add_argument("--overlap", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--method", choices=("agglomeration", "multicut"), default=None)
    parser.add_argument("--engine", default=None, help="network engine (default: auto)")
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument(
        "--cli-only",
        action="store_true",
        help="skip the in-process run: time germseg segment only (wall time, its peak RSS)",
    )
    parser.add_argument("--json", type=Path, default=None, help="append results to this file")
    arguments = parser.parse_args()

    import torch

    from segmentation.evaluation import evaluate_segmentation
    from segmentation.inference import cpu_has_fast_bfloat16
    from segmentation.inference.engines import engine_precision, resolve_engine
    from segmentation.io import read_labels, read_stack
    from segmentation.model import load_model
    from segmentation.parameters import InferenceParameters, SegmentationParameters
    from segmentation.pipeline import predict, segment_from_boundaries, write_outputs

    work = Path(tempfile.mkdtemp(prefix="germseg-bench-"))
    shape = ",".join(map(str, arguments.shape))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "segmentation",
            "synth",
            "--out",
            str(work),
            "--shape",
            shape,
            "--seed",
            str(arguments.seed),
        ],
        check=True,
    )
    inference = InferenceParameters()
    overrides = {
        "autocast": arguments.autocast,
        "patch": arguments.patch,
        "overlap": arguments.overlap,
        "batch_size": arguments.batch_size,
        "engine": arguments.engine,
    }
    inference = replace(inference, **{k: v for k, v in overrides.items() if v is not None})
    segmentation_parameters = SegmentationParameters()
    if arguments.method:
        segmentation_parameters = replace(segmentation_parameters, method=arguments.method)

    model = load_model(arguments.weights, device=inference.device)
    engine = resolve_engine(inference.engine, model.device, model.network)
    record = {
        "shape": arguments.shape,
        "model": model.card.name,
        "inference": inference.as_dict(),
        "engine": engine,
        "precision": engine_precision(engine, inference.autocast, model.device),
        "cpu": {
            "model": cpu_model_name(),
            "capability": torch.backends.cpu.get_cpu_capability(),
            "native_bfloat16": cpu_has_fast_bfloat16(),
            "threads": torch.get_num_threads(),
        },
        "method": segmentation_parameters.method,
    }
    if not arguments.cli_only:
        timings = {}
        start = time.perf_counter()
        stack = read_stack(work / "image.tif")
        timings["read"] = time.perf_counter() - start
        prediction = predict(stack, model, inference)
        timings["network"] = prediction.seconds
        result = segment_from_boundaries(prediction, segmentation_parameters, stack.voxel_size)
        timings.update(result.timings)
        start = time.perf_counter()
        write_outputs(work / "out", "image", stack, prediction, result)
        timings["outputs"] = time.perf_counter() - start
        truth = read_labels(work / "labels.tif")
        scores = evaluate_segmentation(truth, result.labels)
        record.update(
            {
                "seconds": {k: round(v, 2) for k, v in timings.items()},
                "total_seconds": round(sum(timings.values()), 1),
                "peak_rss_gb": round(peak_rss_gb(), 2),
                "n_cells": result.n_cells,
                "n_true_cells": scores["n_gt"],
                "f1_iou50": round(scores["f1_iou50"], 3),
                "adapted_rand_error": round(scores["adapted_rand_error"], 3),
            }
        )
        del stack, prediction, result, truth
    if arguments.end_to_end or arguments.cli_only:
        command = [
            sys.executable,
            "-m",
            "segmentation",
            "segment",
            str(work / "image.tif"),
            "--out",
            str(work / "cli"),
        ]
        if arguments.weights:
            command += ["--weights", str(arguments.weights)]
        if arguments.engine:
            command += ["--engine", arguments.engine]
        seconds, peak_gb, _ = run_measured(command)
        record["cli_seconds"] = round(seconds, 1)
        record["cli_peak_rss_gb"] = round(peak_gb, 2)
    print(json.dumps(record, indent=2))
    if arguments.json:
        with arguments.json.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

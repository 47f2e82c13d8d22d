"""Network engines side by side: time per window, and probabilities against float32 PyTorch.

Every engine runs the bundled U-Net on the same normalised phantom windows (held-out seeds
from 10000), interleaved over ``--repeats`` rounds so that all share the machine's
conditions: PyTorch float32 channels-last (the engine of today), PyTorch bfloat16 autocast
(where the CPU runs it natively), OpenVINO float32, OpenVINO bfloat16 (native bfloat16
only), OpenVINO INT8 (NNCF post-training quantisation on training-seed phantom windows) and
ONNX Runtime float32; engines that are not installed are left out. Prints per engine the
median seconds per window, its ratio to PyTorch float32, and the mean absolute difference
of the boundary and foreground probabilities to PyTorch float32 on the same windows.

With ``--f1-seeds`` each engine also segments those held-out phantoms whole (the
pipeline's windows, blending and tissue mask, then the post-network stages) and F1@0.5
against the phantoms' cells is reported with its difference to PyTorch float32. The
issue's tolerance: probabilities within 0.02 mean absolute, F1 within 0.005.

Appends one JSON record (CPU model, flags, threads, medians, ratios, differences) to
``results/bench_engines.jsonl``. Conversions are cached (``$GERMSEG_ENGINE_CACHE``).
``ONEDNN_MAX_CPU_ISA=AVX2`` caps oneDNN, so PyTorch's and OpenVINO's convolutions run the
AVX2 code of a CPU without AVX-512 or native bfloat16 (ONNX Runtime's own kernels ignore it).

Usage:
    python benchmarks/bench_engines.py [--window 32,256,256] [--windows 3] [--repeats 3]
        [--f1-seeds 10000,10001] [--f1-shape 25,512,512]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from segmentation.cli import parse_triple
from segmentation.evaluation.matching import match_instances
from segmentation.inference import cpu_has_fast_bfloat16, predict_probabilities, tissue_mask
from segmentation.inference.engines import open_engine
from segmentation.io import normalize_percentile
from segmentation.model import LoadedModel, default_weights_path, load_model
from segmentation.parameters import DEFAULT_OVERLAP, DEFAULT_PATCH, installed_engines
from segmentation.pipeline import BoundaryPrediction, segment_from_boundaries
from segmentation.synthetic import Phantom, make_phantom

logger = logging.getLogger("bench_engines")

RESULTS = Path(__file__).parent / "results" / "bench_engines.jsonl"
#: CPU flags that decide which precisions run natively.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
#: First held-out phantom seed (seeds from 10000 are reserved for testing).
FIRST_TEST_SEED = 10000
Runner = Callable[[torch.Tensor], torch.Tensor]


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`FLAGS` it has, from /proc/cpuinfo."""
    name, flags = "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and name == "unknown":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    return name, [flag for flag in FLAGS if flag in flags]


def torch_runner(network: torch.nn.Module, bfloat16: bool) -> Runner:
    """PyTorch as ``predict_probabilities`` runs it on the CPU: channels-last, inference mode."""

    def run(batch: torch.Tensor) -> torch.Tensor:
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16),
        ):
            return network(batch.contiguous(memory_format=torch.channels_last_3d)).float()

    return run


def engine_runners(model: LoadedModel) -> dict[str, Runner]:
    """Every engine and precision this installation and CPU can run, by name."""
    network = model.network
    native = cpu_has_fast_bfloat16()
    runners: dict[str, Runner] = {"torch-float32": torch_runner(network, False)}
    if native:
        runners["torch-bfloat16"] = torch_runner(network, True)
    engines = installed_engines()
    if "openvino" in engines:
        runners["openvino-float32"] = open_engine(network, "openvino", "float32")
        if native:
            runners["openvino-bfloat16"] = open_engine(network, "openvino", "bfloat16")
        try:
            runners["openvino-int8"] = open_engine(network, "openvino", "int8")
        except ImportError as error:
            logger.warning("OpenVINO INT8 left out (NNCF is not installed: %s)", error)
    if "onnxruntime" in engines:
        runners["onnxruntime-float32"] = open_engine(network, "onnxruntime", "float32")
    return runners


def phantom_windows(window: tuple[int, int, int], count: int) -> list[torch.Tensor]:
    """Normalised held-out phantom windows (1, 2, z, y, x)."""
    return [
        torch.from_numpy(
            np.ascontiguousarray(
                normalize_percentile(make_phantom(window, seed=FIRST_TEST_SEED + i).image)[None],
                dtype=np.float32,
            )
        )
        for i in range(count)
    ]


def time_interleaved(
    runners: dict[str, Runner], windows: list[torch.Tensor], repeats: int
) -> dict[str, list[float]]:
    """Seconds of every run: each round runs every window through every engine in turn."""
    for run in runners.values():  # warm-up: compiles each shape once
        run(windows[0])
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(repeats):
        logger.info("round %d of %d", round_index + 1, repeats)
        for window in windows:
            for name, run in runners.items():
                start = time.perf_counter()
                run(window)
                seconds[name].append(time.perf_counter() - start)
    return seconds


def probability_differences(
    runners: dict[str, Runner], windows: list[torch.Tensor]
) -> dict[str, list[float]]:
    """Per engine, mean absolute difference to PyTorch float32 of each output channel."""
    reference = [torch.sigmoid(runners["torch-float32"](w)).numpy() for w in windows]
    differences = {}
    for name, run in runners.items():
        per_window = [
            np.abs(torch.sigmoid(run(w)).numpy() - ref).mean(axis=(0, 2, 3, 4))
            for w, ref in zip(windows, reference, strict=True)
        ]
        differences[name] = [round(float(v), 6) for v in np.mean(per_window, axis=0)]
    return differences


def phantom_f1(run: Runner, model: LoadedModel, phantoms: list[Phantom]) -> float:
    """Mean F1@0.5 of whole held-out phantoms segmented with ``run`` as the network.

    The network stage is the pipeline's (Gaussian-blended windows of the default patch,
    windows without tissue skipped, foreground masked by the tissue); then the default
    post-network stages.
    """
    card = model.card
    scores = []
    for phantom in phantoms:
        image = normalize_percentile(phantom.image)
        mask = tissue_mask(phantom.image)
        needed = None
        if mask is not None:
            needed = np.broadcast_to(mask[:1], (image.shape[1], *mask.shape[1:]))
        probabilities = predict_probabilities(
            run,
            image,
            patch=DEFAULT_PATCH,
            overlap=DEFAULT_OVERLAP,
            batch_size=1,
            multiple_of=model.network.downsampling_factor,
            needed=needed,
        )
        foreground = probabilities[card.foreground_channel]
        if mask is not None:
            foreground = foreground * mask
        prediction = BoundaryPrediction(probabilities[card.boundary_channel], foreground)
        labels = segment_from_boundaries(prediction, voxel_size=phantom.voxel_size).labels
        scores.append(match_instances(phantom.labels, labels, 0.5).f1)
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=parse_triple, default=DEFAULT_PATCH)
    parser.add_argument("--windows", type=int, default=3, help="phantom windows per round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--f1-seeds", default="", help="held-out seeds, e.g. 10000,10001")
    parser.add_argument("--f1-shape", type=parse_triple, default=(25, 512, 512))
    parser.add_argument(
        "--f1-engines", default="", help="engines to score, e.g. torch-float32,openvino-float32"
    )
    parser.add_argument("--note", default="", help="conditions, e.g. 'under load'")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = load_model(default_weights_path(), device="cpu")
    runners = engine_runners(model)
    windows = phantom_windows(tuple(args.window), args.windows)
    seconds = time_interleaved(runners, windows, args.repeats)
    differences = probability_differences(runners, windows)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = {name: medians[name] / medians["torch-float32"] for name in runners}
    seeds = [int(seed) for seed in args.f1_seeds.split(",") if seed.strip()]
    phantoms = [make_phantom(tuple(args.f1_shape), seed=seed) for seed in seeds]
    scored = [name for name in args.f1_engines.split(",") if name] or list(runners)
    scored = ["torch-float32", *(name for name in scored if name != "torch-float32")]
    f1 = {name: phantom_f1(runners[name], model, phantoms) for name in scored} if seeds else {}

    print(
        f"| engine | s / window {tuple(args.window)} | ratio to torch-float32 | "
        "MAE boundary | MAE foreground |" + (" F1@0.5 | ΔF1 |" if f1 else "")
    )
    print("|---|---|---|---|---|" + ("---|---|" if f1 else ""))
    for name in runners:
        row = (
            f"| {name} | {medians[name]:.3f} | {ratios[name]:.2f} | "
            f"{differences[name][0]:.4f} | {differences[name][1]:.4f} |"
        )
        if name in f1:
            row += f" {f1[name]:.4f} | {f1[name] - f1['torch-float32']:+.4f} |"
        elif f1:
            row += " | |"
        print(row)
    cpu, flags = cpu_description()
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": cpu,
        "flags": flags,
        "threads": torch.get_num_threads(),
        # oneDNN's (PyTorch's and OpenVINO's convolutions) instruction-set cap, e.g. AVX2
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "native_bf16": cpu_has_fast_bfloat16(),
        "weights": model.card.name,
        "window": list(args.window),
        "windows": args.windows,
        "repeats": args.repeats,
        "note": args.note,
        "median_seconds": {name: round(value, 4) for name, value in medians.items()},
        "ratio_to_torch_float32": {name: round(value, 3) for name, value in ratios.items()},
        "probability_mae_boundary_foreground": differences,
        "f1_seeds": seeds,
        "f1_shape": list(args.f1_shape) if seeds else None,
        "f1_at_0_5": {name: round(value, 4) for name, value in f1.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()

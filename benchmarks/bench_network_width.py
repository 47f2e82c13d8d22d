"""What a wider U-Net costs: training-step and inference-window times per ``f_maps``.

For each width, one randomly initialised UNet3D (the bundled architecture, 4 levels) is
timed, interleaved over ``--repeats`` rounds so that the widths share the machine's
conditions: a training step (forward, loss, backward, Adam step) on a batch of 2 patches of
32 x 128 x 128 as ``germseg train`` uses, and inference on one 2 x 32 x 256 x 256 window as
``germseg segment`` uses, in float32 and in bfloat16 autocast. Prints medians and the
ratio to the first width and appends one JSON record to ``results/bench_network_width.jsonl``.

Usage:
    python benchmarks/bench_network_width.py [--widths 16,24,32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from segmentation.inference import cpu_has_fast_bfloat16
from segmentation.model import ModelCard, build_network

RESULTS = Path(__file__).parent / "results" / "bench_network_width.jsonl"


def _time(function, *arguments) -> float:
    start = time.perf_counter()
    function(*arguments)
    return time.perf_counter() - start


def training_step(network, optimizer, batch: torch.Tensor, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        output = network(batch)
    loss = output.float().sigmoid().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def inference_window(network, window: torch.Tensor, bf16: bool) -> None:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        network(window)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="16,24,32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    torch.manual_seed(0)
    networks = {w: build_network(ModelCard(name=f"f{w}", f_maps=w)) for w in widths}
    optimizers = {w: torch.optim.Adam(n.parameters(), lr=1e-4) for w, n in networks.items()}
    batch = torch.randn(2, 2, 32, 128, 128)
    window = torch.randn(1, 2, 32, 256, 256)
    precisions = [False, True] if cpu_has_fast_bfloat16() else [False]
    times: dict[str, list[float]] = {}
    for w, network in networks.items():  # warm-up
        for bf16 in precisions:
            training_step(network, optimizers[w], batch, bf16)
            network.eval()
            inference_window(network, window, bf16)
            network.train()
    for _ in range(args.repeats):
        for w, network in networks.items():
            for bf16 in precisions:
                tag = "bf16" if bf16 else "fp32"
                network.train()
                step = _time(training_step, network, optimizers[w], batch, bf16)
                network.eval()
                infer = _time(inference_window, network, window, bf16)
                times.setdefault(f"train_f{w}_{tag}", []).append(step)
                times.setdefault(f"window_f{w}_{tag}", []).append(infer)
    medians = {key: round(statistics.median(values), 3) for key, values in times.items()}
    print("| f_maps | precision | training step (s) | ratio | inference window (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for w in widths:
        for bf16 in precisions:
            tag = "bf16" if bf16 else "fp32"
            train, infer = medians[f"train_f{w}_{tag}"], medians[f"window_f{w}_{tag}"]
            base_train = medians[f"train_f{widths[0]}_{tag}"]
            base_infer = medians[f"window_f{widths[0]}_{tag}"]
            print(
                f"| {w} | {tag} | {train:.2f} | {train / base_train:.2f} | {infer:.2f} | "
                f"{infer / base_infer:.2f} |"
            )
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "native_bf16": cpu_has_fast_bfloat16(),
        "repeats": args.repeats,
        "medians_seconds": medians,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()

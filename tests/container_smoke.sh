#!/usr/bin/env bash
# Build the germseg image and check it end to end: /api/health, segment a phantom stack via
# POST /api/segment, poll the job, download the label TIFF and check it holds cells.
#
# Needs a container engine: podman by default (CONTAINER_ENGINE=docker also works). On
# machines without a Docker engine or registry access, run
# /work/shared/tools/local-container-engine.sh first: it installs podman and imports a local
# debian:bookworm-slim base image.
# The build uses pip's find-links folder (from `pip config`, e.g. /opt/wheels) instead of the
# PyTorch CPU index when there is one: -v DIR:/wheels:ro --build-arg PIP_FIND_LINKS=/wheels.
# Without bundled weights (weights/germseg_unet3d.pt) a small random network is mounted.
#
# Usage: tests/container_smoke.sh        (env: CONTAINER_ENGINE, GERMSEG_SMOKE_IMAGE, PYTHON)
set -euo pipefail

ENGINE=${CONTAINER_ENGINE:-podman}
IMAGE=${GERMSEG_SMOKE_IMAGE:-localhost/germseg:smoke}
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME="germseg-smoke-$$"
WORK=$(mktemp -d)

cleanup() {
  "$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v "$ENGINE" >/dev/null || { echo "container_smoke: $ENGINE not found" >&2; exit 2; }

build_args=()
find_links=$("$PYTHON" -m pip config get global.find-links 2>/dev/null || true)
if [ -n "$find_links" ] && [ -d "$find_links" ]; then
  build_args+=(-v "$find_links:/wheels:ro" --build-arg PIP_EXTRA_INDEX_URL= --build-arg PIP_FIND_LINKS=/wheels)
fi
format_args=()
if [ "$(basename "$ENGINE")" = podman ]; then
  format_args+=(--format docker)   # keeps HEALTHCHECK (the OCI format drops it)
fi

start=$(date +%s)
"$ENGINE" build "${format_args[@]}" "${build_args[@]}" -t "$IMAGE" "$ROOT"
build_seconds=$(( $(date +%s) - start ))
size=$("$ENGINE" image inspect "$IMAGE" --format '{{.Size}}')

run_args=()
if [ ! -f "$ROOT/weights/germseg_unet3d.pt" ]; then
  echo "container_smoke: no bundled weights; mounting a small random network"
  mkdir -p "$WORK/weights"
  PYTHONPATH="$ROOT" "$PYTHON" - "$WORK/weights/germseg_unet3d.pt" <<'PY'
import sys
import torch
from segmentation.model import ModelCard, build_network, save_checkpoint
torch.manual_seed(0)
card = ModelCard(name="smoke-random", f_maps=4, num_levels=2)
save_checkpoint(sys.argv[1], build_network(card), card, epoch=0)
PY
  chmod -R a+rX "$WORK/weights"
  run_args+=(-v "$WORK/weights:/weights:ro" -e GERMSEG_WEIGHTS=/weights/germseg_unet3d.pt)
fi

PYTHONPATH="$ROOT" "$PYTHON" - "$WORK" <<'PY'
import sys
from segmentation.synthetic import write_phantom
write_phantom(sys.argv[1], (16, 128, 128), seed=11)
PY

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$(date +%s)
"$ENGINE" run -d --name "$NAME" -p "127.0.0.1:$port:8000" "${run_args[@]}" "$IMAGE" >/dev/null

"$PYTHON" - "http://127.0.0.1:$port" "$WORK/image.tif" "$start" "$build_seconds" "$size" <<'PY'
import io
import sys
import time

import httpx
import numpy as np
import tifffile

url, stack, started, build_seconds, size = sys.argv[1:]
deadline = time.time() + 180
while True:
    try:
        health = httpx.get(f"{url}/api/health", timeout=5).json()
        break
    except (httpx.HTTPError, ValueError):
        if time.time() > deadline:
            sys.exit("container_smoke: /api/health did not answer within 180 s")
        time.sleep(1)
ready_seconds = time.time() - float(started)
print(f"health: {health} ({ready_seconds:.0f} s after start)")

begin = time.time()
with open(stack, "rb") as handle:
    response = httpx.post(
        f"{url}/api/segment",
        files={"file": ("phantom.tif", handle, "image/tiff")},
        data={"min_size": "50"},
        timeout=120,
    )
response.raise_for_status()
job_id = response.json()["job_id"]
while True:
    status = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
    if status["status"] in ("done", "failed"):
        break
    if time.time() - begin > 300:
        sys.exit(f"container_smoke: job still {status['status']} after 300 s")
    time.sleep(0.5)
if status["status"] != "done":
    sys.exit(f"container_smoke: job failed: {status['error']}")
labels_name = status["outputs"]["labels"]
download = httpx.get(f"{url}/api/jobs/{job_id}/files/{labels_name}", timeout=60)
download.raise_for_status()
labels = tifffile.imread(io.BytesIO(download.content))
n_cells = int(labels.max())
if labels.shape != (16, 128, 128) or not np.issubdtype(labels.dtype, np.integer) or n_cells < 1:
    sys.exit(f"container_smoke: bad labels {labels.shape} {labels.dtype} max {n_cells}")
bad = httpx.get(f"{url}/api/jobs/{job_id}/files/..%2F..%2Fetc%2Fpasswd", timeout=10)
if bad.status_code != 404:
    sys.exit(f"container_smoke: traversal attempt answered {bad.status_code}")
print(
    f"SMOKE OK: {n_cells} cells, upload->result {time.time() - begin:.1f} s "
    f"(timings {status['timings']}), build {build_seconds} s, "
    f"image {int(size) / 1e9:.2f} GB, ready {ready_seconds:.0f} s after start"
)
PY

if [ "$(basename "$ENGINE")" = podman ]; then
  "$ENGINE" healthcheck run "$NAME" && echo "container_smoke: HEALTHCHECK passes"
fi
"$ENGINE" logs "$NAME" 2>&1 | tail -n 5

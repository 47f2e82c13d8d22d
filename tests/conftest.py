"""Fixtures shared by the web-app tests: a tiny model, a live server on a free port, and
``germseg serve`` in a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch

from segmentation.model import LoadedModel, ModelCard, build_network
from segmentation.model.checkpoint import save_checkpoint


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    """A seeded, randomly initialised two-level UNet3D on the CPU."""
    torch.manual_seed(0)
    card = ModelCard(name="tiny-test", f_maps=4, num_levels=2)
    return LoadedModel(build_network(card).eval(), card, torch.device("cpu"))


@contextlib.contextmanager
def _serve_in_thread(app) -> Iterator[str]:
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def serve_app() -> Callable:
    """``with serve_app(app) as url:`` runs a FastAPI app with uvicorn on 127.0.0.1."""
    return _serve_in_thread


@pytest.fixture(scope="session")
def tiny_weights(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved as a checkpoint with its card, for ``germseg serve --weights``."""
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    return save_checkpoint(path, tiny_model.network, tiny_model.card, epoch=0)


@contextlib.contextmanager
def _germseg_serve(
    weights: Path, results_dir: Path, environment: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``germseg serve`` in a subprocess on a free port until its health answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "segmentation", "serve", "--weights", str(weights),
               "--device", "cpu", "--results-dir", str(results_dir), "--port", str(port)]
    log = open(results_dir.parent / f"serve-{port}.log", "wb")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(environment or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert process.poll() is None, (results_dir.parent / f"serve-{port}.log").read_text()
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)
        log.close()


@pytest.fixture(scope="session")
def germseg_serve() -> Callable:
    """``with germseg_serve(weights, results_dir) as (url, process):`` runs ``germseg serve``."""
    return _germseg_serve

"""Fixtures shared by the web-app tests: a tiny model and a live server on a free port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import torch

from segmentation.model import LoadedModel, ModelCard, build_network


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

"""Assemble the app (REST API, then the Gradio UI at "/") and serve it with uvicorn."""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import gradio as gr
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import segmentation
from app.api import api_router
from app.jobs import JobManager
from app.middleware import BearerTokenMiddleware, UploadLimitMiddleware
from app.settings import Settings
from app.ui import CSS, build_ui
from segmentation.errors import GermsegError
from segmentation.model import LoadedModel, load_model
from segmentation.synthetic import write_phantom

logger = logging.getLogger(__name__)

#: The bundled example: a small phantom, generated at start-up. This seed's window shows
#: small germ cells around the rachis and a large oocyte (checked by eye on mid-z planes).
EXAMPLE_SHAPE = (24, 256, 256)
EXAMPLE_SEED = 14
EXAMPLE_NAME = "germline_example.tif"


def available_devices(model: LoadedModel) -> tuple[str, ...]:
    """Devices a job may choose, the model's own first."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    own = model.device.type
    return (own, *[device for device in devices if device != own])


def ensure_example(directory: Path) -> Path:
    """Write the example phantom stack into ``directory`` unless it is already there."""
    path = directory / f"seed{EXAMPLE_SEED}" / EXAMPLE_NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            image_path, _ = write_phantom(scratch, EXAMPLE_SHAPE, EXAMPLE_SEED)
            shutil.move(image_path, path)
    return path


def _one_line(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query"))
        problems.append(f"{where}: {item.get('msg', 'invalid value')}")
    return "; ".join(problems) or "invalid request"


def _ui_login(token: str | None) -> dict[str, object]:
    """Keyword arguments that make the web UI ask for the API token once (a login page).

    Gradio's login keeps the session in a cookie, so the token is asked for once per
    browser session; any user name is accepted, the password must be the token.
    """
    if not token:
        return {}

    def check(_: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), token.encode())

    return {
        "auth": check,
        "auth_message": "This server needs its API token: enter it as the password "
        "(any user name).",
    }


def create_app(model: LoadedModel, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app: ``/api/*`` and ``/docs`` first, then the Gradio UI mounted at ``/``.

    Parameters
    ----------
    model : LoadedModel
        The network, loaded once; all jobs use it on a single worker thread.
    settings : Settings, optional
        Limits and locations; defaults from the ``GERMSEG_*`` environment variables.

    Notes
    -----
    The job manager is ``app.state.manager``; it is closed when the app shuts down.
    """
    settings = settings or Settings.from_environment()
    manager = JobManager(model, settings)
    devices = available_devices(model)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        manager.close()

    app = FastAPI(
        title="germseg",
        version=segmentation.__version__,
        description="3D cell segmentation of two-channel C. elegans germline stacks.",
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _one_line(error)})

    app.include_router(api_router(manager, devices))

    try:
        example_path: Path | None = ensure_example(settings.example_dir)
    except (OSError, GermsegError):
        logger.exception("could not write the example stack; 'Try an example' is hidden")
        example_path = None
    ttl_seconds = max(3600, int(settings.results_ttl_hours * 3600))
    blocks = build_ui(manager, devices, example_path, delete_cache=(3600, ttl_seconds))
    blocks.queue(max_size=settings.max_queue, default_concurrency_limit=1)
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.api_token:
        app.add_middleware(BearerTokenMiddleware, token=settings.api_token)
    return gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        max_file_size=settings.max_upload_bytes,
        ssr_mode=False,
        css=CSS,
        theme=gr.themes.Soft(),
        footer_links=["api"],
        **_ui_login(settings.api_token),
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    weights: str | Path | None = None,
    device: str = "auto",
    results_dir: str | Path | None = None,
) -> None:
    """Load the model once and serve the app until interrupted (``germseg serve``).

    Raises
    ------
    segmentation.errors.GermsegError
        When the weights cannot be loaded or a setting is invalid (the CLI prints it as one
        ``error:`` line and exits with status 2).
    """
    import uvicorn

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings = Settings.from_environment(results_dir=results_dir)
    model = load_model(weights, device)
    app = create_app(model, settings)
    logger.info("serving germseg on http://%s:%d (model %s on %s, results in %s)",
                host, port, model.card.name, model.device, settings.results_dir)
    uvicorn.run(app, host=host, port=port, log_level="info")

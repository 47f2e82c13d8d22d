"""REST API under ``/api``: health, submit a stack, poll a job, download its files, resubmit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse

import segmentation
from app.jobs import (
    JobManager,
    JobRequest,
    JobStateError,
    QueueFullError,
    UploadTooLargeError,
)
from app.requests import build_request
from segmentation.errors import InputError
from segmentation.inference.engines import engine_precision, resolve_engine
from segmentation.parameters import (
    DEFAULT_AUTOCAST,
    DEFAULT_CUTOFF,
    DEFAULT_EDGE_WEIGHTS,
    DEFAULT_ENGINE,
    DEFAULT_FOOTPRINT,
    DEFAULT_FOREGROUND_SEED_DISTANCE,
    DEFAULT_FRAGMENT_RATIO,
    DEFAULT_MAX_SIZE,
    DEFAULT_METHOD,
    DEFAULT_MIN_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_PATCH,
    DEFAULT_RESAMPLE_Z,
    DEFAULT_RIM_DISTANCE,
    DEFAULT_TEST_TIME_FLIP,
    DEFAULT_THRESHOLD,
    SegmentationParameters,
    installed_engines,
)

DEFAULT_PATCH_TEXT = ",".join(str(size) for size in DEFAULT_PATCH)
#: Defaults of the parameters that have no ``DEFAULT_*`` constant of their own.
SEGMENTATION_DEFAULTS = SegmentationParameters()


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no job {job_id!r}; it may have expired")


def _queue_full(error: QueueFullError) -> HTTPException:
    """HTTP 503 with ``Retry-After``: the queue is full, the client should come back later."""
    return HTTPException(
        status_code=503, detail=str(error), headers={"Retry-After": str(error.retry_after)}
    )


def _accepted(job_id: str) -> JSONResponse:
    return JSONResponse(
        status_code=202, content={"job_id": job_id, "status_url": f"/api/jobs/{job_id}"}
    )


def api_router(manager: JobManager, devices: tuple[str, ...]) -> APIRouter:
    """The ``/api`` routes, bound to one job manager.

    Parameters
    ----------
    manager : JobManager
        Where jobs are submitted and looked up.
    devices : tuple of str
        Devices a job may ask for; the first is the default.
    """
    router = APIRouter(prefix="/api", tags=["germseg"])

    @router.get("/health")
    def health() -> dict:
        """Server status, the loaded model, its device, the engine and precision a job gets by
        default, the engines installed, the germseg version."""
        model = manager.model
        engine = resolve_engine(DEFAULT_ENGINE, model.device, model.network)
        return {
            "status": "ok",
            "model": model.card.name,
            "device": str(model.device),
            "engine": engine,
            "precision": engine_precision(engine, DEFAULT_AUTOCAST, model.device),
            "engines": list(installed_engines()),
            "version": segmentation.__version__,
        }

    @router.post("/segment", status_code=202)
    def segment(
        file: Annotated[UploadFile, File(description="Two-channel 3D stack (.tif/.tiff or .nd2)")],
        threshold: Annotated[float, Form()] = DEFAULT_THRESHOLD,
        # sizes are read as numbers and checked as whole numbers by the parameters, so
        # that a value like 1e23 gets the message every other entry point gives
        footprint: Annotated[float, Form()] = DEFAULT_FOOTPRINT,
        cutoff: Annotated[float, Form()] = DEFAULT_CUTOFF,
        method: Annotated[str, Form()] = DEFAULT_METHOD,
        edge_weights: Annotated[
            str,
            Form(description="learned (the model's edge classifier) or boundary (face mean)"),
        ] = DEFAULT_EDGE_WEIGHTS,
        min_size: Annotated[float, Form()] = DEFAULT_MIN_SIZE,
        max_size: Annotated[
            float | None, Form(description="Largest cell in voxels; empty or 0: no limit")
        ] = DEFAULT_MAX_SIZE,
        min_volume_um3: Annotated[
            float | None,
            Form(description="Smallest cell in µm³; needs the voxel size in the file"),
        ] = SEGMENTATION_DEFAULTS.min_volume_um3,
        max_volume_um3: Annotated[
            float | None,
            Form(description="Largest cell in µm³; needs the voxel size in the file"),
        ] = SEGMENTATION_DEFAULTS.max_volume_um3,
        fragment_ratio: Annotated[
            float,
            Form(description="Merge segments up to this fraction of the cell they mostly touch"),
        ] = DEFAULT_FRAGMENT_RATIO,
        rim_distance: Annotated[
            float,
            Form(description="Cells take back unlabelled foreground up to this many pixels away"),
        ] = DEFAULT_RIM_DISTANCE,
        foreground_seed_distance: Annotated[
            float,
            Form(
                description="Foreground flooded from the background gets seeds at least this "
                "many pixels deep; 0: off"
            ),
        ] = DEFAULT_FOREGROUND_SEED_DISTANCE,
        patch: Annotated[str, Form(description="Network window Z,Y,X")] = DEFAULT_PATCH_TEXT,
        overlap: Annotated[float, Form()] = DEFAULT_OVERLAP,
        test_time_flip: Annotated[
            bool,
            Form(
                description="Also run the network on the Z-flipped stack and average "
                "(about twice as slow)"
            ),
        ] = DEFAULT_TEST_TIME_FLIP,
        resample_z: Annotated[
            bool,
            Form(
                description="Resample a stack whose Z step lies outside the model's trained "
                "range along Z for the network (e.g. a nearly isotropic crop)"
            ),
        ] = DEFAULT_RESAMPLE_Z,
        channels: Annotated[str | None, Form(description="Source channels I,J")] = None,
        voxel_size: Annotated[
            str | None,
            Form(description="Voxel size Z,Y,X in µm instead of the file's; empty: the file's"),
        ] = None,
        gif: Annotated[bool, Form()] = JobRequest.gif,
        device: Annotated[str, Form()] = devices[0],
        engine: Annotated[
            str,
            Form(description="What runs the network: auto, torch, openvino or onnxruntime"),
        ] = DEFAULT_ENGINE,
    ) -> JSONResponse:
        """Queue one stack for segmentation; poll ``/api/jobs/{job_id}`` for the result."""
        try:
            request = build_request(
                threshold=threshold,
                footprint=footprint,
                cutoff=cutoff,
                method=method,
                edge_weights=edge_weights,
                min_size=min_size,
                max_size=max_size,
                min_volume_um3=min_volume_um3,
                max_volume_um3=max_volume_um3,
                fragment_ratio=fragment_ratio,
                rim_distance=rim_distance,
                foreground_seed_distance=foreground_seed_distance,
                patch=patch,
                overlap=overlap,
                test_time_flip=test_time_flip,
                resample_z=resample_z,
                device=device,
                devices=devices,
                engine=engine,
                channels=channels,
                voxel_size=voxel_size,
                gif=gif,
            )
            job = manager.submit(file.file, file.filename, request)
        except UploadTooLargeError as error:
            raise HTTPException(status_code=413, detail=str(error)) from error
        except InputError as error:
            raise HTTPException(status_code=422, detail=str(error)) from error
        except QueueFullError as error:
            raise _queue_full(error) from error
        finally:
            file.file.close()
        return _accepted(job.id)

    @router.post("/jobs/{job_id}/resubmit", status_code=202)
    def resubmit(job_id: str) -> JSONResponse:
        """Run an interrupted or failed job again, with its stored parameters and upload."""
        try:
            job = manager.resubmit(job_id)
        except KeyError as error:
            raise _not_found(job_id) from error
        except JobStateError as error:
            raise HTTPException(status_code=409, detail=str(error)) from error
        except QueueFullError as error:
            raise _queue_full(error) from error
        return _accepted(job.id)

    @router.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        """Status, progress (0..1), queue position, produced files, cell count, timings."""
        status = manager.status(job_id)
        if status is None:
            raise _not_found(job_id)
        return status

    @router.get("/jobs/{job_id}/files/{name}")
    def job_file(job_id: str, name: str) -> FileResponse:
        """Download one of the files a finished job produced (names from ``files``)."""
        job = manager.get(job_id)
        if job is None:
            raise _not_found(job_id)
        path = job.files.get(name)
        if path is None or not path.is_file():
            raise HTTPException(status_code=404, detail=f"job {job_id} has no file {name!r}")
        return FileResponse(path, filename=path.name)

    return router

"""Jobs: one uploaded stack each, run in FIFO order by a single worker thread.

A job folder ``<results_dir>/<job id>/`` is created by the server; the upload is stored there
under a sanitised name while the job waits and runs, then deleted, and the results stay until
the sweep expires them. The REST API and the UI submit to the same :class:`JobManager`, so
the network never runs twice at once.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from app.prediction_cache import PredictionCache, file_sha256
from app.settings import Settings
from segmentation.errors import GermsegError, InputError
from segmentation.inference import precision_name
from segmentation.io import read_stack, voxel_size_for_distances
from segmentation.model import LoadedModel, resolve_device
from segmentation.parameters import InferenceParameters, SegmentationParameters
from segmentation.pipeline import (
    check_voxel_size_for_volumes,
    predict,
    segment_from_boundaries,
    write_outputs,
)

logger = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed"]
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME_LENGTH = 100
_COPY_CHUNK_BYTES = 1 << 20
#: Fractions of a job's progress bar at which its stages end.
_READ_END, _NETWORK_END, _SEGMENT_END = 0.05, 0.85, 0.95


class UploadTooLargeError(InputError):
    """The upload exceeds the server's size limit (HTTP 413)."""


class QueueFullError(GermsegError):
    """Too many jobs are waiting (HTTP 503)."""


def safe_file_name(name: str | None) -> str:
    """A file name that is safe to create in a server folder, derived from a client's name.

    Only the last path component is kept, characters outside ``[A-Za-z0-9._-]`` become
    ``_``, and a name that is empty or starts with a dot gets the prefix ``stack``, so the
    result can never leave its folder or hide.

    Examples
    --------
    >>> safe_file_name("../../etc/passwd")
    'passwd'
    >>> safe_file_name("my stack (1).tif")
    'my_stack_1_.tif'
    """
    base = re.split(r"[/\\]", name or "")[-1]
    cleaned = _UNSAFE_CHARACTERS.sub("_", base).rstrip(".")
    if not cleaned or cleaned.startswith("."):
        cleaned = "stack" + cleaned
    if len(cleaned) > _MAX_NAME_LENGTH:
        suffix = Path(cleaned).suffix[:10]
        cleaned = cleaned[: _MAX_NAME_LENGTH - len(suffix)] + suffix
    return cleaned


@dataclass(frozen=True)
class JobRequest:
    """What to do with one stack."""

    segmentation: SegmentationParameters = SegmentationParameters()
    inference: InferenceParameters = InferenceParameters()
    channels: tuple[int, int] | None = None
    #: (z, y, x) in µm instead of the file's metadata
    voxel_size: tuple[float, float, float] | None = None
    gif: bool = True


@dataclass
class Job:
    """State of one job; mutated only by the :class:`JobManager`."""

    id: str
    source_name: str
    directory: Path
    input_path: Path
    content_sha256: str
    request: JobRequest
    status: JobStatus = "queued"
    stage: str = "queued"
    progress: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)
    n_cells: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    network_reused: bool | None = None
    device: str | None = None
    #: What the network computed in: float32, bfloat16 or float16.
    precision: str | None = None
    #: (z, y, x) in µm from the request or the file; None when unknown
    voxel_size: tuple[float, float, float] | None = None
    warnings: tuple[str, ...] = ()
    created: float = field(default_factory=time.time)
    finished: float | None = None
    finished_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def stem(self) -> str:
        return Path(self.source_name).stem

    @property
    def files(self) -> dict[str, Path]:
        """Produced files by name: the only names that can be downloaded."""
        return {path.name: path for path in self.outputs.values()}

    def to_dict(self, queue_position: int | None = None) -> dict:
        """JSON-ready state, as served by ``GET /api/jobs/{id}``."""
        return {
            "job_id": self.id,
            "status": self.status,
            "stage": self.stage,
            "progress": round(self.progress, 4),
            "queue_position": queue_position,
            "source": self.source_name,
            "files": list(self.files),
            "outputs": {kind: path.name for kind, path in self.outputs.items()},
            "n_cells": self.n_cells,
            "timings": {stage: round(seconds, 3) for stage, seconds in self.timings.items()},
            "network_reused": self.network_reused,
            "device": self.device,
            "precision": self.precision,
            "voxel_size_um": list(self.voxel_size) if self.voxel_size else None,
            "warnings": list(self.warnings),
            "error": self.error,
            "parameters": {
                **self.request.segmentation.as_dict(),
                "patch": list(self.request.inference.patch),
                "overlap": self.request.inference.overlap,
                "test_time_flip": self.request.inference.test_time_flip,
                "device": self.request.inference.device,
                "channels": list(self.request.channels) if self.request.channels else None,
                "voxel_size": list(self.request.voxel_size) if self.request.voxel_size else None,
                "gif": self.request.gif,
            },
        }


class JobManager:
    """Stores jobs, runs them one at a time on a worker thread, and expires old results.

    Parameters
    ----------
    model : LoadedModel
        The network, loaded once; the worker moves it when a job asks for another device.
    settings : Settings
        Results folder, limits and expiry.
    """

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        self.settings = settings
        self.cache = PredictionCache(settings.cache_bytes)
        self._model = model
        self._jobs: dict[str, Job] = {}
        self._pending: deque[str] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        self._worker = threading.Thread(target=self._work, name="germseg-worker", daemon=True)
        self._sweeper = threading.Thread(target=self._sweep_periodically, name="germseg-sweep",
                                         daemon=True)
        self._worker.start()
        self._sweeper.start()

    @property
    def model(self) -> LoadedModel:
        return self._model

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """All jobs still known, oldest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.created)

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to run, 2 for the one after, ...; None when not waiting."""
        with self._lock:
            try:
                return self._pending.index(job_id) + 1
            except ValueError:
                return None

    def status(self, job_id: str) -> dict | None:
        job = self.get(job_id)
        return None if job is None else job.to_dict(self.queue_position(job_id))

    def submit(self, stream: BinaryIO, file_name: str | None, request: JobRequest) -> Job:
        """Store an upload in a new job folder, check that it reads as a stack, and queue it.

        Raises
        ------
        UploadTooLargeError
            When the upload is larger than ``settings.max_upload_mb``.
        InputError
            When the file cannot be read as a stack (the reader's one-line message), or when
            µm³ volume limits are asked for and the file records no voxel size.
        QueueFullError
            When ``settings.max_queue`` jobs are already waiting.
        """
        with self._lock:
            if len(self._pending) >= self.settings.max_queue:
                raise QueueFullError(
                    f"{len(self._pending)} jobs are already waiting; try again later"
                )
        job_id = uuid.uuid4().hex
        source_name = safe_file_name(file_name)
        directory = self.settings.results_dir / job_id
        input_path = directory / "input" / source_name
        input_path.parent.mkdir(parents=True)
        try:
            self._store_upload(stream, input_path, source_name)
            stack = read_stack(
                input_path,
                channels=request.channels,
                max_voxels=self.settings.max_voxels,
                voxel_size=request.voxel_size,
            )
            check_voxel_size_for_volumes(stack.voxel_size, request.segmentation, source_name)
            job = Job(job_id, source_name, directory, input_path, file_sha256(input_path), request)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        with self._wake:
            self._jobs[job_id] = job
            self._pending.append(job_id)
            self._wake.notify()
        logger.info("job %s queued: %s", job_id, source_name)
        return job

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Block until the job is done or failed; False on timeout."""
        return job.finished_event.wait(timeout)

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete finished job folders older than the expiry; return the deleted job ids.

        Only folders named like a job id are touched, and never a queued or running job's.
        """
        now = time.time() if now is None else now
        max_age = self.settings.results_ttl_hours * 3600
        deleted = []
        for directory in self.settings.results_dir.iterdir():
            if not (directory.is_dir() and JOB_ID_PATTERN.match(directory.name)):
                continue
            with self._lock:
                job = self._jobs.get(directory.name)
                if job is not None and job.finished is None:
                    continue
                finished = job.finished if job is not None else directory.stat().st_mtime
                if now - finished <= max_age:
                    continue
                self._jobs.pop(directory.name, None)
            shutil.rmtree(directory, ignore_errors=True)
            deleted.append(directory.name)
        if deleted:
            logger.info("expired %d job(s)", len(deleted))
        return deleted

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current job, and the sweep."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        self._worker.join(timeout)
        self._sweeper.join(timeout)

    def _store_upload(self, stream: BinaryIO, path: Path, name: str) -> None:
        limit = self.settings.max_upload_bytes
        written = 0
        with open(path, "wb") as handle:
            for chunk in iter(lambda: stream.read(_COPY_CHUNK_BYTES), b""):
                written += len(chunk)
                if written > limit:
                    raise UploadTooLargeError(
                        f"{name} is larger than the upload limit of "
                        f"{self.settings.max_upload_mb:g} MiB; crop the stack or raise "
                        "GERMSEG_MAX_UPLOAD_MB"
                    )
                handle.write(chunk)

    def _next_job(self) -> Job | None:
        with self._wake:
            while not self._pending and not self._stopping.is_set():
                self._wake.wait()
            if self._stopping.is_set():
                return None
            return self._jobs[self._pending.popleft()]

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._run(job)
                job.status = "done"
            except GermsegError as error:
                job.status, job.error = "failed", str(error)
                logger.warning("job %s failed: %s", job.id, error)
            except Exception as error:
                job.status = "failed"
                job.error = f"internal error ({type(error).__name__}: {error}); please report it"
                logger.exception("job %s failed unexpectedly", job.id)
            finally:
                job.input_path.unlink(missing_ok=True)
                shutil.rmtree(job.input_path.parent, ignore_errors=True)
                job.stage = job.status
                job.finished = time.time()
                job.finished_event.set()

    def _model_on(self, device: str) -> LoadedModel:
        target = resolve_device(device)
        if target != self._model.device:
            self._model.network.to(target)
            self._model = dataclasses.replace(self._model, device=target)
        return self._model

    def _run(self, job: Job) -> None:
        job.status, job.stage = "running", "reading"
        request = job.request
        start = time.perf_counter()
        stack = read_stack(job.input_path, channels=request.channels,
                           max_voxels=self.settings.max_voxels, voxel_size=request.voxel_size)
        job.voxel_size = stack.voxel_size
        job.warnings = stack.warnings
        job.timings["read"] = time.perf_counter() - start
        job.progress = _READ_END

        model = self._model_on(request.inference.device)
        job.device = str(model.device)
        job.precision = precision_name(request.inference.autocast, model.device)
        key = (
            job.content_sha256,
            request.channels,
            tuple(request.inference.patch),
            request.inference.overlap,
            request.inference.batch_size,
            request.inference.autocast,
            request.inference.test_time_flip,
            job.device,
            str(model.weights_path),
            model.card.name,
        )
        prediction = self.cache.get(key)
        job.network_reused = prediction is not None
        if prediction is None:
            job.stage = "network"

            def report(done: int, total: int) -> None:
                fraction = done / total if total else 1.0
                job.progress = _READ_END + (_NETWORK_END - _READ_END) * fraction

            prediction = predict(stack, model, request.inference, progress=report)
            self.cache.put(key, prediction)
            job.timings["network"] = prediction.seconds
        job.progress = _NETWORK_END

        job.stage = "segmentation"
        result = segment_from_boundaries(
            prediction, request.segmentation, voxel_size_for_distances(stack.voxel_size)
        )
        job.timings.update(result.timings)
        job.n_cells = result.n_cells
        job.progress = _SEGMENT_END

        job.stage = "writing"
        start = time.perf_counter()
        outputs = write_outputs(job.directory, job.stem, stack, prediction, result,
                                gif=request.gif)
        job.timings["outputs"] = time.perf_counter() - start
        start = time.perf_counter()
        outputs["zip"] = _zip_outputs(job.directory / f"{job.stem}_results.zip", outputs)
        job.timings["zip"] = time.perf_counter() - start
        job.timings["total"] = sum(job.timings.values())
        job.outputs = outputs
        job.progress = 1.0

    def _sweep_periodically(self) -> None:
        while not self._stopping.wait(self.settings.sweep_interval_seconds):
            try:
                self.sweep()
            except OSError:
                logger.exception("results sweep failed")


def _zip_outputs(path: Path, outputs: dict[str, Path]) -> Path:
    """All outputs of a job in one zip file."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for output in outputs.values():
            archive.write(output, arcname=output.name)
    return path

"""Jobs: one uploaded stack each, run in FIFO order by a single worker thread.

A job folder ``<results_dir>/<job id>/`` is created by the server; the upload is stored there
under a sanitised name while the job waits and runs, and the results stay until the sweep
expires them. The REST API and the UI submit to the same :class:`JobManager`, so the network
never runs twice at once.

Jobs survive a restart: each job's record is written atomically to ``job.json`` in its
folder on every change of state, and a new :class:`JobManager` reloads them. Finished jobs
stay downloadable until they expire; jobs that were queued or running come back
``interrupted`` and keep their upload, so that :meth:`JobManager.resubmit` can run them again.
The upload of a job that is done (or failed on its input) is deleted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from app.prediction_cache import PredictionCache, file_sha256
from app.settings import Settings
from segmentation.errors import GermsegError, InputError
from segmentation.inference.anisotropy import network_planes
from segmentation.inference.engines import engine_precision, resolve_engine
from segmentation.io import Stack, read_stack, voxel_size_for_distances
from segmentation.model import LoadedModel, resolve_device
from segmentation.parameters import InferenceParameters, SegmentationParameters
from segmentation.pipeline import (
    PARTIAL_SUFFIX,
    WATERSHED_PARAMETERS,
    cells_from_superpixels,
    check_voxel_size_for_volumes,
    predict,
    superpixels_from_boundaries,
    write_outputs,
)

logger = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed", "interrupted"]
#: States in which a job can be run again with :meth:`JobManager.resubmit`.
RESUBMITTABLE: tuple[JobStatus, ...] = ("interrupted", "failed")
#: A job's record in its folder.
RECORD_NAME = "job.json"
RECORD_VERSION = 1
INTERRUPTED_REASON = (
    "the server stopped before this job finished; resubmit it "
    "(POST /api/jobs/{job_id}/resubmit) or upload the stack again"
)
#: How the error of a job that failed on a bug (not on its input) starts.
INTERNAL_ERROR_PREFIX = "internal error"
#: Seconds a client refused for a full queue is asked to wait (HTTP ``Retry-After``).
RETRY_AFTER_SECONDS = 10
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME_LENGTH = 100
_COPY_CHUNK_BYTES = 1 << 20
#: Predictions whose boundary TIFF a re-segmentation may link instead of writing again.
_REMEMBERED_BOUNDARY_FILES = 64
#: Fractions of a job's progress bar at which its stages end.
_READ_END, _NETWORK_END, _SEGMENT_END = 0.05, 0.85, 0.95


class UploadTooLargeError(InputError):
    """The upload exceeds the server's size limit (HTTP 413)."""


class QueueFullError(GermsegError):
    """Too many jobs are waiting (HTTP 503); ``retry_after`` is in seconds."""

    retry_after = RETRY_AFTER_SECONDS


class JobStateError(GermsegError):
    """The job cannot do what was asked in its state (HTTP 409)."""


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

    def to_record(self) -> dict[str, Any]:
        """JSON-ready parameters, read back by :meth:`from_record`."""
        return {
            "segmentation": dataclasses.asdict(self.segmentation),
            "inference": dataclasses.asdict(self.inference),
            "channels": list(self.channels) if self.channels else None,
            "voxel_size": list(self.voxel_size) if self.voxel_size else None,
            "gif": self.gif,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> JobRequest:
        """The request stored by :meth:`to_record`, checked again by the parameter classes.

        Raises
        ------
        InputError
            When a stored value is no longer accepted.
        KeyError, TypeError
            When the record is not a request's.
        """
        return cls(
            segmentation=SegmentationParameters(**_tuples(record["segmentation"])),
            inference=InferenceParameters(**_tuples(record["inference"])),
            channels=tuple(record["channels"]) if record["channels"] else None,
            voxel_size=tuple(record["voxel_size"]) if record["voxel_size"] else None,
            gif=bool(record["gif"]),
        )


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples they were."""
    return {
        key: tuple(value) if isinstance(value, list) else value for key, value in values.items()
    }


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
    #: What ran the network: torch, openvino or onnxruntime.
    engine: str | None = None
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

    @property
    def record_path(self) -> Path:
        return self.directory / RECORD_NAME

    def to_record(self) -> dict[str, Any]:
        """Everything needed to serve the job again after a restart (``job.json``)."""
        return {
            "version": RECORD_VERSION,
            "job_id": self.id,
            "source": self.source_name,
            "input": self.input_path.relative_to(self.directory).as_posix(),
            "content_sha256": self.content_sha256,
            "request": self.request.to_record(),
            "status": self.status,
            "stage": self.stage,
            "progress": self.progress,
            "outputs": {kind: path.name for kind, path in self.outputs.items()},
            "n_cells": self.n_cells,
            "timings": self.timings,
            "error": self.error,
            "network_reused": self.network_reused,
            "device": self.device,
            "precision": self.precision,
            "engine": self.engine,
            "voxel_size_um": list(self.voxel_size) if self.voxel_size else None,
            "warnings": list(self.warnings),
            "created": self.created,
            "finished": self.finished,
        }

    @classmethod
    def from_record(cls, directory: Path, record: dict[str, Any]) -> Job:
        """A job as :meth:`to_record` stored it in ``directory``.

        Raises
        ------
        ValueError, KeyError, TypeError
            When the record is not a job's, or not this folder's.
        """
        if record.get("version") != RECORD_VERSION or record.get("job_id") != directory.name:
            raise ValueError(f"{directory / RECORD_NAME} is not a record of this job folder")
        job = cls(
            id=directory.name,
            source_name=safe_file_name(record["source"]),
            directory=directory,
            input_path=directory / "input" / safe_file_name(Path(record["input"]).name),
            content_sha256=str(record["content_sha256"]),
            request=JobRequest.from_record(record["request"]),
            status=record["status"],
            stage=str(record["stage"]),
            progress=float(record["progress"]),
            outputs={
                str(kind): directory / safe_file_name(name)
                for kind, name in record["outputs"].items()
            },
            n_cells=record["n_cells"],
            timings={str(key): float(value) for key, value in record["timings"].items()},
            error=record["error"],
            network_reused=record["network_reused"],
            device=record["device"],
            precision=record["precision"],
            engine=record.get("engine"),
            voxel_size=tuple(record["voxel_size_um"]) if record["voxel_size_um"] else None,
            warnings=tuple(record["warnings"]),
            created=float(record["created"]),
            finished=None if record["finished"] is None else float(record["finished"]),
        )
        if job.status not in (*RESUBMITTABLE, "queued", "running", "done"):
            raise ValueError(f"unknown job status {job.status!r}")
        return job

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
            "engine": self.engine,
            "voxel_size_um": list(self.voxel_size) if self.voxel_size else None,
            "warnings": list(self.warnings),
            "error": self.error,
            "parameters": {
                **self.request.segmentation.as_dict(),
                "patch": list(self.request.inference.patch),
                "overlap": self.request.inference.overlap,
                "test_time_flip": self.request.inference.test_time_flip,
                "resample_z": self.request.inference.resample_z,
                "device": self.request.inference.device,
                "engine": self.request.inference.engine,
                "channels": list(self.request.channels) if self.request.channels else None,
                "voxel_size": list(self.request.voxel_size) if self.request.voxel_size else None,
                "gif": self.request.gif,
            },
        }


class JobManager:
    """Stores jobs, runs them one at a time on a worker thread, and expires old results.

    On start, the jobs recorded in ``settings.results_dir`` are reloaded (see the module
    notes); those that were queued or running come back ``interrupted``.

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
        # boundary TIFFs written, by prediction key and voxel size: a re-segmentation of the
        # same prediction links the earlier file instead of encoding it again
        self._boundary_files: OrderedDict[tuple, Path] = OrderedDict()
        self._model = model
        self._jobs: dict[str, Job] = {}
        self._pending: deque[str] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        self._reload()
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
        """Store an upload in a new job folder, check its header as a stack, and queue it.

        Only the TIFF's header is read here (shape, axes, channels, data type, decoded size,
        voxel size); the worker decodes the stack once, when the job runs.

        Raises
        ------
        UploadTooLargeError
            When the upload is larger than ``settings.max_upload_mb``.
        InputError
            When the file cannot be read as a stack (the reader's one-line message), when it
            would decode to more than ``settings.max_decoded_mb``, or when µm³ volume limits
            are asked for and the file records no voxel size.
        QueueFullError
            When ``settings.max_queue`` jobs are already waiting.
        """
        self._check_queue()
        job_id = uuid.uuid4().hex
        source_name = safe_file_name(file_name)
        directory = self.settings.results_dir / job_id
        input_path = directory / "input" / source_name
        input_path.parent.mkdir(parents=True)
        try:
            self._store_upload(stream, input_path, source_name)
            header = self._read(input_path, request, decode=False)
            check_voxel_size_for_volumes(header.voxel_size, request.segmentation, source_name)
            job = Job(job_id, source_name, directory, input_path, file_sha256(input_path), request)
            self._enqueue(job)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        logger.info("job %s queued: %s", job_id, source_name)
        return job

    def resubmit(self, job_id: str) -> Job:
        """Queue an interrupted or failed job again, with its stored parameters and upload.

        Raises
        ------
        KeyError
            When there is no such job.
        JobStateError
            When the job is not interrupted or failed, or its upload is no longer stored.
        QueueFullError
            When ``settings.max_queue`` jobs are already waiting.
        """
        with self._lock:
            job = self._jobs[job_id]
            if job.status not in RESUBMITTABLE:
                raise JobStateError(
                    f"job {job_id} is {job.status}; only interrupted or failed jobs can be "
                    "resubmitted"
                )
            if not job.input_path.is_file():
                raise JobStateError(
                    f"job {job_id} has no stored upload any more; upload the stack again"
                )
            if len(self._pending) >= self.settings.max_queue:
                raise QueueFullError(self._queue_full_message())
            _reset(job)
        self._enqueue(job)
        logger.info("job %s resubmitted: %s", job_id, job.source_name)
        return job

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Block until the job is done, failed or interrupted; False on timeout."""
        return job.finished_event.wait(timeout)

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete finished job folders older than the expiry; return the deleted job ids.

        Only folders named like a job id are touched, and never a queued or running job's.
        Interrupted jobs keep their upload until they expire; a finished job's leftover
        upload (kept by a crash between finishing and cleaning up) is deleted.
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
                    if job is not None and not _keeps_upload(job):
                        shutil.rmtree(job.input_path.parent, ignore_errors=True)
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

    def _queue_full_message(self) -> str:
        return (
            f"{len(self._pending)} jobs are already waiting; try again in "
            f"{QueueFullError.retry_after} s"
        )

    def _check_queue(self) -> None:
        with self._lock:
            if len(self._pending) >= self.settings.max_queue:
                raise QueueFullError(self._queue_full_message())

    def _enqueue(self, job: Job) -> None:
        self._save(job)
        with self._wake:
            self._jobs[job.id] = job
            self._pending.append(job.id)
            self._wake.notify()

    def _read(self, path: Path, request: JobRequest, *, decode: bool) -> Stack:
        return read_stack(
            path,
            channels=request.channels,
            max_voxels=self.settings.max_voxels,
            voxel_size=request.voxel_size,
            max_decoded_bytes=self.settings.max_decoded_bytes,
            decode=decode,
        )

    def _save(self, job: Job) -> None:
        """Write the job's record atomically (a temporary file renamed over ``job.json``)."""
        temporary = job.directory / f".{RECORD_NAME}.{uuid.uuid4().hex}.tmp"
        try:
            temporary.write_text(json.dumps(job.to_record()), encoding="utf-8")
            os.replace(temporary, job.record_path)
        except OSError:
            temporary.unlink(missing_ok=True)
            logger.exception("could not write the record of job %s", job.id)

    def _reload(self) -> None:
        """Load the jobs recorded in the results folder; unfinished ones become interrupted."""
        for directory in sorted(self.settings.results_dir.iterdir()):
            if not (JOB_ID_PATTERN.match(directory.name) and (directory / RECORD_NAME).is_file()):
                continue
            try:
                record = json.loads((directory / RECORD_NAME).read_text(encoding="utf-8"))
                job = Job.from_record(directory, record)
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("ignoring the unreadable job record in %s: %s", directory, error)
                continue
            if job.finished is None:
                _interrupt(job)
                self._save(job)
            job.finished_event.set()
            self._jobs[job.id] = job
        if self._jobs:
            interrupted = sum(job.status == "interrupted" for job in self._jobs.values())
            logger.info("reloaded %d job(s), %d interrupted", len(self._jobs), interrupted)

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
                job.error = (
                    f"{INTERNAL_ERROR_PREFIX} ({type(error).__name__}: {error}); please report "
                    "it, or resubmit the job"
                )
                logger.exception("job %s failed unexpectedly", job.id)
            finally:
                if not _keeps_upload(job):
                    shutil.rmtree(job.input_path.parent, ignore_errors=True)
                job.stage = job.status
                job.finished = time.time()
                self._save(job)
                job.finished_event.set()

    def _model_on(self, device: str) -> LoadedModel:
        target = resolve_device(device)
        if target != self._model.device:
            self._model.network.to(target)
            self._model = dataclasses.replace(self._model, device=target)
        return self._model

    def _enter_stage(self, job: Job, stage: str) -> None:
        job.stage = stage
        self._save(job)

    def _run(self, job: Job) -> None:
        job.status = "running"
        self._enter_stage(job, "reading")
        request = job.request
        start = time.perf_counter()
        stack = self._read(job.input_path, request, decode=True)
        job.voxel_size = stack.voxel_size
        job.warnings = stack.warnings
        job.timings["read"] = time.perf_counter() - start
        job.progress = _READ_END

        model = self._model_on(request.inference.device)
        job.device = str(model.device)
        job.engine = resolve_engine(request.inference.engine, model.device, model.network)
        job.precision = engine_precision(job.engine, request.inference.autocast, model.device)
        key = (
            job.content_sha256,
            request.channels,
            tuple(request.inference.patch),
            request.inference.overlap,
            request.inference.batch_size,
            request.inference.autocast,
            job.engine,
            request.inference.test_time_flip,
            # the planes the network sees: only a voxel size that changes them changes
            # the prediction (segmentation.inference.anisotropy)
            network_planes(stack.image.shape[1], stack.voxel_size, model.card.z_step_range)
            if request.inference.resample_z
            else stack.image.shape[1],
            job.device,
            str(model.weights_path),
            model.card.name,
        )
        prediction = self.cache.get(key)
        job.network_reused = prediction is not None
        if prediction is None:
            self._enter_stage(job, "network")

            def report(done: int, total: int) -> None:
                fraction = done / total if total else 1.0
                job.progress = _READ_END + (_NETWORK_END - _READ_END) * fraction

            prediction = predict(stack, model, request.inference, progress=report)
            self.cache.put(key, prediction)
            job.timings["network"] = prediction.seconds
        job.progress = _NETWORK_END

        self._enter_stage(job, "segmentation")
        distances = voxel_size_for_distances(stack.voxel_size)
        # a change of the later parameters only (cutoff, sizes, ...) reuses the super-pixels
        watershed_key = (
            key,
            distances,
            *(getattr(request.segmentation, name) for name in WATERSHED_PARAMETERS),
        )
        superpixels = self.cache.get(watershed_key)
        if superpixels is None:
            start = time.perf_counter()
            superpixels = superpixels_from_boundaries(prediction, request.segmentation, distances)
            job.timings["watershed"] = time.perf_counter() - start
            superpixels.flags.writeable = False
            self.cache.put(watershed_key, superpixels)
        result = cells_from_superpixels(superpixels, prediction, request.segmentation, distances)
        job.timings.update(result.timings)
        job.n_cells = result.n_cells
        job.progress = _SEGMENT_END

        self._enter_stage(job, "writing")
        start = time.perf_counter()
        boundaries_key = (key, stack.voxel_size)
        outputs = write_outputs(job.directory, job.stem, stack, prediction, result,
                                gif=request.gif,
                                boundaries_file=self._boundary_files.get(boundaries_key))
        self._remember_boundaries(boundaries_key, outputs["boundaries"])
        job.timings["outputs"] = time.perf_counter() - start
        start = time.perf_counter()
        outputs["zip"] = _zip_outputs(job.directory / f"{job.stem}_results.zip", outputs)
        job.timings["zip"] = time.perf_counter() - start
        job.timings["total"] = sum(job.timings.values())
        job.outputs = outputs
        job.progress = 1.0

    def _remember_boundaries(self, key: tuple, path: Path) -> None:
        """Note the boundary TIFF of a prediction (the newest file, the last 64 predictions)."""
        self._boundary_files[key] = path
        self._boundary_files.move_to_end(key)
        while len(self._boundary_files) > _REMEMBERED_BOUNDARY_FILES:
            self._boundary_files.popitem(last=False)

    def _sweep_periodically(self) -> None:
        while not self._stopping.wait(self.settings.sweep_interval_seconds):
            try:
                self.sweep()
            except OSError:
                logger.exception("results sweep failed")


def _keeps_upload(job: Job) -> bool:
    """Whether a finished job keeps its upload for a resubmission until it expires.

    Interrupted jobs keep it, and so do jobs that failed with an internal error (which may
    not happen again); a job that failed on its input would fail again.
    """
    if job.status == "interrupted":
        return True
    return job.status == "failed" and (job.error or "").startswith(INTERNAL_ERROR_PREFIX)


def _interrupt(job: Job) -> None:
    """Mark a job that was queued or running when the server stopped."""
    job.status = job.stage = "interrupted"
    job.error = INTERRUPTED_REASON.format(job_id=job.id)
    job.finished = time.time()
    for partial in job.directory.glob(f"*{PARTIAL_SUFFIX}"):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def _reset(job: Job) -> None:
    """Clear what an earlier run of the job left, to queue it again."""
    job.status = job.stage = "queued"
    job.progress = 0.0
    job.outputs = {}
    job.n_cells = job.error = job.network_reused = job.device = job.precision = job.engine = None
    job.timings = {}
    job.warnings = ()
    job.finished = None
    job.finished_event = threading.Event()


#: Output suffixes whose files are compressed already.
_ALREADY_COMPRESSED = frozenset({".tif", ".tiff", ".gif"})


def _zip_outputs(path: Path, outputs: dict[str, Path]) -> Path:
    """All outputs of a job in one zip file, written under a temporary name and renamed.

    TIFFs (deflate-compressed by germseg) and GIFs are stored as they are: compressing
    them again costs about 1.8 s a full stack and saves nothing.
    """
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with zipfile.ZipFile(
        partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
    ) as archive:
        for output in outputs.values():
            stored = output.suffix.lower() in _ALREADY_COMPRESSED
            archive.write(
                output,
                arcname=output.name,
                compress_type=zipfile.ZIP_STORED if stored else None,
            )
    os.replace(partial, path)
    return path

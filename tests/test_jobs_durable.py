"""Jobs survive restarts: records in job.json, interrupted jobs, resubmission, expiry."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
import torch

from segmentation.model import LoadedModel
from segmentation.parameters import InferenceParameters, SegmentationParameters
from segmentation.synthetic import write_phantom

pytest.importorskip("fastapi")

from app.jobs import (  # noqa: E402
    RECORD_NAME,
    RETRY_AFTER_SECONDS,
    JobManager,
    JobRequest,
    JobStateError,
)
from app.settings import Settings  # noqa: E402

SMALL_SHAPE = (16, 96, 96)
#: A stack that keeps the tiny network busy for seconds (many windows, flipped twice).
SLOW_SHAPE = (32, 256, 256)
FAST_FORM = {"patch": "16,64,64", "min_size": "10", "gif": "false"}
SLOW_FORM = {**FAST_FORM, "overlap": "0.5", "test_time_flip": "true"}
REQUEST = JobRequest(
    segmentation=SegmentationParameters(min_size=10),
    inference=InferenceParameters(patch=(16, 64, 64), device="cpu"),
    gif=False,
)


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom(tmp_path_factory.mktemp("small"), SMALL_SHAPE, seed=3)[0]


@pytest.fixture(scope="module")
def slow_stack(small_stack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = tifffile.imread(small_stack)
    tiled = np.tile(image, (1, 2, 3, 3))[:, : SLOW_SHAPE[0], : SLOW_SHAPE[1], : SLOW_SHAPE[2]]
    path = tmp_path_factory.mktemp("slow") / "slow.tif"
    tifffile.imwrite(path, np.ascontiguousarray(tiled), metadata={"axes": "CZYX"})
    return path


def _manager(model: LoadedModel, results: Path, **settings: float) -> JobManager:
    return JobManager(model, Settings(results_dir=results, **settings))


def _submit_and_wait(manager: JobManager, path: Path) -> str:
    with open(path, "rb") as handle:
        job = manager.submit(handle, path.name, REQUEST)
    assert manager.wait(job, timeout=60) and job.status == "done", job.error
    return job.id


def _fake_unfinished_job(results: Path, done_job_id: str, new_id: str, status: str) -> Path:
    """Copy a done job's record as a queued or running one with its upload and a half file."""
    record = json.loads((results / done_job_id / RECORD_NAME).read_text())
    directory = results / new_id
    (directory / "input").mkdir(parents=True)
    source = results.parent / "inputs" / record["source"]
    (directory / "input" / record["source"]).write_bytes(source.read_bytes())
    (directory / "s_labels.tif.partial").write_bytes(b"half")
    record.update(job_id=new_id, status=status, stage="network", outputs={}, finished=None)
    (directory / RECORD_NAME).write_text(json.dumps(record))
    return directory


def test_records_reload_and_unfinished_jobs_come_back_interrupted(
    tiny_model: LoadedModel, small_stack: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / small_stack.name).write_bytes(small_stack.read_bytes())
    manager = _manager(tiny_model, results)
    try:
        done_id = _submit_and_wait(manager, small_stack)
        before = manager.status(done_id)
    finally:
        manager.close()
    assert not list(results.glob(f"*/.{RECORD_NAME}.*"))  # no temporary record is left
    running = _fake_unfinished_job(results, done_id, "a" * 32, "running")
    _fake_unfinished_job(results, done_id, "b" * 32, "queued")
    (results / ("c" * 32)).mkdir()
    (results / ("c" * 32) / RECORD_NAME).write_text("{not json")

    manager = _manager(tiny_model, results)
    try:
        assert manager.status(done_id) == before
        assert all(path.is_file() for path in manager.get(done_id).files.values())
        assert manager.get("c" * 32) is None
        for job_id in ("a" * 32, "b" * 32):
            status = manager.status(job_id)
            assert status["status"] == "interrupted" and status["stage"] == "interrupted"
            assert "server stopped before this job finished" in status["error"]
            assert f"/api/jobs/{job_id}/resubmit" in status["error"]
        assert not list(running.glob("*.partial"))
        assert json.loads((running / RECORD_NAME).read_text())["status"] == "interrupted"

        with pytest.raises(JobStateError, match="is done; only interrupted or failed"):
            manager.resubmit(done_id)
        job = manager.resubmit("a" * 32)
        assert job.status == "queued" and job.error is None
        assert manager.wait(job, timeout=60) and job.status == "done", job.error
        assert not (running / "input").exists()
        assert manager.status("a" * 32)["n_cells"] == before["n_cells"]
        with pytest.raises(JobStateError, match="is done"):
            manager.resubmit("a" * 32)
    finally:
        manager.close()


def test_sweep_removes_expired_interrupted_jobs_and_leftover_uploads(
    tiny_model: LoadedModel, small_stack: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / small_stack.name).write_bytes(small_stack.read_bytes())
    manager = _manager(tiny_model, results)
    try:
        done_id = _submit_and_wait(manager, small_stack)
    finally:
        manager.close()
    interrupted = _fake_unfinished_job(results, done_id, "d" * 32, "running")
    leftover = results / done_id / "input" / "stale.tif"
    leftover.parent.mkdir()
    leftover.write_bytes(b"left behind by a crash")

    manager = _manager(tiny_model, results, results_ttl_hours=1.0)
    try:
        now = time.time()
        assert manager.sweep(now=now) == []
        assert not leftover.parent.exists() and (results / done_id / RECORD_NAME).is_file()
        assert (interrupted / "input").is_dir()  # kept for a resubmission until it expires
        assert sorted(manager.sweep(now=now + 7200)) == sorted([done_id, "d" * 32])
        assert not interrupted.exists() and not (results / done_id).exists()
        with pytest.raises(KeyError):
            manager.resubmit("d" * 32)
    finally:
        manager.close()


def _post(url: str, path: Path, form: dict[str, str]) -> str:
    with open(path, "rb") as handle:
        response = httpx.post(
            f"{url}/api/segment", files={"file": (path.name, handle)}, data=form, timeout=60
        )
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _wait(url: str, job_id: str, until: tuple[str, ...], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
        if status["status"] in until:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {until}: {status}")


def _download(url: str, job_id: str, name: str) -> bytes:
    response = httpx.get(f"{url}/api/jobs/{job_id}/files/{name}", timeout=30)
    assert response.status_code == 200, (name, response.text)
    return response.content


def test_sigkill_during_a_job_loses_nothing(
    germseg_serve, tiny_weights: Path, small_stack: Path, slow_stack: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    with germseg_serve(tiny_weights, results) as (url, process):
        done_id = _post(url, small_stack, FAST_FORM)
        done = _wait(url, done_id, ("done", "failed"))
        assert done["status"] == "done", done["error"]
        files = {name: _download(url, done_id, name) for name in done["files"]}
        later = [_post(url, slow_stack, SLOW_FORM), _post(url, slow_stack, SLOW_FORM),
                 _post(url, small_stack, FAST_FORM)]
        _wait(url, later[0], ("running", "done"))
        seen = {job_id: httpx.get(f"{url}/api/jobs/{job_id}").json()["status"]
                for job_id in later}
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    assert seen[later[2]] == "queued"

    with germseg_serve(tiny_weights, results) as (url, _):
        assert httpx.get(f"{url}/api/jobs/{done_id}").json() == done
        for name, content in files.items():
            assert _download(url, done_id, name) == content
        states = {job_id: httpx.get(f"{url}/api/jobs/{job_id}").json() for job_id in later}
        for job_id, state in states.items():
            # a job done before the kill stays done; every other one is interrupted
            expected = ("done",) if seen[job_id] == "done" else ("interrupted", "done")
            assert state["status"] in expected, (seen[job_id], state)
        assert states[later[2]]["status"] == "interrupted"
        assert "server stopped" in states[later[2]]["error"]
        assert not list(results.glob("*/*.partial"))

        response = httpx.post(f"{url}/api/jobs/{later[2]}/resubmit")
        assert response.status_code == 202
        assert response.json() == {"job_id": later[2], "status_url": f"/api/jobs/{later[2]}"}
        again = _wait(url, later[2], ("done", "failed"))
        assert again["status"] == "done", again["error"]
        assert again["parameters"] == states[later[2]]["parameters"]
        assert _download(url, later[2], again["outputs"]["labels"])[:2] in (b"II", b"MM")
        conflict = httpx.post(f"{url}/api/jobs/{done_id}/resubmit")
        assert conflict.status_code == 409 and "only interrupted or failed" in conflict.text
        missing = httpx.post(f"{url}/api/jobs/{'0' * 32}/resubmit")
        assert missing.status_code == 404


class _BlockedNetwork(torch.nn.Module):
    """Waits for a gate before each forward pass, so that jobs pile up in the queue."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.gate = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.gate.wait(30)
        return self.network(x)


def test_a_full_queue_answers_503_with_retry_after(
    tiny_model: LoadedModel, small_stack: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from app.server import create_app

    blocked = _BlockedNetwork(tiny_model.network)
    model = LoadedModel(blocked, tiny_model.card, tiny_model.device)
    settings = Settings(results_dir=tmp_path / "results", max_queue=1)
    with TestClient(create_app(model, settings)) as client:
        try:
            def post() -> httpx.Response:
                with open(small_stack, "rb") as handle:
                    return client.post("/api/segment", files={"file": ("s.tif", handle)},
                                       data=FAST_FORM)

            running = post().json()["job_id"]
            deadline = time.monotonic() + 30
            while client.get(f"/api/jobs/{running}").json()["status"] == "queued":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert post().status_code == 202
            refused = post()
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            assert refused.json()["detail"] == (
                f"1 jobs are already waiting; try again in {RETRY_AFTER_SECONDS} s"
            )
        finally:
            blocked.gate.set()

"""REST API of the web app: health, docs, jobs end to end, caching, limits and bad input."""

from __future__ import annotations

import csv
import io
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.inference import cpu_has_fast_bfloat16
from segmentation.inference.engines import openvino_cpu_has_bfloat16
from segmentation.io import read_stack
from segmentation.model import LoadedModel, ModelCard, build_network
from segmentation.synthetic import write_phantom

fastapi_testclient = pytest.importorskip("fastapi.testclient")

from app.jobs import JobManager, JobRequest, safe_file_name  # noqa: E402
from app.prediction_cache import PredictionCache  # noqa: E402
from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from segmentation.parameters import (  # noqa: E402
    DEFAULT_PATCH,
    InferenceParameters,
    SegmentationParameters,
    installed_engines,
)
from segmentation.pipeline import BoundaryPrediction  # noqa: E402

STACK_SHAPE = (16, 96, 96)
#: Small windows and cells so that jobs on the tiny stack are quick and keep some cells.
FAST_FORM = {"patch": "16,64,64", "min_size": "10"}


def tiny_model(name: str = "tiny-test") -> LoadedModel:
    torch.manual_seed(0)
    card = ModelCard(name=name, f_maps=4, num_levels=2)
    return LoadedModel(build_network(card).eval(), card, torch.device("cpu"))


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image_path, _ = write_phantom(tmp_path_factory.mktemp("phantom"), STACK_SHAPE, seed=3)
    return image_path


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(results_dir=tmp_path_factory.mktemp("results"), max_upload_mb=8)
    with fastapi_testclient.TestClient(create_app(tiny_model(), settings)) as test_client:
        yield test_client


def submit(client, path: Path, name: str | None = None, **form: str):
    with open(path, "rb") as handle:
        return client.post(
            "/api/segment",
            files={"file": (name or path.name, handle, "image/tiff")},
            data={**FAST_FORM, **form},
        )


def expected_cpu_precision(engine: str) -> str:
    """What ``engine`` computes in on this CPU with ``autocast="auto"``: bfloat16 where the
    CPU has native bfloat16 and, for OpenVINO, its CPU plugin offers it; else float32."""
    bfloat16 = cpu_has_fast_bfloat16() and (engine == "torch" or openvino_cpu_has_bfloat16())
    return "bfloat16" if bfloat16 else "float32"


def wait_for(client, job_id: str, timeout: float = 60.0) -> tuple[dict, list[str]]:
    """Poll a job until it finishes; return its last status and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        seen.append(status["status"])
        if status["status"] in ("done", "failed"):
            return status, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {status}")


def test_health_names_model_device_and_version(client) -> None:
    import segmentation

    response = client.get("/api/health")
    assert response.status_code == 200
    engine = "openvino" if "openvino" in installed_engines() else "torch"
    assert response.json() == {
        "status": "ok",
        "model": "tiny-test",
        "device": "cpu",
        "engine": engine,
        "precision": expected_cpu_precision(engine),
        "engines": list(installed_engines()),
        "version": segmentation.__version__,
    }


def test_engine_form_field_runs_that_engine_or_is_refused_in_one_line(
    client, stack_path: Path
) -> None:
    refused = submit(client, stack_path, engine="tensorrt")
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("unknown engine 'tensorrt': use auto or torch")
    # another overlap than the other tests', so that this run never fills their cache entry
    response = submit(client, stack_path, engine="torch", overlap="0.1")
    status, _ = wait_for(client, response.json()["job_id"])
    assert status["status"] == "done", status["error"]
    assert status["engine"] == "torch" and status["parameters"]["engine"] == "torch"


def test_docs_and_ui_are_both_served(client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/api/health", "/api/segment", "/api/jobs/{job_id}"} <= set(schema["paths"])
    form = schema["components"]["schemas"]
    segment_form = next(v for k, v in form.items() if k.startswith("Body_segment"))
    properties = segment_form["properties"]
    assert properties["patch"]["default"] == ",".join(map(str, DEFAULT_PATCH))
    assert properties["overlap"]["default"] == InferenceParameters().overlap
    exposed = SegmentationParameters().as_dict()
    del exposed["foreground_threshold"]
    for name, default in exposed.items():
        assert properties[name].get("default") == default, name
    ui = client.get("/")
    assert ui.status_code == 200 and "gradio" in ui.text.lower()


def test_segment_end_to_end(client, stack_path: Path, tmp_path: Path) -> None:
    response = submit(client, stack_path, name="my stack (1).tif")
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    status, seen = wait_for(client, job_id)
    assert seen[0] in ("queued", "running", "done")
    assert status["status"] == "done", status["error"]
    assert status["progress"] == 1.0 and status["queue_position"] is None
    assert status["source"] == "my_stack_1_.tif"
    assert status["network_reused"] is False and status["device"] == "cpu"
    assert status["precision"] == expected_cpu_precision(status["engine"])
    # the tiny model is germseg's U-Net: auto runs it with OpenVINO where that is installed
    assert status["engine"] == ("openvino" if "openvino" in installed_engines() else "torch")
    assert status["parameters"]["engine"] == "auto"
    assert {"read", "network", "watershed", "outputs", "total"} <= set(status["timings"])
    expected = {
        f"my_stack_1__{suffix}"
        for suffix in ("labels.tif", "boundaries.tif", "preview.gif", "cells.csv", "results.zip")
    }
    assert set(status["files"]) == expected

    labels_response = client.get(f"/api/jobs/{job_id}/files/my_stack_1__labels.tif")
    assert labels_response.status_code == 200
    labels = tifffile.imread(io.BytesIO(labels_response.content))
    assert labels.shape == STACK_SHAPE and np.issubdtype(labels.dtype, np.integer)
    n_cells = status["n_cells"]
    assert n_cells >= 1 and set(np.unique(labels)) - {0} == set(range(1, n_cells + 1))

    table = client.get(f"/api/jobs/{job_id}/files/my_stack_1__cells.csv").text
    assert len(list(csv.DictReader(io.StringIO(table)))) == status["n_cells"]
    archive = client.get(f"/api/jobs/{job_id}/files/my_stack_1__results.zip").content
    entries = zipfile.ZipFile(io.BytesIO(archive)).infolist()
    assert {entry.filename for entry in entries} == expected - {"my_stack_1__results.zip"}
    # compressed TIFFs and the GIF are stored as they are, the table is deflated
    for entry in entries:
        already_compressed = entry.filename.endswith((".tif", ".gif"))
        assert entry.compress_type == (
            zipfile.ZIP_STORED if already_compressed else zipfile.ZIP_DEFLATED
        )
    gif = client.get(f"/api/jobs/{job_id}/files/my_stack_1__preview.gif")
    assert gif.content[:6] == b"GIF89a"


def test_same_file_reuses_the_network_unless_inference_changes(client, stack_path: Path) -> None:
    def run(**form: str) -> dict:
        return wait_for(client, submit(client, stack_path, gif="false", **form).json()["job_id"])[0]

    first = run(threshold="0.5")
    retuned = run(threshold="0.3", foreground_seed_distance="0")
    other_window = run(patch="16,48,48")
    flipped = run(threshold="0.3", test_time_flip="true")
    assert first["status"] == retuned["status"] == other_window["status"] == "done"
    assert flipped["status"] == "done" and flipped["network_reused"] is False
    assert flipped["parameters"]["test_time_flip"] is True
    assert first["parameters"]["test_time_flip"] is False
    assert retuned["network_reused"] is True and "network" not in retuned["timings"]
    assert retuned["parameters"]["threshold"] == 0.3
    assert retuned["parameters"]["foreground_seed_distance"] == 0
    assert first["parameters"]["foreground_seed_distance"] == 6
    assert other_window["network_reused"] is False
    assert "preview" not in retuned["outputs"]


def test_volume_limits_in_cubic_micrometres(client, stack_path: Path, tmp_path: Path) -> None:
    assert read_stack(stack_path).voxel_size is not None
    default = wait_for(client, submit(client, stack_path, gif="false").json()["job_id"])[0]
    huge = wait_for(
        client, submit(client, stack_path, gif="false", min_volume_um3="1e9").json()["job_id"]
    )[0]
    assert default["status"] == huge["status"] == "done"
    assert default["n_cells"] > 0 and huge["n_cells"] == 0
    assert huge["parameters"]["min_volume_um3"] == 1e9
    assert default["parameters"]["max_volume_um3"] is None

    uncalibrated = tmp_path / "uncalibrated.tif"
    tifffile.imwrite(uncalibrated, read_stack(stack_path).image.astype(np.uint16))
    assert read_stack(uncalibrated).voxel_size is None
    response = submit(client, uncalibrated, min_volume_um3="50")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "min_volume_um3 needs the voxel size" in detail and "uncalibrated.tif" in detail
    assert "min_size" in detail and "\n" not in detail
    assert submit(client, uncalibrated, min_volume_um3="").status_code == 202

    # a voxel size given with the upload makes the µm³ limits usable and is recorded
    given = wait_for(
        client,
        submit(
            client, uncalibrated, gif="false", min_volume_um3="1e9", voxel_size="0.8,0.2,0.2"
        ).json()["job_id"],
    )[0]
    assert given["status"] == "done" and given["n_cells"] == 0
    assert given["voxel_size_um"] == [0.8, 0.2, 0.2]
    assert given["parameters"]["voxel_size"] == [0.8, 0.2, 0.2]
    assert not any("voxel size" in warning for warning in given["warnings"])
    unknown = wait_for(client, submit(client, uncalibrated, gif="false").json()["job_id"])[0]
    assert unknown["voxel_size_um"] is None
    assert any("records no voxel size" in warning for warning in unknown["warnings"])


def _reader_message(path: Path) -> str:
    with pytest.raises(InputError) as error:
        read_stack(path)
    return str(error.value)


def test_bad_uploads_get_the_readers_one_line_message(client, tmp_path: Path) -> None:
    not_tiff = tmp_path / "notes.tif"
    not_tiff.write_bytes(b"this is not a TIFF file")
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.random.default_rng(0).integers(0, 4096, (2, 8, 64, 64), np.uint16))
    truncated = tmp_path / "cut.tif"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")

    for path in (not_tiff, flat, truncated, png):
        response = submit(client, path)
        assert response.status_code == 422, path.name
        detail = response.json()["detail"]
        assert detail == _reader_message(path) and "\n" not in detail


def test_too_large_upload_and_too_many_voxels_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.random.default_rng(1).integers(0, 4096, (2, 8, 256, 256), np.uint16))
    settings = Settings(results_dir=tmp_path / "results", max_upload_mb=0.5, max_voxels=4096)
    with fastapi_testclient.TestClient(create_app(tiny_model(), settings)) as small_client:
        response = submit(small_client, big)
        assert response.status_code == 413
        assert "larger than the limit of 0.5 MiB" in response.json()["detail"]
        just_over = tmp_path / "just_over.tif"
        just_over.write_bytes(bytes(int(0.5 * 2**20) + 1000))
        response = submit(small_client, just_over)
        assert response.status_code == 413
        assert response.json()["detail"].startswith("just_over.tif is larger than the upload")
        small = tmp_path / "small.tif"
        tifffile.imwrite(
            small,
            np.random.default_rng(2).integers(0, 99, (2, 4, 64, 64), np.uint16),
            photometric="minisblack",
        )
        response = submit(small_client, small)
        assert response.status_code == 422
        with pytest.raises(InputError) as error:
            read_stack(small, max_voxels=4096)
        assert response.json()["detail"] == str(error.value)
    assert not [p for p in (tmp_path / "results").iterdir() if p.name != "example"]


@pytest.mark.parametrize(
    ("form", "fragment"),
    [
        ({"threshold": "1.5"}, "threshold must be between 0 and 1"),
        ({"threshold": "abc"}, "threshold"),
        ({"method": "magic"}, "unknown method 'magic'"),
        ({"patch": "16,64"}, "invalid patch"),
        ({"channels": "0"}, "invalid channels"),
        ({"voxel_size": "0.8,0.2"}, "voxel size must be three positive numbers Z,Y,X in µm"),
        ({"device": "tpu"}, "device 'tpu' is not available"),
        ({"min_size": "100", "max_size": "50"}, "max_size (50) must be larger"),
        ({"min_volume_um3": "-5"}, "min_volume_um3 must be a positive volume"),
        ({"min_volume_um3": "90", "max_volume_um3": "40"}, "max_volume_um3 (40) must be larger"),
        ({"fragment_ratio": "-0.1"}, "fragment_ratio must be between 0 and 1"),
        ({"rim_distance": "-2"}, "rim_distance must be between 0 and 20"),
        ({"foreground_seed_distance": "-1"}, "foreground_seed_distance must be between 0 and 30"),
    ],
)
def test_bad_parameters_are_422_with_one_line(client, stack_path, form, fragment) -> None:
    response = submit(client, stack_path, **form)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and fragment in detail and "\n" not in detail


def test_unknown_jobs_files_and_traversal_are_404(client, stack_path: Path) -> None:
    assert client.get("/api/jobs/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.get("/api/jobs/nope/files/x_labels.tif").status_code == 404
    job_id = submit(client, stack_path).json()["job_id"]
    status, _ = wait_for(client, job_id)
    assert status["status"] == "done"
    for name in ("image_missing.tif", "..%2F..%2F..%2Fetc%2Fpasswd", "..%2Finput%2Fimage.tif"):
        response = client.get(f"/api/jobs/{job_id}/files/{name}")
        assert response.status_code == 404, name
    assert client.get(f"/api/jobs/{job_id}/files/../../../../etc/passwd").status_code == 404


def test_safe_file_name_never_leaves_the_folder() -> None:
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("C:\\data\\stack 1.tif") == "stack_1.tif"
    assert safe_file_name("..") == "stack"
    assert safe_file_name("...hidden.tif") == "stack...hidden.tif"
    assert safe_file_name(".tif") == "stack.tif"
    assert safe_file_name(None) == "stack"
    assert safe_file_name("ok-name_1.tiff") == "ok-name_1.tiff"
    assert len(safe_file_name("a" * 500 + ".tif")) == 100


def test_a_cutoff_change_reuses_the_superpixels_and_gives_the_same_cells(
    stack_path: Path, tmp_path: Path
) -> None:
    model = tiny_model()
    inference = InferenceParameters(patch=(16, 96, 96), device="cpu")

    def run(manager: JobManager, **segmentation) -> object:
        request = JobRequest(
            SegmentationParameters(threshold=0.5, **segmentation), inference, gif=False
        )
        with open(stack_path, "rb") as handle:
            job = manager.submit(handle, "stack.tif", request)
        assert manager.wait(job, timeout=60) and job.status == "done", job.error
        return job

    tuned = JobManager(model, Settings(results_dir=tmp_path / "tuned"))
    fresh = JobManager(model, Settings(results_dir=tmp_path / "fresh"))
    try:
        first = run(tuned, cutoff=0.6)
        recut = run(tuned, cutoff=0.3, min_size=50)
        # the same prediction's boundary TIFF is linked, not written again
        assert os.stat(recut.outputs["boundaries"]).st_ino == os.stat(
            first.outputs["boundaries"]
        ).st_ino
        recut_boundaries = tifffile.imread(recut.outputs["boundaries"])
        # results swept away: the next job writes its boundary TIFF itself
        first.outputs["boundaries"].unlink()
        recut.outputs["boundaries"].unlink()
        rethresholded = run(tuned, cutoff=0.3, footprint=9)
        reference = run(fresh, cutoff=0.3, min_size=50)
    finally:
        tuned.close()
        fresh.close()
    assert "watershed" in first.timings and "watershed" in reference.timings
    assert recut.network_reused and "watershed" not in recut.timings
    # a watershed parameter runs the watershed again (on the reused prediction)
    assert rethresholded.network_reused and "watershed" in rethresholded.timings
    labels = tifffile.imread(recut.outputs["labels"])
    np.testing.assert_array_equal(labels, tifffile.imread(reference.outputs["labels"]))
    assert labels.max() >= 1
    reference_boundaries = tifffile.imread(reference.outputs["boundaries"])
    np.testing.assert_array_equal(recut_boundaries, reference_boundaries)
    np.testing.assert_array_equal(
        tifffile.imread(rethresholded.outputs["boundaries"]), reference_boundaries
    )
    with zipfile.ZipFile(recut.outputs["zip"]) as archive:
        assert f"{recut.stem}_boundaries.tif" in archive.namelist()


class _GatedNetwork(torch.nn.Module):
    """Wraps a network: waits for a gate before each forward, and can be made to fail."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.gate = threading.Event()
        self.fail = False
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.gate.wait(30)
        if self.fail:
            raise RuntimeError("simulated crash")
        return self.network(x)


def test_one_job_at_a_time_in_order_and_a_crash_does_not_stop_the_worker(
    stack_path: Path, tmp_path: Path
) -> None:
    model = tiny_model()
    gated = _GatedNetwork(model.network)
    manager = JobManager(
        LoadedModel(gated, model.card, model.device), Settings(results_dir=tmp_path)
    )
    request = JobRequest(inference=InferenceParameters(patch=(16, 96, 96), device="cpu"))
    try:
        jobs = []
        for index in range(3):
            with open(stack_path, "rb") as handle:
                jobs.append(manager.submit(handle, f"s{index}.tif", request))
        deadline = time.monotonic() + 10
        while jobs[0].status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [job.status for job in jobs] == ["running", "queued", "queued"]
        assert [manager.queue_position(job.id) for job in jobs] == [None, 1, 2]
        assert manager.status(jobs[2].id)["queue_position"] == 2

        gated.fail = True
        gated.gate.set()
        assert manager.wait(jobs[0], timeout=30)
        assert jobs[0].status == "failed"
        assert "simulated crash" in jobs[0].error and "\n" not in jobs[0].error
        gated.fail = False
        assert manager.wait(jobs[1], timeout=30) and manager.wait(jobs[2], timeout=30)
        assert [job.status for job in jobs[1:]] == ["done", "done"]
        assert jobs[2].network_reused is True and gated.calls == 2
        assert not any((job.directory / "input").exists() for job in jobs[1:])
        # a crash keeps the upload, so the job can run again with one call
        assert jobs[0].input_path.is_file()
        again = manager.resubmit(jobs[0].id)
        assert again is jobs[0] and again.error is None
        assert manager.wait(again, timeout=30) and again.status == "done"
        assert not (again.directory / "input").exists()
    finally:
        gated.gate.set()
        manager.close()


def test_sweep_expires_only_old_finished_jobs(stack_path: Path, tmp_path: Path) -> None:
    settings = Settings(results_dir=tmp_path, results_ttl_hours=1.0)
    manager = JobManager(tiny_model(), settings)
    request = JobRequest(inference=InferenceParameters(patch=(16, 96, 96), device="cpu"))
    try:
        with open(stack_path, "rb") as handle:
            job = manager.submit(handle, "s.tif", request)
        assert manager.wait(job, timeout=60) and job.status == "done"
        unrelated = tmp_path / "example"
        unrelated.mkdir()
        assert manager.sweep(now=job.finished + 1800) == []
        assert job.directory.is_dir() and manager.get(job.id) is job
        assert manager.sweep(now=job.finished + 7200) == [job.id]
        assert not job.directory.exists() and manager.get(job.id) is None
        assert unrelated.is_dir()
    finally:
        manager.close()


def test_prediction_cache_is_bounded_by_bytes() -> None:
    def prediction(value: float) -> BoundaryPrediction:
        return BoundaryPrediction(np.full((10, 10, 10), value, np.float32), None)

    cache = PredictionCache(max_bytes=2 * 4000)
    cache.put(("a",), prediction(0.1))
    cache.put(("b",), prediction(0.2))
    assert cache.get(("a",)) is not None
    cache.put(("c",), prediction(0.3))
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None
    assert len(cache) == 2 and cache.total_bytes == 8000
    cache.put(("huge",), BoundaryPrediction(np.zeros((30, 30, 30), np.float32), None))
    assert cache.get(("huge",)) is None and len(cache) == 2


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = Settings.from_environment(
        {
            "GERMSEG_MAX_UPLOAD_MB": "12",
            "GERMSEG_RESULTS_TTL_HOURS": "0.5",
            "GERMSEG_RESULTS_DIR": str(tmp_path),
        },
        max_voxels=1000,
    )
    assert settings.max_upload_bytes == 12 * 2**20 and settings.results_ttl_hours == 0.5
    assert settings.results_dir == tmp_path and settings.max_voxels == 1000
    with pytest.raises(InputError, match="GERMSEG_CACHE_MB"):
        Settings.from_environment({"GERMSEG_CACHE_MB": "lots"})


def test_serve_without_weights_exits_with_one_line(tmp_path: Path, capsys) -> None:
    status = main(
        ["serve", "--weights", str(tmp_path / "missing.pt"), "--results-dir", str(tmp_path)]
    )
    message = capsys.readouterr().err
    assert status == 2
    assert message.startswith("error: weights file") and "missing.pt" in message
    assert "not found" in message and message.count("\n") == 1

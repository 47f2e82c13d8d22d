"""GERMSEG_API_TOKEN: REST and downloads need the bearer token, the web UI asks for it once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from segmentation.model import LoadedModel
from segmentation.synthetic import write_phantom

fastapi_testclient = pytest.importorskip("fastapi.testclient")

from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402

TOKEN = "correct-horse-battery-staple"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
FORM = {"patch": "16,64,64", "min_size": "10", "gif": "false"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom(tmp_path_factory.mktemp("phantom"), (16, 96, 96), seed=3)[0]


@pytest.fixture(scope="module")
def client(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(results_dir=tmp_path_factory.mktemp("results"), api_token=TOKEN)
    with fastapi_testclient.TestClient(create_app(tiny_model, settings)) as test_client:
        yield test_client


def _submit(client, stack: Path, headers: dict[str, str]):
    with open(stack, "rb") as handle:
        return client.post("/api/segment", files={"file": (stack.name, handle)}, data=FORM,
                           headers=headers)


def test_rest_and_downloads_need_the_token(client, stack: Path) -> None:
    assert client.get("/api/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = _submit(client, stack, headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"].startswith("missing or wrong API token")
    assert client.app.state.manager.jobs() == []

    response = _submit(client, stack, GOOD)
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 60
    while (status := client.get(f"/api/jobs/{job_id}", headers=GOOD).json())["status"] in (
        "queued", "running"
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status["status"] == "done", status["error"]
    labels = f"/api/jobs/{job_id}/files/{status['outputs']['labels']}"
    assert client.get(labels).status_code == 401
    assert client.get(f"/api/jobs/{job_id}").status_code == 401
    assert client.post(f"/api/jobs/{job_id}/resubmit").status_code == 401
    assert client.get(labels, headers=GOOD).status_code == 200
    assert client.post(f"/api/jobs/{job_id}/resubmit", headers=GOOD).status_code == 409


def test_the_web_ui_asks_for_the_token_once(tiny_model: LoadedModel, tmp_path: Path) -> None:
    settings = Settings(results_dir=tmp_path / "results", api_token=TOKEN)
    with fastapi_testclient.TestClient(create_app(tiny_model, settings)) as browser:
        assert browser.get("/").status_code == 200  # the page, which shows the login form
        refused = browser.get("/config")
        assert refused.status_code == 401
        assert "API token" in refused.json()["detail"]["auth_message"]
        assert browser.post("/gradio_api/upload", files={"files": ("a.tif", b"x")}).status_code \
            == 401
        wrong = browser.post("/login", data={"username": "me", "password": "wrong"})
        assert wrong.status_code == 400
        assert browser.post("/login", data={"username": "me", "password": TOKEN}).json() == {
            "success": True
        }
        assert browser.get("/config").status_code == 200
        assert "/segment" in browser.get("/gradio_api/info").json()["named_endpoints"]


def test_no_token_leaves_everything_open(tiny_model: LoadedModel, tmp_path: Path) -> None:
    settings = Settings(results_dir=tmp_path / "results")
    assert "api_token" not in repr(Settings(api_token=TOKEN))
    with fastapi_testclient.TestClient(create_app(tiny_model, settings)) as open_client:
        assert open_client.get("/config").status_code == 200
        assert open_client.get(f"/api/jobs/{'0' * 32}").status_code == 404
    environment = Settings.from_environment({"GERMSEG_API_TOKEN": f" {TOKEN} "})
    assert environment.api_token == TOKEN

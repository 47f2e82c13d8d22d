"""Static checks of the container files: hadolint on the Dockerfile, compose-spec validation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -r requirements-test.txt")
    return found


def test_dockerfile_passes_hadolint():
    completed = subprocess.run(
        [_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_compose_file_is_valid():
    completed = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_compose_publishes_on_loopback_with_volume_restart_and_gpu_profile():
    text = (ROOT / "docker-compose.yml").read_text()
    assert '"127.0.0.1:8000:8000"' in text
    assert "restart: unless-stopped" in text
    assert "profiles:" in text and "gpu" in text and "nvidia" in text
    assert "volumes:" in text

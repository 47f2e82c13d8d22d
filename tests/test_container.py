"""The container image, built and run with podman by ``tests/container_smoke.sh``.

Run with ``pytest -m container`` (excluded by default: the build takes minutes). Needs podman
(see ``/work/shared/tools/local-container-engine.sh`` on machines without a Docker engine) or
another engine in ``$CONTAINER_ENGINE``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.container

SCRIPT = Path(__file__).with_name("container_smoke.sh")


def test_image_builds_serves_and_segments() -> None:
    engine = os.environ.get("CONTAINER_ENGINE", "podman")
    if shutil.which(engine) is None:
        pytest.skip(f"{engine} not found; install podman or set CONTAINER_ENGINE")
    environment = {**os.environ, "PYTHON": sys.executable}
    completed = subprocess.run(
        ["bash", str(SCRIPT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert "SMOKE OK" in output
    if Path(engine).name == "podman":
        assert "HEALTHCHECK passes" in output

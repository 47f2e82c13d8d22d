"""The server under load: many clients submit, poll and download at once (``-m load``).

Run with ``python -m pytest -m load --log-cli-level=INFO tests/test_load.py``; it logs the
figures recorded in benchmarks/BENCHMARKS.md ("Server under load").
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile

from segmentation.synthetic import write_phantom

pytestmark = pytest.mark.load
logger = logging.getLogger(__name__)

N_SUBMITTERS = 20
N_POLLERS = 5
MAX_QUEUE = 2
STACK_SHAPE = (16, 96, 96)
FORM = {"patch": "16,64,64", "overlap": "0.5", "min_size": "10", "gif": "false"}
#: How long a refused client waits before trying again (shorter than Retry-After, to
#: keep the test short; the header itself is checked).
RETRY_WAIT_SECONDS = 0.5
MAX_ATTEMPTS = 2000
#: Bound on the server's peak resident memory.
MAX_PEAK_RSS_BYTES = 3 * 2**30


@dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, int] = field(default_factory=dict)
    refusals: int = 0
    refusals_without_retry_after: int = 0
    downloads: int = 0
    failures: list[str] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)


def _distinct_stacks(directory: Path) -> list[Path]:
    """One phantom, with different noise in each copy, so that no job reuses another's."""
    base = tifffile.imread(write_phantom(directory, STACK_SHAPE, seed=3)[0]).astype(np.int32)
    paths = []
    for index in range(N_SUBMITTERS):
        noise = np.random.default_rng(index).integers(0, 50, base.shape)
        path = directory / f"client{index:02d}.tif"
        tifffile.imwrite(path, (base + noise).astype(np.uint16), metadata={"axes": "CZYX"})
        paths.append(path)
    return paths


def _submit(url: str, index: int, path: Path, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(MAX_ATTEMPTS):
            with open(path, "rb") as handle:
                response = client.post(
                    "/api/segment", files={"file": (path.name, handle)}, data=FORM
                )
            if response.status_code == 202:
                with tally.lock:
                    tally.accepted[response.json()["job_id"]] = index
                return
            if response.status_code != 503:
                with tally.lock:
                    tally.failures.append(f"client {index}: {response.status_code} {response.text}")
                return
            with tally.lock:
                tally.refusals += 1
                if not response.headers.get("retry-after", "").isdigit():
                    tally.refusals_without_retry_after += 1
            time.sleep(RETRY_WAIT_SECONDS)
    with tally.lock:
        tally.failures.append(f"client {index} was refused {MAX_ATTEMPTS} times")


def _poll_and_download(url: str, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        while not tally.finished.is_set():
            with tally.lock:
                job_ids = list(tally.accepted)
            for job_id in job_ids:
                status = client.get(f"/api/jobs/{job_id}").json()
                if status["status"] == "done":
                    name = status["outputs"]["cells"]
                    if client.get(f"/api/jobs/{job_id}/files/{name}").status_code == 200:
                        with tally.lock:
                            tally.downloads += 1
            time.sleep(0.05)


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _wait_all_done(url: str, job_ids: list[str], timeout: float = 900) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    states: dict[str, dict] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < deadline:
            states = {job_id: client.get(f"/api/jobs/{job_id}").json() for job_id in job_ids}
            if all(state["status"] not in ("queued", "running") for state in states.values()):
                return states
            time.sleep(0.2)
    raise AssertionError(f"jobs still running after {timeout} s")


def test_twenty_clients_submit_poll_and_download(
    germseg_serve, tiny_weights: Path, tmp_path: Path
) -> None:
    stacks = _distinct_stacks(tmp_path)
    tally = Tally()
    environment = {"GERMSEG_MAX_QUEUE": str(MAX_QUEUE), "GERMSEG_CACHE_MB": "64"}
    with germseg_serve(tiny_weights, tmp_path / "results", environment) as (url, process):
        start = time.perf_counter()
        pollers = [threading.Thread(target=_poll_and_download, args=(url, tally))
                   for _ in range(N_POLLERS)]
        submitters = [threading.Thread(target=_submit, args=(url, index, path, tally))
                      for index, path in enumerate(stacks)]
        for thread in pollers + submitters:
            thread.start()
        for thread in submitters:
            thread.join()
        states = _wait_all_done(url, list(tally.accepted))
        tally.finished.set()
        for thread in pollers:
            thread.join()
        seconds = time.perf_counter() - start
        peak = _peak_rss_bytes(process.pid)

        assert tally.failures == []
        assert tally.refusals_without_retry_after == 0
        assert sorted(tally.accepted.values()) == list(range(N_SUBMITTERS))
        assert {state["status"] for state in states.values()} == {"done"}
        assert {state["source"] for state in states.values()} == {p.name for p in stacks}
        # no result is lost: every job's every file is still there at the end
        with httpx.Client(base_url=url, timeout=60) as client:
            for job_id, state in states.items():
                for name in state["files"]:
                    assert client.get(f"/api/jobs/{job_id}/files/{name}").status_code == 200
        assert peak < MAX_PEAK_RSS_BYTES
    summary = (
        f"{N_SUBMITTERS} jobs done in {seconds:.1f} s, {tally.refusals} refusals (503 with "
        f"Retry-After), {tally.downloads} downloads while running, server peak RSS "
        f"{peak / 2**20:.0f} MiB"
    )
    logger.info(summary)

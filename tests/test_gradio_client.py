"""The Gradio UI through gradio_client, against the real server on a free local port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("uvicorn")

from test_api import expected_cpu_precision  # noqa: E402

from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from segmentation.errors import InputError  # noqa: E402
from segmentation.inference.engines import engine_precision, resolve_engine  # noqa: E402
from segmentation.io import read_stack  # noqa: E402
from segmentation.parameters import (  # noqa: E402
    DEFAULT_PATCH,
    InferenceParameters,
    SegmentationParameters,
)
from segmentation.synthetic import write_phantom  # noqa: E402

STACK_SHAPE = (16, 96, 96)
FAST = {"patch": "16,64,64", "min_size": 10}


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, tiny_model, serve_app) -> Iterator[str]:
    app = create_app(tiny_model, Settings(results_dir=tmp_path_factory.mktemp("results")))
    with serve_app(app) as url:
        yield url


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("stacks")
    paths = []
    for seed in (3, 4):
        image_path, _ = write_phantom(folder / f"s{seed}", STACK_SHAPE, seed=seed)
        paths.append(image_path.rename(folder / f"gonad_{seed}.tif"))
    return paths


def labels_of(downloads: list[str]) -> list[Path]:
    return [Path(path) for path in downloads if Path(path).name.endswith("_labels.tif")]


def test_segment_then_resegment_through_the_client(
    server_url: str, stacks: list[Path], tiny_model
) -> None:
    client = gradio_client.Client(server_url, verbose=False)
    files = [gradio_client.handle_file(str(path)) for path in stacks]
    preview, selector, downloads, summary = client.predict(
        files=files, threshold=0.5, **FAST, api_name="/segment"
    )
    label_paths = labels_of(downloads)
    assert [path.name for path in label_paths] == ["gonad_3_labels.tif", "gonad_4_labels.tif"]
    for path, row in zip(label_paths, summary["data"], strict=True):
        labels = tifffile.imread(path)
        assert labels.shape == STACK_SHAPE and np.issubdtype(labels.dtype, np.integer)
        assert row[1] == labels.max() >= 1
    assert summary["headers"] == ["file", "cells found", "time (s)", "device", "network reused"]
    assert [row[4] for row in summary["data"]] == ["no", "no"]
    # the engine that auto picks here (OpenVINO where it is installed) and its precision
    engine = resolve_engine("auto", torch.device("cpu"), tiny_model.network)
    precision = engine_precision(engine, "auto", torch.device("cpu"))
    assert precision == expected_cpu_precision(engine)
    assert [row[3] for row in summary["data"]] == [f"cpu ({engine}, {precision})"] * 2
    assert Path(preview).read_bytes()[:6] == b"GIF89a"
    assert selector["choices"] == [["gonad_3.tif", "gonad_3.tif"], ["gonad_4.tif", "gonad_4.tif"]]
    assert {Path(p).name for p in downloads} >= {"gonad_3_results.zip", "gonad_4_cells.csv"}

    *_, retuned = client.predict(
        files=files, threshold=0.3, footprint=5, min_size=10, api_name="/resegment"
    )
    assert [row[4] for row in retuned["data"]] == ["yes", "yes"]

    *_, nothing_that_big = client.predict(
        files=files, min_size=10, min_volume_um3=1e9, api_name="/resegment"
    )
    assert [row[1] for row in nothing_that_big["data"]] == [0, 0]


def test_endpoint_parameters_have_the_library_names_and_defaults(server_url: str) -> None:
    client = gradio_client.Client(server_url, verbose=False)
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"][
        "/segment"
    ]["parameters"]
    defaults = {item["parameter_name"]: item["parameter_default"] for item in parameters}
    library = SegmentationParameters().as_dict()
    del library["foreground_threshold"]
    assert library.items() <= defaults.items()
    assert defaults["patch"] == ",".join(map(str, DEFAULT_PATCH))
    assert defaults["overlap"] == InferenceParameters().overlap


def test_reader_errors_reach_the_client_unchanged(server_url: str, tmp_path: Path) -> None:
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.arange(32 * 32, dtype=np.uint16).reshape(32, 32))
    with pytest.raises(InputError) as expected:
        read_stack(flat)
    client = gradio_client.Client(server_url, verbose=False)
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        client.predict(files=[gradio_client.handle_file(str(flat))], api_name="/segment")
    assert str(expected.value) in str(error.value)


def test_voxel_size_for_an_uncalibrated_stack(
    server_url: str, stacks: list[Path], tmp_path: Path
) -> None:
    uncalibrated = tmp_path / "uncalibrated.tif"
    tifffile.imwrite(uncalibrated, tifffile.imread(stacks[0]))
    client = gradio_client.Client(server_url, verbose=False)
    files = [gradio_client.handle_file(str(uncalibrated))]
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        client.predict(files=files, voxel_size="0.8,0.2", api_name="/segment")
    assert "voxel size must be three positive numbers Z,Y,X in µm" in str(error.value)
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        client.predict(files=files, **FAST, min_volume_um3=1e9, api_name="/segment")
    assert "min_volume_um3 needs the voxel size" in str(error.value)
    # with a voxel size given, the µm³ limit applies
    _, _, _, summary = client.predict(
        files=files, **FAST, min_volume_um3=1e9, voxel_size="0.8,0.2,0.2", api_name="/segment"
    )
    assert [row[1] for row in summary["data"]] == [0]

"""One validation for every entry point: the CLI, REST, the web UI and Python refuse the same
bad value with the same one-line message, before any work starts."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.io import read_stack
from segmentation.parameters import (
    DEFAULT_PATCH,
    MAX_PATCH_VOXELS,
    InferenceParameters,
    SegmentationParameters,
    check_max_voxels,
    check_patch,
    parse_patch,
    parse_voxel_size,
)

gradio = pytest.importorskip("gradio")
fastapi_testclient = pytest.importorskip("fastapi.testclient")

from app.jobs import JobManager  # noqa: E402
from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.ui import build_ui  # noqa: E402

#: Valid values for everything the web UI's ``segment`` takes besides the files.
UI_DEFAULTS = {
    "threshold": 0.8,
    "footprint": 17,
    "cutoff": 0.6,
    "method": "agglomeration",
    "patch": "16,64,64",
    "overlap": 0.25,
    "test_time_flip": False,
    "min_size": 10,
    "device": "cpu",
}

#: (CLI options, REST form, web UI values, Python call) giving the same bad value, and the
#: start of the message all four must give.
CASES = {
    "overlap 0.95": (
        ["--overlap", "0.95"],
        {"overlap": "0.95"},
        {"overlap": 0.95},
        lambda _: InferenceParameters(overlap=0.95),
        "overlap must be between 0 and 0.9, got 0.95",
    ),
    "footprint -1": (
        ["--footprint", "-1"],
        {"footprint": "-1"},
        {"footprint": -1},
        lambda _: SegmentationParameters(footprint=-1),
        "footprint must be a whole number of XY pixels from 1 to 255, got -1",
    ),
    "patch 1,1,1": (
        ["--patch", "1,1,1"],
        {"patch": "1,1,1"},
        {"patch": "1,1,1"},
        lambda _: InferenceParameters(patch=(1, 1, 1)),
        "invalid patch 1,1,1: give three whole numbers Z,Y,X, each a multiple of 8",
    ),
    "patch 99999³": (
        ["--patch", "99999,99999,99999"],
        {"patch": "99999,99999,99999"},
        {"patch": "99999,99999,99999"},
        lambda _: InferenceParameters(patch=(99999, 99999, 99999)),
        "invalid patch 99999,99999,99999:",
    ),
    "patch too many voxels": (
        ["--patch", "128,512,512"],
        {"patch": "128,512,512"},
        {"patch": "128,512,512"},
        lambda _: InferenceParameters(patch=(128, 512, 512)),
        f"invalid patch 128,512,512: give three whole numbers Z,Y,X, each a multiple of 8 "
        f"from 8 to 512, at most {MAX_PATCH_VOXELS:,} voxels in all",
    ),
    "voxel size 1e308": (
        ["--voxel-size", "1e308,0.2,0.2"],
        {"voxel_size": "1e308,0.2,0.2"},
        {"voxel_size": "1e308,0.2,0.2"},
        lambda stack: read_stack(stack, voxel_size=(1e308, 0.2, 0.2)),
        "voxel size must be three positive numbers Z,Y,X in µm, each from 0.001 to 1000 "
        "(e.g. 0.8,0.2,0.2), got 1e+308,0.2,0.2",
    ),
    "voxel size 0": (
        ["--voxel-size", "0,0.2,0.2"],
        {"voxel_size": "0,0.2,0.2"},
        {"voxel_size": "0,0.2,0.2"},
        lambda stack: read_stack(stack, voxel_size=(0, 0.2, 0.2)),
        "voxel size must be three positive numbers Z,Y,X in µm, each from 0.001 to 1000",
    ),
    "voxel size negative": (
        ["--voxel-size", "0.8,-0.2,0.2"],
        {"voxel_size": "0.8,-0.2,0.2"},
        {"voxel_size": "0.8,-0.2,0.2"},
        lambda stack: read_stack(stack, voxel_size=(0.8, -0.2, 0.2)),
        "voxel size must be three positive numbers Z,Y,X in µm, each from 0.001 to 1000",
    ),
    "voxel size nan": (
        ["--voxel-size", "nan,0.2,0.2"],
        {"voxel_size": "nan,0.2,0.2"},
        {"voxel_size": "nan,0.2,0.2"},
        lambda stack: read_stack(stack, voxel_size=(math.nan, 0.2, 0.2)),
        "voxel size must be three positive numbers Z,Y,X in µm, each from 0.001 to 1000",
    ),
    "min_size over the largest stack": (
        ["--min-size", "99999999999"],
        {"min_size": "99999999999"},
        {"min_size": 99999999999},
        lambda _: SegmentationParameters(min_size=99999999999),
        "min_size must be a whole number of voxels from 0 to 4,294,967,296, got 99999999999",
    ),
    "min_volume 1e23": (
        ["--min-volume", "1e23"],
        {"min_volume_um3": "1e23"},
        {"min_volume_um3": 1e23},
        lambda _: SegmentationParameters(min_volume_um3=1e23),
        "min_volume_um3 must be a positive volume in µm³ up to 1,000,000,000 (leave it empty "
        "for no limit), got 1e+23",
    ),
    "threshold nan": (
        ["--threshold", "nan"],
        {"threshold": "nan"},
        {"threshold": math.nan},
        lambda _: SegmentationParameters(threshold=math.nan),
        "threshold must be between 0 and 1, got nan",
    ),
    "cutoff inf": (
        ["--cutoff", "inf"],
        {"cutoff": "inf"},
        {"cutoff": math.inf},
        lambda _: SegmentationParameters(cutoff=math.inf),
        "cutoff must be between 0 and 1, got inf",
    ),
    "rim_distance 50": (
        ["--rim-distance", "50"],
        {"rim_distance": "50"},
        {"rim_distance": 50.0},
        lambda _: SegmentationParameters(rim_distance=50),
        "rim_distance must be between 0 and 20, got 50",
    ),
    "max_size below min_size": (
        ["--min-size", "100", "--max-size", "50"],
        {"min_size": "100", "max_size": "50"},
        {"min_size": 100, "max_size": 50},
        lambda _: SegmentationParameters(min_size=100, max_size=50),
        "max_size (50) must be larger than min_size (100)",
    ),
    "unknown method": (
        ["--method", "magic"],
        {"method": "magic"},
        {"method": "magic"},
        lambda _: SegmentationParameters(method="magic"),
        "unknown method 'magic': use agglomeration or multicut",
    ),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stack") / "stack.tif"
    image = np.random.default_rng(0).integers(0, 4096, (2, 8, 64, 64), dtype=np.uint16)
    tifffile.imwrite(path, image, metadata={"axes": "CZYX"})
    return path


@pytest.fixture(scope="module")
def client(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(results_dir=tmp_path_factory.mktemp("results"))
    with fastapi_testclient.TestClient(create_app(tiny_model, settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def ui_segment(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    """The web UI's ``segment`` handler, on its own job manager."""
    manager = JobManager(tiny_model, Settings(results_dir=tmp_path_factory.mktemp("ui")))
    blocks = build_ui(manager, ("cpu",))
    yield next(f.fn for f in blocks.fns.values() if f.api_name == "segment")
    manager.close()


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the CLI loads the model or segments anything."""

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("work started before the parameters were checked")

    monkeypatch.setattr("segmentation.model.load_model", forbidden)
    monkeypatch.setattr("segmentation.pipeline.segment_file", forbidden)
    monkeypatch.setattr("segmentation.pipeline.predict", forbidden)


def cli_message(arguments: list[str], stack: Path, tmp_path: Path, capsys) -> str:
    """The CLI's one error line (without ``error: ``); asserts exit status 2 and no output."""
    out = tmp_path / "out"
    status = main(["segment", str(stack), "--out", str(out), *arguments])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists()
    return err.removeprefix("error: ").rstrip("\n")


def rest_message(client, form: dict[str, str], stack: Path) -> str:
    """The REST API's 422 detail; asserts that no job was queued."""
    before = len(client.app.state.manager.jobs())
    with open(stack, "rb") as handle:
        response = client.post(
            "/api/segment", files={"file": ("stack.tif", handle, "image/tiff")}, data=form
        )
    assert response.status_code == 422, response.text
    assert len(client.app.state.manager.jobs()) == before
    return response.json()["detail"]


def ui_message(segment: Callable, values: dict, stack: Path) -> str:
    with pytest.raises(gradio.Error) as error:
        segment(files=[str(stack)], **{**UI_DEFAULTS, **values})
    return error.value.message


def python_message(call: Callable[[Path], object], stack: Path) -> str:
    with pytest.raises(InputError) as error:
        call(stack)
    return str(error.value)


@pytest.mark.parametrize("case", list(CASES))
def test_every_entry_point_gives_the_same_message_before_any_work(
    case, stack, client, ui_segment, no_work, tmp_path, capsys
) -> None:
    cli, form, ui, python, expected = CASES[case]
    messages = {
        "python": python_message(python, stack),
        "cli": cli_message(cli, stack, tmp_path, capsys),
        "rest": rest_message(client, form, stack),
        "ui": ui_message(ui_segment, ui, stack),
    }
    assert messages["python"].startswith(expected) and "\n" not in messages["python"]
    assert messages == dict.fromkeys(messages, messages["python"])


def test_the_guard_against_work_is_real(stack, no_work, tmp_path) -> None:
    """With valid values the CLI does reach the model, so the guard above can fail."""
    with pytest.raises(AssertionError, match="work started"):
        main(["segment", str(stack), "--out", str(tmp_path / "out"), "--patch", "8,64,64"])


def test_a_number_too_large_for_an_int_is_refused_in_one_line(
    stack, ui_segment, no_work, tmp_path, capsys
) -> None:
    """1e23 voxels: every entry point gives the same message."""
    expected = "min_size must be a whole number of voxels from 0 to 4,294,967,296, got 1e+23"
    assert python_message(lambda _: SegmentationParameters(min_size=1e23), stack) == expected
    assert cli_message(["--min-size", "1e23"], stack, tmp_path, capsys) == expected
    assert ui_message(ui_segment, {"min_size": 1e23}, stack) == expected


def test_rest_gives_the_shared_message_for_sizes_that_are_not_whole_numbers(
    client, stack
) -> None:
    expected = "min_size must be a whole number of voxels from 0 to 4,294,967,296, got 1e+23"
    assert rest_message(client, {"min_size": "1e23"}, stack) == expected
    assert rest_message(client, {"footprint": "17.5"}, stack).startswith("footprint must be")


def test_the_parameters_normalise_what_they_accept() -> None:
    parameters = SegmentationParameters(footprint=17.0, min_size=300.0, max_size=None)
    assert parameters.footprint == 17 and isinstance(parameters.footprint, int)
    assert isinstance(parameters.min_size, int)
    assert InferenceParameters(patch=[16, 64.0, 64]).patch == (16, 64, 64)
    assert parse_patch("32x288x288") == parse_patch(" 32, 288,288") == DEFAULT_PATCH
    assert check_patch(DEFAULT_PATCH) == DEFAULT_PATCH
    assert parse_voxel_size("0.001,1000,0.2") == (0.001, 1000.0, 0.2)
    assert check_max_voxels(4096.0) == 4096


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: SegmentationParameters(threshold="high"), "threshold must be between 0 and 1"),
        (lambda: SegmentationParameters(footprint=True), "footprint must be a whole number"),
        (lambda: SegmentationParameters(footprint=2.5), "got 2.5"),
        (lambda: SegmentationParameters(max_size=0), "max_size must be a whole number"),
        (lambda: SegmentationParameters(max_volume_um3=0), "max_volume_um3 must be a positive"),
        (lambda: InferenceParameters(patch=(12, 64, 64)), "each a multiple of 8"),
        (lambda: InferenceParameters(patch=(8, 64)), "invalid patch 8,64"),
        (lambda: InferenceParameters(patch=5), "invalid patch 5"),
        (lambda: InferenceParameters(batch_size=0), "batch_size must be a whole number"),
        (lambda: InferenceParameters(device="tpu"), "unknown device 'tpu'"),
        (lambda: InferenceParameters(autocast="fp8"), "unknown autocast 'fp8'"),
        (lambda: InferenceParameters(test_time_flip="yes"), "test_time_flip must be true"),
        (lambda: parse_patch("a,b,c"), "invalid patch 'a,b,c'"),
        (lambda: check_max_voxels(0), "max_voxels must be a whole number of voxels from 1"),
    ],
)
def test_values_that_make_no_sense_are_refused(make, fragment) -> None:
    with pytest.raises(InputError) as error:
        make()
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_cli_max_voxels_is_checked_before_any_work(stack, no_work, tmp_path, capsys) -> None:
    message = cli_message(["--max-voxels", "-5"], stack, tmp_path, capsys)
    assert message == "max_voxels must be a whole number of voxels from 1 to 4,294,967,296, got -5"

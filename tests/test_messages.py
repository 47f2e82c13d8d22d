"""Clean messages: reader failures name the real problem, tifffile's own log lines stay in the
debug log, and the CLI prints one ``error:`` line (``serve`` included)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.io import read_labels, read_stack
from segmentation.io.tifffile_log import tifffile_messages
from segmentation.model import ModelCard, build_network, save_checkpoint

IMAGE = np.random.default_rng(0).integers(0, 4096, (2, 8, 64, 64), dtype=np.uint16)


def write_stack(path: Path, kind: str) -> Path:
    """A small two-channel stack as a plain (shaped), ImageJ or OME TIFF."""
    if kind == "imagej":
        tifffile.imwrite(path, IMAGE.transpose(1, 0, 2, 3), imagej=True,
                         metadata={"axes": "ZCYX"})
    elif kind == "ome":
        tifffile.imwrite(path, IMAGE, ome=True, metadata={"axes": "CZYX"})
    else:
        tifffile.imwrite(path, IMAGE, metadata={"axes": "CZYX"})
    return path


def truncated_copy(path: Path, keep: int | float) -> Path:
    """A copy of ``path`` cut to ``keep`` bytes (an int) or that fraction of its size."""
    content = path.read_bytes()
    size = keep if isinstance(keep, int) else int(len(content) * keep)
    cut = path.with_name(f"cut_{size}_{path.name}")
    cut.write_bytes(content[:size])
    return cut


def reader_message(path: Path) -> str:
    with pytest.raises(InputError) as error:
        read_stack(path)
    return str(error.value)


@pytest.mark.parametrize("kind", ["plain", "imagej", "ome"])
@pytest.mark.parametrize("keep", [8, 200, 0.5])
def test_a_truncated_tiff_is_called_truncated(tmp_path, kind, keep, caplog) -> None:
    whole = write_stack(tmp_path / f"{kind}.tif", kind)
    assert read_stack(whole).image.shape == (2, 8, 64, 64)
    cut = truncated_copy(whole, keep)
    caplog.set_level(logging.DEBUG)
    message = reader_message(cut)
    assert message.startswith(f"{cut.name} is truncated or corrupted (")
    assert "2-D" not in message and "\n" not in message
    assert message.endswith("copy or export the file again")
    # tifffile's own complaints reach the debug log only, never a handler as tifffile's
    assert not [record for record in caplog.records if record.name == "tifffile"]


def test_a_cut_in_the_image_data_says_where_the_data_end(tmp_path) -> None:
    whole = write_stack(tmp_path / "plain.tif", "plain")
    cut = truncated_copy(whole, 200)
    message = reader_message(cut)
    assert "its image data run to byte" in message and "but the file has 200" in message


def test_tifffile_lines_go_to_the_debug_log(tmp_path, caplog) -> None:
    cut = truncated_copy(write_stack(tmp_path / "plain.tif", "plain"), 0.5)
    caplog.set_level(logging.DEBUG)
    reader_message(cut)
    debug = [r for r in caplog.records if r.name == "segmentation.io.tifffile_log"]
    assert debug and all(record.levelno == logging.DEBUG for record in debug)
    assert any("invalid page offset" in record.getMessage() for record in debug)


def test_tifffile_logs_pass_unchanged_outside_a_read_and_in_other_threads(caplog) -> None:
    tifffile_logger = logging.getLogger("tifffile")
    tifffile_logger.error("outside any read")
    with tifffile_messages() as collected:
        tifffile_logger.error("inside a read")
        other = threading.Thread(target=tifffile_logger.error, args=("another thread",))
        other.start()
        other.join()
    shown = [r.getMessage() for r in caplog.records if r.name == "tifffile"]
    assert shown == ["outside any read", "another thread"]
    assert [record.getMessage() for record in collected] == ["inside a read"]


def test_a_truncated_label_volume_is_called_truncated(tmp_path) -> None:
    whole = tmp_path / "labels.tif"
    tifffile.imwrite(whole, np.arange(8 * 64 * 64, dtype=np.uint16).reshape(8, 64, 64))
    cut = truncated_copy(whole, 0.5)
    with pytest.raises(InputError, match="is truncated or corrupted"):
        read_labels(cut)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    card = ModelCard(name="tiny-random", f_maps=4, num_levels=2)
    return save_checkpoint(
        tmp_path_factory.mktemp("weights") / "tiny.pt", build_network(card), card, 0
    )


@pytest.mark.parametrize("keep", [200, 0.5])
def test_the_cli_prints_one_line_for_a_truncated_file(tmp_path, tiny_weights, keep) -> None:
    """In a real process, where tifffile's logger would otherwise print to stderr."""
    cut = truncated_copy(write_stack(tmp_path / "stack.tif", "plain"), keep)
    completed = subprocess.run(
        [sys.executable, "-m", "segmentation", "segment", str(cut), "--out",
         str(tmp_path / "out"), "--weights", str(tiny_weights), "--patch", "8,64,64"],
        capture_output=True, text=True, timeout=300,
    )
    lines = completed.stderr.splitlines()
    assert completed.returncode == 2
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"error: {cut}: {cut.name} is truncated or corrupted")


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ``germseg serve`` gets as far as starting the server."""
    pytest.importorskip("gradio")

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("the server was started")

    monkeypatch.setattr("app.server.serve", forbidden)


def serve_error(results_dir: Path, capsys) -> str:
    status = main(["serve", "--results-dir", str(results_dir)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: results directory {results_dir} cannot be used (")
    return err


def test_serve_with_results_dir_under_a_file_is_one_line(tmp_path, no_server, capsys) -> None:
    regular = tmp_path / "notes.txt"
    regular.write_text("a file, not a folder")
    assert "Not a directory" in serve_error(regular / "results", capsys)
    assert "it is a file, not a folder" in serve_error(regular, capsys)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_serve_with_a_read_only_results_dir_is_one_line(tmp_path, no_server, capsys) -> None:
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        assert "Permission denied" in serve_error(read_only, capsys)
    finally:
        read_only.chmod(0o700)


def test_serve_reaches_the_server_with_a_usable_results_dir(tmp_path, no_server) -> None:
    """The guard above is real: a usable folder gets as far as starting the server."""
    with pytest.raises(AssertionError, match="the server was started"):
        main(["serve", "--results-dir", str(tmp_path / "results")])
    assert (tmp_path / "results").is_dir()


def test_serve_with_a_bad_voxel_limit_is_one_line(tmp_path, no_server, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GERMSEG_MAX_VOXELS", "0")
    assert main(["serve", "--results-dir", str(tmp_path / "results")]) == 2
    assert capsys.readouterr().err == (
        "error: max_voxels must be a whole number of voxels from 1 to 4,294,967,296, got 0\n"
    )


def test_a_voxel_size_in_the_file_outside_the_limits_is_refused(tmp_path) -> None:
    path = tmp_path / "far.tif"
    tifffile.imwrite(path, IMAGE.transpose(1, 0, 2, 3), imagej=True,
                     metadata={"axes": "ZCYX", "spacing": 1e300, "unit": "um"},
                     resolution=(10.0, 10.0))
    assert reader_message(path) == (
        "far.tif records a voxel size of 1e+300,0.1,0.1 µm, outside 0.001 to 1000 µm per "
        "axis; give the voxel size (Z,Y,X in µm) instead"
    )
    assert read_stack(path, voxel_size=(1.0, 0.1, 0.1)).voxel_size == (1.0, 0.1, 0.1)

"""Many stacks: a folder or a CSV of stacks, in this process or on a two-worker Dask
``LocalCluster`` (worker processes), one bad stack reported, reruns skipping finished
stacks, and the cell tables gathered into one CSV with a stack column."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
from distributed import Client, LocalCluster

from segmentation.batch import cluster as batch_cluster
from segmentation.batch import (
    expected_outputs,
    list_stacks,
    outputs_complete,
    read_stack_list,
    stack_jobs,
)
from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.model import ModelCard, build_network, save_checkpoint
from segmentation.synthetic import write_phantom

GOOD = ("worm1", "worm2", "worm3")


@pytest.fixture(scope="module")
def batch_weights(tmp_path_factory):
    """A randomly initialised small UNet3D (foreground everywhere, so every stack has a
    cell) with its model card."""
    torch.manual_seed(0)
    card = ModelCard(name="tiny-random", f_maps=8, num_levels=3)
    network = build_network(card)
    with torch.no_grad():
        network.final_conv.bias[card.foreground_channel] = 4.0
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt", network, card, 0)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Three small phantom stacks, one per worm, as ``<worm>.tif`` in one folder."""
    folder = tmp_path_factory.mktemp("phantoms")
    for seed, worm in enumerate(GOOD, start=3):
        image, _ = write_phantom(folder / f"{worm}-truth", shape=(8, 64, 64), seed=seed)
        shutil.copy(image, folder / f"{worm}.tif")
    return folder


@pytest.fixture()
def stacks(tmp_path, phantoms):
    """A folder with the three phantoms and ``broken.tif``, which is not an image."""
    folder = tmp_path / "stacks"
    folder.mkdir()
    for worm in GOOD:
        shutil.copy(phantoms / f"{worm}.tif", folder)
    (folder / "broken.tif").write_text("this is not an image")
    return folder


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of two single-threaded worker processes."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as local_cluster:
        yield local_cluster


def _segment(inputs, out, weights, *options):
    return main(
        ["segment", *map(str, inputs), "--out", str(out), "--weights", str(weights),
         "--patch", "8,64,64", "--min-size", "1", "--no-gif", *map(str, options)]
    )


def _lines(text):
    """Lines of stderr, progress-bar redraws (carriage returns) split off."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _gathered(out):
    with (out / "cells.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_cluster_batch_reports_the_bad_stack_and_a_rerun_skips_finished_ones(
    tmp_path, stacks, batch_weights, cluster, capsys
):
    out = tmp_path / "out"
    address = cluster.scheduler_address

    assert _segment([stacks], out, batch_weights, "--scheduler", address) == 2

    errors = [line for line in _lines(capsys.readouterr().err) if line.startswith("error:")]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    for worm in GOOD:
        assert outputs_complete(out, worm, "tiff", gif=False)
    assert not any(path.exists() for path in expected_outputs(out, "broken", "tiff", False))
    with Client(address) as client:
        plugins = client.run(
            lambda dask_worker: [
                plugin.model is not None
                for name, plugin in dask_worker.plugins.items()
                if name.startswith("germseg-model:")
            ]
        )
    assert list(plugins.values()) == [[True], [True]]  # each worker loaded the model once
    columns, rows = _gathered(out)
    assert columns[:2] == ["stack", "label"]
    assert {row["stack"] for row in rows} == set(GOOD)
    for worm in GOOD:
        own = _rows(out / f"{worm}_cells.csv")
        assert [row["label"] for row in rows if row["stack"] == worm] == [
            row["label"] for row in own
        ]
    written = {path: path.stat().st_mtime_ns for path in out.iterdir() if path.name != "cells.csv"}

    assert _segment([stacks], out, batch_weights, "--scheduler", address) == 2

    lines = _lines(capsys.readouterr().err)
    skipped = [line for line in lines if "skipped" in line]
    assert sorted(line.split(":")[0] for line in skipped) == [
        str(stacks / f"{worm}.tif") for worm in GOOD
    ]
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert {path: path.stat().st_mtime_ns for path in written} == written
    assert {row["stack"] for row in _gathered(out)[1]} == set(GOOD)


def test_local_workers_segment_a_csv_and_skip_a_stack_done_before(
    tmp_path, phantoms, batch_weights, capsys
):
    listing = tmp_path / "stacks.csv"
    listing.write_text(f"image\n{phantoms / 'worm1.tif'}\n{phantoms / 'worm2.tif'}\n")
    out = tmp_path / "out"
    assert _segment([phantoms / "worm1.tif"], out, batch_weights) == 0
    first = (out / "worm1_labels.tif").stat().st_mtime_ns
    capsys.readouterr()

    assert _segment([], out, batch_weights, "--csv", listing, "--workers", "2") == 0

    lines = _lines(capsys.readouterr().err)
    assert any(line.startswith(str(phantoms / "worm1.tif")) and "skipped" in line
               for line in lines)
    assert any(line.startswith(str(phantoms / "worm2.tif")) and "cells" in line
               for line in lines)
    assert (out / "worm1_labels.tif").stat().st_mtime_ns == first
    assert outputs_complete(out, "worm2", "tiff", gif=False)
    assert [row["stack"] for row in _gathered(out)[1]][:1] == ["worm1"]
    assert {row["stack"] for row in _gathered(out)[1]} == {"worm1", "worm2"}


def test_in_process_folder_and_csv(tmp_path, stacks, batch_weights, capsys):
    from_folder = tmp_path / "from_folder"
    assert _segment([stacks], from_folder, batch_weights) == 2
    errors = [line for line in _lines(capsys.readouterr().err) if line.startswith("error:")]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    assert {row["stack"] for row in _gathered(from_folder)[1]} == set(GOOD)

    listing = tmp_path / "lists" / "stacks.csv"
    listing.parent.mkdir()
    listing.write_text("image,note\n../stacks/worm3.tif,relative\n\n")
    from_csv = tmp_path / "from_csv"
    assert _segment([], from_csv, batch_weights, "--csv", listing) == 0
    assert sorted(path.name for path in from_csv.iterdir()) == [
        "cells.csv", "worm3_boundaries.tif", "worm3_cells.csv", "worm3_labels.tif"
    ]
    assert {row["stack"] for row in _gathered(from_csv)[1]} == {"worm3"}


def test_overwrite_segments_complete_stacks_again(tmp_path, phantoms, batch_weights, capsys):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(phantoms / "worm1.tif", folder / "worm1.tif")
    out = tmp_path / "out"
    assert _segment([folder], out, batch_weights) == 0
    labels = out / "worm1_labels.tif"
    labels.write_bytes(b"")  # a marker: only a new segmentation replaces it

    assert _segment([folder], out, batch_weights) == 0  # the batch again: skipped
    assert labels.stat().st_size == 0 and "skipped" in capsys.readouterr().err
    assert _segment([folder], out, batch_weights, "--overwrite") == 0
    assert labels.stat().st_size > 0


def test_a_stack_named_by_itself_is_always_segmented(tmp_path, phantoms, batch_weights, capsys):
    """Outside a batch a rerun is a new segmentation (new parameters take effect)."""
    out = tmp_path / "out"
    assert _segment([phantoms / "worm1.tif"], out, batch_weights) == 0
    labels = out / "worm1_labels.tif"
    labels.write_bytes(b"")
    assert _segment([phantoms / "worm1.tif"], out, batch_weights, "--threshold", "0.5") == 0
    assert labels.stat().st_size > 0
    assert "skipped" not in capsys.readouterr().err


def test_outputs_with_a_partial_file_are_not_complete(tmp_path):
    paths = expected_outputs(tmp_path, "worm", "tiff", gif=True)
    assert sorted(path.name for path in paths) == [
        "worm_boundaries.tif", "worm_cells.csv", "worm_labels.tif", "worm_preview.gif"
    ]
    for path in paths:
        path.write_bytes(b"x")
    assert outputs_complete(tmp_path, "worm", "tiff", gif=True)
    (tmp_path / "worm_labels.tif.partial").write_bytes(b"x")
    assert not outputs_complete(tmp_path, "worm", "tiff", gif=True)
    (tmp_path / "worm_labels.tif.partial").unlink()
    (tmp_path / "worm_preview.gif").unlink()
    assert outputs_complete(tmp_path, "worm", "tiff", gif=False)
    assert not outputs_complete(tmp_path, "worm", "tiff", gif=True)
    assert not outputs_complete(tmp_path, "worm", "ome-zarr", gif=False)


def test_stack_lists_and_folders(tmp_path):
    folder = tmp_path / "stacks"
    (folder / "b.ome.zarr").mkdir(parents=True)
    for name in ("a.tif", "c.nd2", "notes.txt"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    assert [path.name for path in list_stacks([folder], None, tmp_path / "out")] == [
        "a.tif", "b.ome.zarr", "c.nd2"
    ]
    assert [job.stem for job in stack_jobs(list_stacks([folder], None, tmp_path))] == [
        "a", "b", "c"
    ]
    with pytest.raises(InputError, match="is the input folder"):
        list_stacks([folder], None, folder)
    with pytest.raises(InputError, match="holds no stack"):
        list_stacks([folder / "sub"], None, tmp_path / "out")
    with pytest.raises(InputError, match="given twice"):
        stack_jobs(list_stacks([folder, folder / "a.tif"], None, tmp_path / "out"))

    listing = tmp_path / "list.csv"
    listing.write_text("path\na.tif\n")
    with pytest.raises(InputError, match="column 'image'"):
        read_stack_list(listing)
    listing.write_text("image\n\n")
    with pytest.raises(InputError, match="lists no stack"):
        read_stack_list(listing)
    with pytest.raises(InputError, match="cannot read"):
        read_stack_list(tmp_path / "absent.csv")


def test_cluster_options_are_checked_in_one_line(tmp_path, phantoms, batch_weights, capsys,
                                                 monkeypatch):
    image = phantoms / "worm1.tif"
    assert _segment([image], tmp_path, batch_weights, "--workers", "0") == 2
    assert capsys.readouterr().err == "error: --workers must be 1 or more, got 0\n"
    assert _segment([image], tmp_path, batch_weights, "--workers", "2",
                    "--scheduler", "tcp://127.0.0.1:1") == 2
    assert "not both" in capsys.readouterr().err
    assert main(["segment", "--out", str(tmp_path)]) == 2
    assert "give stack files" in capsys.readouterr().err

    monkeypatch.setattr(batch_cluster, "CONNECT_TIMEOUT_S", 1)
    assert _segment([image], tmp_path / "out", batch_weights,
                    "--scheduler", "tcp://127.0.0.1:1") == 2
    errors = _lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach the Dask scheduler")


def test_weights_a_worker_cannot_load_fail_in_one_line_before_any_stack(
    tmp_path, phantoms, cluster, capsys
):
    out = tmp_path / "out"
    status = _segment([phantoms / "worm1.tif", phantoms / "worm2.tif"], out,
                      tmp_path / "absent.pt", "--scheduler", cluster.scheduler_address)
    assert status == 2
    err = capsys.readouterr().err
    errors = [line for line in _lines(err) if line.startswith("error:")]
    assert len(errors) == 1 and "absent.pt not found" in errors[0], err
    assert not out.exists()

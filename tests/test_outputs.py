"""Tests of segmentation.outputs: TIFF writers, GIF preview, cell table, output paths."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from PIL import Image

from segmentation.errors import InputError
from segmentation.io import read_voxel_size
from segmentation.outputs import (
    cell_table,
    output_paths,
    output_stems,
    render_preview_frames,
    touching_neighbours,
    write_boundaries,
    write_cell_table,
    write_labels,
    write_preview_gif,
)


def test_write_labels_uint16_imagej_round_trip(tmp_path):
    labels = np.random.default_rng(0).integers(0, 500, (3, 20, 24)).astype(np.int64)
    path = write_labels(tmp_path / "labels.tif", labels, voxel_size=(0.9, 0.2, 0.25))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "ZYX"
        assert tif.series[0].dtype == np.uint16
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.imagej_metadata["unit"] == "um"
        np.testing.assert_array_equal(tif.asarray(), labels)
    assert read_voxel_size(path) == pytest.approx((0.9, 0.2, 0.25))


def test_write_labels_uint32_when_large(tmp_path):
    labels = np.zeros((2, 8, 8), np.int64)
    labels[0, 0, 0] = 70_000
    labels[1, 2:4, 2:4] = 3
    path = write_labels(tmp_path / "labels.tif", labels, voxel_size=(1.0, 0.5, 0.5))
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].dtype == np.uint32
        np.testing.assert_array_equal(tif.asarray(), labels)
    assert read_voxel_size(path) == pytest.approx((1.0, 0.5, 0.5))


def test_write_labels_without_voxel_size(tmp_path):
    path = write_labels(tmp_path / "labels.tif", np.ones((2, 4, 4), np.uint16))
    assert read_voxel_size(path) is None


def test_write_labels_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="Z, Y, X"):
        write_labels(tmp_path / "l.tif", np.ones((4, 4), np.uint16))
    with pytest.raises(ValueError, match="integers"):
        write_labels(tmp_path / "l.tif", np.ones((2, 4, 4), np.float32))


def test_write_boundaries_round_trip(tmp_path):
    probability = np.random.default_rng(1).random((3, 10, 12), dtype=np.float32)
    path = write_boundaries(tmp_path / "b.tif", probability, voxel_size=(2.0, 0.1, 0.1))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.series[0].dtype == np.float32
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        np.testing.assert_array_equal(tif.asarray(), probability)
    assert read_voxel_size(path) == pytest.approx((2.0, 0.1, 0.1))


def _preview_inputs(n_z: int = 4):
    rng = np.random.default_rng(2)
    membrane = rng.random((n_z, 60, 80), dtype=np.float32) * 1000
    labels = np.zeros((n_z, 60, 80), np.uint16)
    labels[:, 10:30, 10:40] = 1
    labels[:, 30:50, 20:70] = 2
    probability = rng.random((n_z, 60, 80), dtype=np.float32)
    return membrane, labels, probability


def test_render_preview_frames():
    membrane, labels, probability = _preview_inputs()
    frames = render_preview_frames(membrane, labels, probability, width=400)
    assert len(frames) == 4
    assert frames[0].size == (400, 150)
    pixels = np.asarray(frames[0])
    # right panel is the grey boundary map
    right = pixels[20:, 200:]
    assert (right[..., 0] == right[..., 1]).all() and (right[..., 1] == right[..., 2]).all()
    # left panel is coloured inside cells and grey in the background
    inside, background = pixels[50, 60], pixels[140, 5]
    assert len(set(inside.tolist())) > 1
    assert len(set(background.tolist())) == 1


def test_label_colours_are_deterministic():
    membrane, labels, probability = _preview_inputs(1)
    first = np.asarray(render_preview_frames(membrane, labels, probability)[0])
    second = np.asarray(render_preview_frames(membrane, labels, probability)[0])
    np.testing.assert_array_equal(first, second)


def test_write_preview_gif(tmp_path):
    membrane, labels, probability = _preview_inputs(5)
    path = write_preview_gif(tmp_path / "p.gif", membrane, labels, probability)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 5
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 100
        assert gif.size[0] == 800


def _hand_made_labels():
    labels = np.zeros((2, 4, 5), np.uint16)
    labels[0, 0:2, 0:2] = 1  # 4 voxels
    labels[0:2, 0:2, 2:4] = 2  # 8 voxels, touches 1 along x
    labels[1, 3, 0:5] = 7  # 5 voxels, touches nothing
    return labels


def test_touching_neighbours():
    assert touching_neighbours(_hand_made_labels()) == {1: [2], 2: [1]}
    assert touching_neighbours(np.zeros((2, 3, 3), np.uint8)) == {}


def test_cell_table_values():
    labels = _hand_made_labels()
    image = np.stack([labels * 10.0, np.ones(labels.shape)]).astype(np.float32)
    image[1, 1] = 3.0
    rows = cell_table(labels, image, voxel_size=(2.0, 0.5, 0.5))
    by_label = {row["label"]: row for row in rows}
    assert sorted(by_label) == [1, 2, 7]
    cell = by_label[2]
    assert cell["voxels"] == 8
    assert cell["volume_um3"] == pytest.approx(8 * 0.5)
    assert (cell["centroid_z"], cell["centroid_y"], cell["centroid_x"]) == (0.5, 0.5, 2.5)
    bbox = [cell[f"bbox_{axis}{end}"] for end in "01" for axis in "zyx"]
    assert bbox == [0, 0, 2, 2, 2, 4]
    assert cell["mean_ch0"] == pytest.approx(20.0)
    assert cell["mean_ch1"] == pytest.approx(2.0)  # half of its voxels are in z = 1
    assert cell["neighbours"] == "1"
    assert by_label[7]["neighbours"] == ""
    assert by_label[7]["voxels"] == 5
    assert by_label[1]["centroid_y"] == 0.5


def test_cell_table_without_image_or_voxel_size_and_given_neighbours():
    rows = cell_table(_hand_made_labels(), neighbours={1: [2, 7], 2: [1], 7: [1]})
    by_label = {row["label"]: row for row in rows}
    assert by_label[1]["volume_um3"] is None
    assert by_label[1]["mean_ch0"] is None
    assert by_label[1]["neighbours"] == "2;7"


def test_cell_table_sparse_large_ids():
    labels = np.zeros((1, 2, 3), np.uint32)
    labels[0, 0, :2] = 4_000_000_000
    labels[0, 1, :] = 5
    rows = cell_table(labels)
    assert [(row["label"], row["voxels"]) for row in rows] == [(5, 3), (4_000_000_000, 2)]
    assert rows[0]["neighbours"] == "4000000000"


def test_write_cell_table(tmp_path):
    rows = cell_table(_hand_made_labels(), voxel_size=None)
    path = write_cell_table(tmp_path / "cells.csv", rows)
    with path.open(newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [row["label"] for row in read] == ["1", "2", "7"]
    assert read[0]["volume_um3"] == ""
    assert list(read[0]) == list(rows[0])
    empty = write_cell_table(tmp_path / "empty.csv", [])
    assert empty.read_text().startswith("label,voxels,volume_um3")


def test_output_paths(tmp_path):
    paths = output_paths(tmp_path, "stack1")
    assert paths == {
        "labels": tmp_path / "stack1_labels.tif",
        "boundaries": tmp_path / "stack1_boundaries.tif",
        "preview": tmp_path / "stack1_preview.gif",
        "cells": tmp_path / "stack1_cells.csv",
    }


def test_output_stems_are_file_names_when_they_differ(tmp_path):
    assert output_stems([tmp_path / "a.tif", tmp_path / "sub" / "b.ome.tif"]) == ["a", "b.ome"]


def test_output_stems_name_clashing_inputs_by_their_folders(tmp_path):
    inputs = [
        tmp_path / "worm1" / "stack.tif",
        tmp_path / "other.tif",
        tmp_path / "worm2" / "day2" / "stack.tif",
        tmp_path / "worm2" / "stack.tiff",
    ]
    assert output_stems(inputs) == [
        "worm1_stack", "other", "worm2_day2_stack", "worm2_stack",
    ]


def test_output_stems_refuse_the_same_file_twice_and_unresolvable_clashes(tmp_path):
    with pytest.raises(InputError, match="given twice"):
        output_stems([tmp_path / "a.tif", tmp_path / "x" / ".." / "a.tif"])
    with pytest.raises(InputError, match="separate --out folders"):
        output_stems([tmp_path / "stack.tif", tmp_path / "stack.tiff"])


def _small_outputs_inputs():
    from segmentation.io.reader import Stack
    from segmentation.pipeline import BoundaryPrediction, segment_from_boundaries

    rng = np.random.default_rng(3)
    boundary = np.full((4, 32, 32), 0.05, np.float32)
    boundary[:, :, 15:17] = 0.95
    boundary += rng.random(boundary.shape, dtype=np.float32) * 0.01
    prediction = BoundaryPrediction(boundary, None, "cpu", 0.0)
    stack = Stack(
        rng.integers(0, 100, (2, 4, 32, 32), dtype=np.uint16), (1.0, 0.2, 0.2), "CZYX", "uint16"
    )
    return stack, prediction, segment_from_boundaries(prediction)


@pytest.mark.parametrize("link_fails", [False, True])
def test_write_outputs_reuses_an_earlier_boundary_tiff(tmp_path, monkeypatch, link_fails):
    from segmentation import pipeline

    stack, prediction, result = _small_outputs_inputs()
    first = pipeline.write_outputs(tmp_path / "a", "s", stack, prediction, result, gif=False)
    if link_fails:  # another file system: copied instead

        def no_link(source, target):
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(pipeline.os, "link", no_link)
    again = pipeline.write_outputs(
        tmp_path / "b", "s", stack, prediction, result, gif=False,
        boundaries_file=first["boundaries"],
    )
    linked = first["boundaries"].stat().st_ino == again["boundaries"].stat().st_ino
    assert linked != link_fails
    assert again["boundaries"].read_bytes() == first["boundaries"].read_bytes()
    assert not list((tmp_path / "b").glob("*.partial"))


def test_write_outputs_writes_the_boundaries_when_the_earlier_file_is_gone(tmp_path):
    from segmentation.pipeline import write_outputs

    stack, prediction, result = _small_outputs_inputs()
    paths = write_outputs(
        tmp_path, "s", stack, prediction, result, gif=False,
        boundaries_file=tmp_path / "swept" / "s_boundaries.tif",
    )
    np.testing.assert_allclose(
        tifffile.imread(paths["boundaries"]), prediction.boundary_probability
    )

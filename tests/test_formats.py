"""ND2 and OME-Zarr stacks in, OME-Zarr labels and boundaries out.

OME-Zarr inputs are written with ome-zarr's own writer. The ``nd2`` package has no writer and
ships no sample file (its tests download theirs), so the ND2 adapter is tested against a small
stand-in with the part of ``nd2.ND2File`` it uses (``sizes``, ``metadata``, ``voxel_size``,
``to_dask``), plus a real ``nd2`` error on a file that is not ND2.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.writer import write_image

from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.io import read_stack
from segmentation.io.formats import is_stack_path, non_tiff_reader
from segmentation.io.nd2_file import nd2_voxel_size, read_nd2, stack_from_nd2
from segmentation.model import ModelCard, build_network, save_checkpoint
from segmentation.outputs.ome_zarr_output import LABELS_NAME, write_ome_zarr
from segmentation.synthetic import write_phantom

UM = "micrometer"
#: What ``nd2.ND2File.voxel_size`` returns: a named tuple in x, y, z order.
ND2VoxelSize = namedtuple("ND2VoxelSize", "x y z")


def _stack_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, shape, dtype=np.uint16)


def _write_ome_zarr_image(
    path, image: np.ndarray, axes: str, scale: tuple[float, ...] | None, fmt=None
) -> None:
    """An OME-Zarr image written by ome-zarr (one level; units only with a scale)."""
    names = list(axes.lower())
    zarr_format = 3 if isinstance(fmt, FormatV05) else 2
    root = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    write_image(
        image,
        root,
        axes=names,
        scale=None if scale is None else dict(zip(names, scale, strict=True)),
        axes_units=None if scale is None else {a: UM for a in names if a in "zyx"},
        scale_factors=(),
        fmt=fmt or FormatV04(),
    )


@pytest.mark.parametrize("fmt", [FormatV04(), FormatV05()], ids=["ngff-0.4", "ngff-0.5"])
def test_ome_zarr_czyx_reads_axes_channels_and_voxel_size(tmp_path, fmt):
    image = _stack_image((2, 5, 24, 32))
    path = tmp_path / "gonad.ome.zarr"
    _write_ome_zarr_image(path, image, "czyx", (1.0, 2.0, 0.25, 0.25), fmt)

    stack = read_stack(path)

    assert stack.image.dtype == np.float32 and stack.image.shape == (2, 5, 24, 32)
    np.testing.assert_array_equal(stack.image, image.astype(np.float32))
    assert stack.source_axes == "CZYX" and stack.source_dtype == "uint16"
    assert stack.voxel_size == pytest.approx((2.0, 0.25, 0.25))
    assert stack.warnings == ()


def test_ome_zarr_tczyx_channels_are_picked_and_a_single_time_point_ignored(tmp_path):
    image = _stack_image((1, 3, 5, 16, 20), seed=1)
    path = tmp_path / "three.zarr"
    _write_ome_zarr_image(path, image, "tczyx", (1.0, 1.0, 0.5, 0.1, 0.1))

    stack = read_stack(path, channels=(2, 0))

    np.testing.assert_array_equal(stack.image[0], image[0, 2])
    np.testing.assert_array_equal(stack.image[1], image[0, 0])
    assert stack.source_axes == "CZYX"
    assert stack.voxel_size == pytest.approx((0.5, 0.1, 0.1))
    with pytest.raises(InputError, match="3 channels; pass --channels"):
        read_stack(path)
    with pytest.raises(InputError, match="channel index 3 out of range"):
        read_stack(path, channels=(0, 3))


def test_ome_zarr_without_units_has_no_voxel_size_unless_given(tmp_path):
    path = tmp_path / "plain.ome.zarr"
    _write_ome_zarr_image(path, _stack_image((4, 16, 16)), "zyx", None)

    stack = read_stack(path)
    assert stack.voxel_size is None
    assert any("records no voxel size" in warning for warning in stack.warnings)
    assert any("single channel" in warning for warning in stack.warnings)
    assert read_stack(path, voxel_size=(1.0, 0.2, 0.2)).voxel_size == (1.0, 0.2, 0.2)


def test_ome_zarr_units_other_than_micrometres_are_converted(tmp_path):
    path = tmp_path / "nm.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=2)
    write_image(
        _stack_image((3, 8, 8)), root, axes=["z", "y", "x"], scale_factors=(), fmt=FormatV04(),
        scale={"z": 800.0, "y": 100.0, "x": 100.0},
        axes_units={"z": "nanometer", "y": "nanometer", "x": "nanometer"},
    )
    assert read_stack(path).voxel_size == pytest.approx((0.8, 0.1, 0.1))


def test_ome_zarr_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_stack(tmp_path / "missing.ome.zarr")
    not_a_folder = tmp_path / "file.zarr"
    not_a_folder.write_bytes(b"zarr?")
    with pytest.raises(InputError, match="is not a folder"):
        read_stack(not_a_folder)
    bare = tmp_path / "bare.zarr"
    zarr.open_group(bare, mode="w").create_array("0", shape=(4, 8, 8), dtype="uint8")
    with pytest.raises(InputError, match="without OME-NGFF image metadata"):
        read_stack(bare)
    flat = tmp_path / "flat.ome.zarr"
    _write_ome_zarr_image(flat, _stack_image((16, 16)), "yx", (0.1, 0.1))
    with pytest.raises(InputError, match="2-D image"):
        read_stack(flat)
    series = tmp_path / "series.ome.zarr"
    _write_ome_zarr_image(series, _stack_image((3, 2, 4, 8, 8)), "tczyx", None)
    with pytest.raises(InputError, match="time series"):
        read_stack(series)
    big = tmp_path / "big.ome.zarr"
    _write_ome_zarr_image(big, _stack_image((2, 4, 16, 16)), "czyx", None)
    with pytest.raises(InputError, match="more than the limit of 100"):
        read_stack(big, max_voxels=100)
    constant = tmp_path / "constant.ome.zarr"
    _write_ome_zarr_image(constant, np.full((2, 3, 8, 8), 7, np.uint16), "czyx", None)
    with pytest.raises(InputError, match="channel 0 is constant"):
        read_stack(constant)


def test_ome_zarr_without_decoding_checks_metadata_only(tmp_path):
    path = tmp_path / "lazy.ome.zarr"
    _write_ome_zarr_image(path, _stack_image((2, 4, 16, 16)), "czyx", (1.0, 2.0, 0.5, 0.5))
    stack = read_stack(path, decode=False)
    assert stack.image.shape == (2, 4, 16, 16) and not stack.image.any()
    assert stack.voxel_size == pytest.approx((2.0, 0.5, 0.5))


def test_bioformats2raw_layout_reads_series_0(tmp_path):
    path = tmp_path / "converted.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    image = _stack_image((2, 3, 8, 8))
    write_image(
        image, root.create_group("0"), axes=["c", "z", "y", "x"], scale_factors=(),
        fmt=FormatV04(),
    )
    np.testing.assert_array_equal(read_stack(path).image, image)


@dataclass
class FakeND2File:
    """The part of ``nd2.ND2File`` germseg uses, over an in-memory array."""

    data: np.ndarray
    axes: str
    calibration: tuple[float, float, float] = (0.2, 0.2, 1.5)  # x, y, z as nd2 gives it
    calibrated: tuple[bool, bool, bool] = (True, True, True)

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(self.axes, self.data.shape, strict=True))

    @property
    def metadata(self) -> SimpleNamespace:
        volume = SimpleNamespace(
            axesCalibrated=self.calibrated, axesCalibration=self.calibration
        )
        return SimpleNamespace(channels=[SimpleNamespace(volume=volume)])

    def voxel_size(self) -> ND2VoxelSize:
        return ND2VoxelSize(*self.calibration)

    def to_dask(self) -> np.ndarray:
        return self.data


def test_nd2_zcyx_reads_channels_axes_and_voxel_size():
    image = _stack_image((6, 2, 12, 16), seed=2)  # ND2 order: Z loop, then C, Y, X
    stack = stack_from_nd2("gonad.nd2", FakeND2File(image, "ZCYX"), channels=None,
                           max_voxels=10_000)
    np.testing.assert_array_equal(stack.image, np.moveaxis(image, 1, 0))
    assert stack.source_axes == "ZCYX" and stack.source_dtype == "uint16"
    assert stack.voxel_size == pytest.approx((1.5, 0.2, 0.2))


def test_nd2_voxel_size_needs_every_axis_calibrated():
    image = _stack_image((4, 8, 8))
    assert nd2_voxel_size(FakeND2File(image, "ZYX", calibrated=(True, True, False))) is None
    assert nd2_voxel_size(FakeND2File(image, "ZYX")) == pytest.approx((1.5, 0.2, 0.2))


def test_nd2_errors_are_one_line():
    def read(image, axes, **options):
        return stack_from_nd2("x.nd2", FakeND2File(image, axes), channels=options.get("channels"),
                              max_voxels=options.get("max_voxels", 10_000))

    with pytest.raises(InputError, match="holds 3 XY positions"):
        read(_stack_image((3, 4, 8, 8)), "PZYX")
    with pytest.raises(InputError, match="time series"):
        read(_stack_image((2, 4, 8, 8)), "TZYX")
    with pytest.raises(InputError, match="2-D image"):
        read(_stack_image((2, 8, 8)), "CYX")
    with pytest.raises(InputError, match="more than the limit of 100"):
        read(_stack_image((4, 8, 8)), "ZYX", max_voxels=100)
    with pytest.raises(InputError, match="channel index 5 out of range"):
        read(_stack_image((4, 2, 8, 8)), "ZCYX", channels=(0, 5))


def test_nd2_files_go_through_the_nd2_reader(tmp_path):
    assert non_tiff_reader(tmp_path / "a.ND2") is read_nd2
    with pytest.raises(InputError, match="file not found"):
        read_stack(tmp_path / "missing.nd2")
    fake = tmp_path / "fake.nd2"
    fake.write_bytes(b"not an nd2 file" * 10)
    with pytest.raises(InputError, match="fake.nd2 is not a readable ND2 file"):
        read_stack(fake)


def test_stack_paths_are_tiff_nd2_files_and_zarr_folders(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"")
    (tmp_path / "b.nd2").write_bytes(b"")
    (tmp_path / "c.ome.zarr").mkdir()
    (tmp_path / "d.zarr").write_bytes(b"")
    (tmp_path / "e.png").write_bytes(b"")
    found = sorted(path.name for path in tmp_path.iterdir() if is_stack_path(path))
    assert found == ["a.tif", "b.nd2", "c.ome.zarr"]


def test_ome_zarr_output_opens_as_image_with_labels(tmp_path):
    labels = np.zeros((4, 16, 20), np.uint16)
    labels[:, 2:8, 2:9], labels[:, 9:15, 10:19] = 1, 2
    boundaries = np.random.default_rng(3).random((4, 16, 20)).astype(np.float32)
    path = write_ome_zarr(tmp_path / "out.ome.zarr", labels, boundaries, (2.0, 0.5, 0.25))

    nodes = list(Reader(parse_url(path))())
    image_node = nodes[0]
    label_nodes = [
        node for node in nodes if "Label" in [type(spec).__name__ for spec in node.specs]
    ]
    assert len(label_nodes) == 1
    label_node = label_nodes[0]
    assert f"labels/{LABELS_NAME}" in str(label_node.zarr)
    np.testing.assert_array_equal(np.asarray(image_node.data[0]), boundaries)
    np.testing.assert_array_equal(np.asarray(label_node.data[0]), labels)
    for node in (image_node, label_node):
        axes = node.metadata["axes"]
        assert [axis["name"] for axis in axes] == ["z", "y", "x"]
        assert {axis["unit"] for axis in axes} == {UM}
        assert node.metadata["coordinateTransformations"][0] == [
            {"type": "scale", "scale": [2.0, 0.5, 0.25]}
        ]
    # and germseg reads its own output back with the voxel size
    assert read_stack(path).voxel_size == pytest.approx((2.0, 0.5, 0.25))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A randomly initialised small UNet3D (foreground everywhere) with its model card."""
    torch.manual_seed(0)
    card = ModelCard(name="tiny-random", f_maps=8, num_levels=3)
    network = build_network(card)
    with torch.no_grad():
        network.final_conv.bias[card.foreground_channel] = 4.0
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt", network, card, 0)


def test_cli_reads_ome_zarr_and_writes_ome_zarr_labels(tmp_path, tiny_weights, capsys):
    phantom = tmp_path / "phantom"
    write_phantom(phantom, shape=(8, 64, 64), seed=3)
    image = tifffile.imread(phantom / "image.tif")
    source = tmp_path / "gonad.ome.zarr"
    _write_ome_zarr_image(source, image, "czyx", (1.0, 2.0, 0.25, 0.25))
    out = tmp_path / "out"
    command = ["segment", str(source), "--out", str(out), "--weights", str(tiny_weights),
               "--patch", "8,64,64", "--min-size", "1", "--no-gif", "--format", "ome-zarr"]

    assert main(command) == 0
    assert main([*command, "--overwrite"]) == 0  # a second run replaces the first one's folder

    assert sorted(path.name for path in out.iterdir()) == [
        "cells.csv", "gonad.ome.zarr", "gonad_cells.csv"
    ]
    assert f"-> {out / 'gonad'}.ome.zarr and {out / 'gonad'}_*" in capsys.readouterr().err
    nodes = list(Reader(parse_url(out / "gonad.ome.zarr"))())
    (label_node,) = [
        node for node in nodes if "Label" in [type(spec).__name__ for spec in node.specs]
    ]
    labels = np.asarray(label_node.data[0])
    assert labels.shape == (8, 64, 64) and labels.dtype.kind == "u" and labels.max() > 0
    assert label_node.metadata["coordinateTransformations"][0] == [
        {"type": "scale", "scale": [2.0, 0.25, 0.25]}
    ]
    assert {axis["unit"] for axis in label_node.metadata["axes"]} == {UM}
    boundaries = np.asarray(nodes[0].data[0])
    assert boundaries.dtype == np.float32 and 0.0 <= boundaries.min() <= boundaries.max() <= 1.0
    n_rows = len((out / "gonad_cells.csv").read_text().splitlines()) - 1
    assert n_rows == len(np.unique(labels[labels > 0]))


def test_cli_refuses_an_unknown_output_format_before_loading_the_model(tmp_path, capsys):
    status = main(["segment", "x.tif", "--out", str(tmp_path), "--format", "png",
                   "--weights", str(tmp_path / "missing.pt")])
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: unknown format 'png': use tiff or ome-zarr"


def test_rest_upload_of_an_nd2_file_goes_to_the_nd2_reader(tmp_path, tiny_model):
    testclient = pytest.importorskip("fastapi.testclient")
    from app.server import create_app
    from app.settings import Settings

    fake = tmp_path / "gonad.nd2"
    fake.write_bytes(b"not an nd2 file" * 10)
    settings = Settings(results_dir=tmp_path / "results", max_upload_mb=1)
    with testclient.TestClient(create_app(tiny_model, settings)) as client, fake.open("rb") as f:
        response = client.post("/api/segment", files={"file": ("gonad.nd2", f)})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("gonad.nd2 is not a readable ND2 file")

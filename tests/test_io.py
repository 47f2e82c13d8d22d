"""Tests of segmentation.io: reading stacks and percentile normalisation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile

from segmentation.errors import InputError
from segmentation.io import (
    ASSUMED_Z_STEP_IN_PIXELS,
    NormalizedStack,
    normalize_percentile,
    parse_channels,
    parse_voxel_size,
    percentile_scaling,
    read_stack,
    read_voxel_size,
    voxel_size_for_distances,
)

SHAPE = (5, 16, 20)  # Z, Y, X


def make_channels(n_channels: int = 2, dtype=np.uint16, seed: int = 0) -> np.ndarray:
    """(C, Z, Y, X) data, channel c offset by 1000 * c so channels are identifiable."""
    rng = np.random.default_rng(seed)
    offsets = 1000 * np.arange(n_channels).reshape(-1, 1, 1, 1)
    return (rng.integers(0, 200, (n_channels, *SHAPE)) + offsets).astype(dtype)


def test_czyx_with_axes_metadata(tmp_path):
    data = make_channels()
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"})
    stack = read_stack(path)
    assert stack.image.dtype == np.float32
    assert stack.image.shape == (2, *SHAPE)
    np.testing.assert_array_equal(stack.image, data)
    assert stack.source_axes == "CZYX"
    assert stack.source_dtype == "uint16"
    assert stack.voxel_size is None
    assert len(stack.warnings) == 1 and "records no voxel size" in stack.warnings[0]


def test_plain_4d_without_axes_is_czyx(tmp_path):
    data = make_channels()
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, data)
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.image, data)
    assert stack.source_axes == "CZYX"


def test_plain_4d_with_many_leading_planes_is_ambiguous(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, make_channels(6))
    with pytest.raises(InputError, match="channel axis"):
        read_stack(path)


def test_imagej_hyperstack_zcyx_and_voxel_size(tmp_path):
    data = make_channels()
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data.transpose(1, 0, 2, 3),
        imagej=True,
        metadata={"axes": "ZCYX", "spacing": 0.8, "unit": "micron"},
        resolution=(1 / 0.2, 1 / 0.25),
    )
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.image, data)
    assert stack.source_axes == "ZCYX"
    assert stack.voxel_size == pytest.approx((0.8, 0.25, 0.2))


def test_imagej_voxel_size_in_nanometres(tmp_path):
    path = tmp_path / "nm.tif"
    tifffile.imwrite(
        path,
        make_channels()[0],
        imagej=True,
        metadata={"axes": "ZYX", "spacing": 500.0, "unit": "nm"},
        resolution=(1 / 100.0, 1 / 100.0),
    )
    assert read_voxel_size(path) == pytest.approx((0.5, 0.1, 0.1))


def test_compressed_imagej_hyperstack(tmp_path):
    data = make_channels()
    path = tmp_path / "hyper_zlib.tif"
    tifffile.imwrite(
        path, data.transpose(1, 0, 2, 3), imagej=True, metadata={"axes": "ZCYX"}, compression="zlib"
    )
    np.testing.assert_array_equal(read_stack(path).image, data)


def test_ome_voxel_size_and_axes(tmp_path):
    data = make_channels()
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        data.transpose(1, 0, 2, 3),
        ome=True,
        metadata={
            "axes": "ZCYX",
            "PhysicalSizeX": 0.1,
            "PhysicalSizeY": 0.12,
            "PhysicalSizeZ": 0.6,
        },
    )
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.image, data)
    assert stack.source_axes == "ZCYX"
    assert stack.voxel_size == pytest.approx((0.6, 0.12, 0.1))


def test_singleton_time_axis_is_squeezed(tmp_path):
    data = make_channels()
    path = tmp_path / "tzcyx.tif"
    tifffile.imwrite(
        path, data.transpose(1, 0, 2, 3)[None], imagej=True, metadata={"axes": "TZCYX"}
    )
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.image, data)
    assert stack.source_axes == "ZCYX"


def test_single_channel_is_duplicated_with_warning(tmp_path, caplog):
    data = make_channels(1)[0]
    path = tmp_path / "zyx.tif"
    tifffile.imwrite(path, data)
    with caplog.at_level(logging.INFO):
        stack = read_stack(path, voxel_size=(0.8, 0.2, 0.2))
    np.testing.assert_array_equal(stack.image[0], data)
    np.testing.assert_array_equal(stack.image[1], data)
    assert stack.source_axes == "ZYX"
    assert len(stack.warnings) == 1 and "single channel" in stack.warnings[0]
    assert "membrane marker" in stack.warnings[0] and "\n" not in stack.warnings[0]
    assert "single channel" in caplog.text


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dtypes(tmp_path, dtype):
    data = make_channels(dtype=np.uint8 if dtype == np.uint8 else np.uint16)
    data = (data % 250).astype(dtype)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"})
    stack = read_stack(path)
    assert stack.source_dtype == np.dtype(dtype).name
    np.testing.assert_array_equal(stack.image, data.astype(np.float32))


def test_three_channels_need_channels(tmp_path):
    data = make_channels(3)
    path = tmp_path / "c3.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"})
    with pytest.raises(InputError, match="--channels I,J"):
        read_stack(path)
    stack = read_stack(path, channels=(2, 0))
    np.testing.assert_array_equal(stack.image[0], data[2])
    np.testing.assert_array_equal(stack.image[1], data[0])


def test_channels_reorder_two_channels(tmp_path):
    data = make_channels()
    path = tmp_path / "c2.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"})
    stack = read_stack(path, channels=(1, 0))
    np.testing.assert_array_equal(stack.image, data[::-1])


def test_channel_index_out_of_range(tmp_path):
    path = tmp_path / "c2.tif"
    tifffile.imwrite(path, make_channels(), metadata={"axes": "CZYX"})
    with pytest.raises(InputError, match="channel index 2 out of range"):
        read_stack(path, channels=(0, 2))


def test_parse_channels():
    assert parse_channels("0,1") == (0, 1)
    assert parse_channels(" 2 , 0 ") == (2, 0)
    for bad in ("0", "a,b", "0,1,2", "-1,0", ""):
        with pytest.raises(InputError, match="channels"):
            parse_channels(bad)


def test_rejects_2d_image(tmp_path):
    path = tmp_path / "2d.tif"
    tifffile.imwrite(path, make_channels()[0, 0])
    with pytest.raises(InputError, match="2-D image"):
        read_stack(path)


def test_rejects_2d_rgb_image_instead_of_reading_its_colours_as_planes(tmp_path):
    path = tmp_path / "photo.tif"
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.raises(InputError, match="photo.tif is a 2-D image"):
        read_stack(path)


def test_rejects_time_series(tmp_path):
    path = tmp_path / "t.tif"
    data = np.stack([make_channels()[0], make_channels(seed=1)[0]])
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match="time series"):
        read_stack(path)


def test_rejects_empty_stack(tmp_path):
    path = tmp_path / "empty.tif"
    tifffile.imwrite(path, np.zeros((2, 0, 16, 16), np.uint16), metadata={"axes": "CZYX"})
    with pytest.raises(InputError):
        read_stack(path)


def test_rejects_all_constant_stack(tmp_path):
    path = tmp_path / "const.tif"
    tifffile.imwrite(path, np.full((2, *SHAPE), 7, np.uint16), metadata={"axes": "CZYX"})
    with pytest.raises(InputError, match="channel 0 is constant"):
        read_stack(path)


def test_rejects_single_constant_channel(tmp_path):
    data = make_channels()
    data[1] = 5
    path = tmp_path / "const1.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"})
    with pytest.raises(InputError, match="channel 1 is constant"):
        read_stack(path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_rejects_non_finite_values(tmp_path, bad_value):
    data = make_channels(dtype=np.float32)
    data[0, 1, 2, 3] = bad_value
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"})
    with pytest.raises(InputError, match="NaN or infinite"):
        read_stack(path)


def test_rejects_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_stack(tmp_path / "missing.tif")


def test_rejects_wrong_extension(tmp_path):
    path = tmp_path / "stack.png"
    tifffile.imwrite(path, make_channels(), metadata={"axes": "CZYX"})
    with pytest.raises(InputError, match="unsupported file type"):
        read_stack(path)


def test_rejects_png_renamed_tif(tmp_path):
    from PIL import Image

    path = tmp_path / "image.tif"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="PNG")
    with pytest.raises(InputError, match="not a readable TIFF"):
        read_stack(path)


def test_rejects_text_file_renamed_tif(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("not an image\n")
    with pytest.raises(InputError, match="not a readable TIFF"):
        read_stack(path)


@pytest.mark.parametrize("imagej", [False, True])
@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_rejects_truncated_tiff(tmp_path, imagej, compression, keep):
    data = make_channels()
    path = tmp_path / "whole.tif"
    if imagej:
        tifffile.imwrite(
            path,
            data.transpose(1, 0, 2, 3),
            imagej=True,
            metadata={"axes": "ZCYX"},
            compression=compression,
        )
    else:
        tifffile.imwrite(path, data, metadata={"axes": "CZYX"}, compression=compression)
    content = path.read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(InputError):
        read_stack(truncated)


def test_rejects_too_many_voxels(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, make_channels(), metadata={"axes": "CZYX"})
    n_voxels = int(np.prod(SHAPE))
    with pytest.raises(InputError, match=f"{n_voxels:,} voxels.*limit of 100.*--max-voxels"):
        read_stack(path, max_voxels=100)
    assert read_stack(path, max_voxels=n_voxels).image.shape == (2, *SHAPE)


def test_rejects_unsupported_dtype(tmp_path):
    path = tmp_path / "bool.tif"
    tifffile.imwrite(path, make_channels() > 100, metadata={"axes": "CZYX"})
    with pytest.raises(InputError, match="data type"):
        read_stack(path)


def test_normalize_percentile_maps_percentiles_to_0_and_1():
    rng = np.random.default_rng(1)
    image = np.stack([rng.normal(100, 10, (3, 40, 40)), rng.normal(5000, 300, (3, 40, 40))])
    normalized = normalize_percentile(image, 1.0, 99.0, sample_step=1)
    assert normalized.dtype == np.float32
    for channel in range(2):
        low, high = np.percentile(normalized[channel], [1.0, 99.0])
        assert low == pytest.approx(0.0, abs=1e-5)
        assert high == pytest.approx(1.0, abs=1e-5)
    assert normalized.min() < 0.0 and normalized.max() > 1.0  # not clipped


def test_normalize_percentile_subsample_is_close():
    rng = np.random.default_rng(2)
    image = rng.gamma(2.0, 100.0, (1, 4, 256, 256)).astype(np.float32)
    exact = normalize_percentile(image, sample_step=1)
    strided = normalize_percentile(image, sample_step=4)
    np.testing.assert_allclose(strided, exact, atol=0.05)


def test_normalize_percentile_constant_and_sparse_channels():
    image = np.zeros((2, 2, 50, 50), np.float32)
    image[0] = 3.0
    image[1, 0, 0, 0] = 10.0  # p_low == p_high == 0: the maximum is used instead
    normalized = normalize_percentile(image)
    assert np.isfinite(normalized).all()
    np.testing.assert_array_equal(normalized[0], 0.0)
    assert normalized[1].max() == pytest.approx(1.0)
    assert normalized[1].min() == 0.0


def test_normalized_stack_reads_what_normalize_percentile_gives():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 4000, (2, 6, 70, 90)).astype(np.uint16)
    image[1] = 9  # a constant channel maps to 0 both ways
    whole = normalize_percentile(image)
    view = NormalizedStack(image, *percentile_scaling(image))
    assert view.shape == image.shape and view.ndim == 4
    np.testing.assert_array_equal(view[..., 1:4, 10:30, 5:60], whole[..., 1:4, 10:30, 5:60])
    np.testing.assert_array_equal(np.asarray(view), whole)
    with pytest.raises(IndexError):
        view[0]  # a key must keep the channels


def test_voxel_size_from_tifffile_shaped_metadata(tmp_path):
    """``germseg synth`` writes tifffile's JSON description with spacing, unit and resolution."""
    from segmentation.synthetic import write_phantom

    image_path, _ = write_phantom(tmp_path, shape=(8, 64, 64), seed=0)
    stack = read_stack(image_path)
    z, y, x = stack.voxel_size
    assert stack.source_axes == "CZYX"
    assert z > y > 0 and y == pytest.approx(x)


def test_voxel_size_given_replaces_the_files_and_is_checked(tmp_path):
    path = tmp_path / "calibrated.tif"
    tifffile.imwrite(
        path,
        make_channels().transpose(1, 0, 2, 3),
        imagej=True,
        metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um"},
        resolution=(10.0, 10.0),
    )
    assert read_stack(path).voxel_size == pytest.approx((2.0, 0.1, 0.1))
    assert read_stack(path).warnings == ()
    given = read_stack(path, voxel_size=(0.5, 0.25, 0.25))
    assert given.voxel_size == (0.5, 0.25, 0.25) and given.warnings == ()
    with pytest.raises(InputError, match="three positive numbers Z,Y,X in µm"):
        read_stack(path, voxel_size=(0.5, 0.0, 0.25))


@pytest.mark.parametrize("text", ["0.8,0.2", "a,b,c", "0.8,-0.2,0.2", "inf,1,1", ""])
def test_parse_voxel_size_refuses_anything_but_three_positive_numbers(text):
    with pytest.raises(InputError, match="voxel size must be three positive numbers"):
        parse_voxel_size(text)


def test_parse_voxel_size_and_the_distances_assumed_without_one():
    assert parse_voxel_size(" 0.8, 0.2,0.2 ") == (0.8, 0.2, 0.2)
    assert voxel_size_for_distances((0.8, 0.2, 0.2)) == (0.8, 0.2, 0.2)
    assert voxel_size_for_distances(None) == (ASSUMED_Z_STEP_IN_PIXELS, 1.0, 1.0)

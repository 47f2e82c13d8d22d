"""Tests of the synthetic phantom generator."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from segmentation.errors import InputError
from segmentation.synthetic import Phantom, make_phantom, write_phantom

SMALL = (16, 160, 160)


@pytest.fixture(scope="module")
def small_phantoms() -> list[Phantom]:
    return [make_phantom(SMALL, seed) for seed in range(4)]


def test_same_seed_gives_same_phantom(small_phantoms):
    again = make_phantom(SMALL, 0)
    np.testing.assert_array_equal(again.image, small_phantoms[0].image)
    np.testing.assert_array_equal(again.labels, small_phantoms[0].labels)
    assert again.voxel_size == small_phantoms[0].voxel_size


def test_different_seeds_give_different_phantoms(small_phantoms):
    first, second = small_phantoms[0], small_phantoms[1]
    assert not np.array_equal(first.image, second.image)
    assert not np.array_equal(first.labels, second.labels)


def test_types_shapes_and_range(small_phantoms):
    for phantom in small_phantoms:
        assert phantom.image.shape == (2, *SMALL)
        assert phantom.image.dtype == np.uint16
        assert phantom.image.max() <= 4095
        assert phantom.labels.shape == SMALL
        assert phantom.labels.dtype == np.uint16
        z_um, y_um, x_um = phantom.voxel_size
        assert y_um == x_um > 0
        assert 4 <= z_um / y_um <= 8


def test_labels_are_sequential_and_present(small_phantoms):
    for phantom in small_phantoms:
        cells = np.unique(phantom.labels[phantom.labels > 0])
        assert len(cells) >= 1, "a small window onto the gonad shows at least one cell"
        np.testing.assert_array_equal(cells, np.arange(1, len(cells) + 1))
    # windows onto oocytes show only a few (large) cells; those onto germ cells show many
    assert sum(int(phantom.labels.max()) for phantom in small_phantoms) >= 20


def test_every_label_is_3d_connected(small_phantoms):
    for phantom in small_phantoms:
        labels = phantom.labels
        slices = ndi.find_objects(labels)
        for cell, region in enumerate(slices, start=1):
            _, pieces = ndi.label(labels[region] == cell)
            assert pieces == 1, f"cell {cell} has {pieces} pieces"


def test_background_fraction_is_sensible():
    fractions = [float(np.mean(make_phantom((12, 384, 384), seed).labels == 0)) for seed in (0, 1)]
    for fraction in fractions:
        assert 0.1 < fraction < 0.95


def test_membranes_brighter_on_cell_cell_faces(small_phantoms):
    for phantom in small_phantoms:
        labels = phantom.labels
        membrane = phantom.image[1].astype(float)
        boundary = find_boundaries(labels, mode="inner")
        grown = ndi.grey_dilation(labels, size=(1, 3, 3))
        eroded = -ndi.grey_dilation(-labels.astype(np.int64), size=(1, 3, 3))
        cell_cell = boundary & (labels > 0) & (grown != eroded) & (eroded > 0)
        interior = (labels > 0) & ~ndi.binary_dilation(boundary, iterations=2)
        assert cell_cell.sum() > 100 and interior.sum() > 100
        assert membrane[cell_cell].mean() > 1.1 * membrane[interior].mean()


def test_variation_zero_is_canonical():
    one, two = make_phantom(SMALL, 3, variation=0.0), make_phantom(SMALL, 4, variation=0.0)
    assert one.voxel_size == two.voxel_size


def test_moderate_shape_has_small_cells_and_nuclei():
    # the whole canonical field at a quarter of the depth: germ cells and oocytes
    phantom = make_phantom((6, 1024, 1024), 7, variation=0.0)
    sizes = np.bincount(phantom.labels.ravel())[1:]
    assert phantom.labels.max() >= 20
    # the median cell is a few thousand voxels (about 35 px across, 6 slices deep)
    assert 1_000 < np.median(sizes) < 200_000
    cytoplasm = phantom.image[0].astype(float)
    cells = phantom.labels > 0
    # grainy cytoplasm with dark nuclei: a wide spread of intensities inside cells
    low, high = np.percentile(cytoplasm[cells], [5, 95])
    assert high > 1.5 * low
    assert cytoplasm[cells].mean() > 2 * cytoplasm[~cells].mean()


@pytest.mark.parametrize("shape", [(0, 10, 10), (4, 10)])
def test_bad_shape_is_rejected(shape):
    with pytest.raises(InputError):
        make_phantom(shape)


def test_write_phantom(tmp_path):
    image_path, labels_path = write_phantom(tmp_path / "out", shape=(8, 96, 96), seed=2)
    phantom = make_phantom((8, 96, 96), 2)
    with tifffile.TiffFile(image_path) as tif:
        image = tif.asarray()
        assert tif.shaped_metadata[0]["axes"] == "CZYX"
        assert tif.shaped_metadata[0]["spacing"] == pytest.approx(phantom.voxel_size[0])
    labels = tifffile.imread(labels_path)
    np.testing.assert_array_equal(image, phantom.image)
    np.testing.assert_array_equal(labels, phantom.labels)


@pytest.mark.parametrize("planes", [3, 4])
def test_write_phantom_of_three_or_four_planes_is_grey_not_rgb(tmp_path, planes):
    image_path, labels_path = write_phantom(tmp_path, shape=(planes, 32, 32), seed=1)
    for path in (image_path, labels_path):
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
            assert len(tif.pages) == (2 * planes if path == image_path else planes)


@pytest.mark.parametrize("seed", [5, 8, 10])
def test_small_windows_always_hold_cells(seed):
    """A window onto the field that would miss every cell is placed again."""
    assert make_phantom((8, 64, 64), seed=seed).labels.max() > 0

"""Tests of the distance-transform watershed."""

from __future__ import annotations

import bioimage_cpp.segmentation
import numpy as np
import pytest

from segmentation.errors import InputError
from segmentation.parameters import SegmentationParameters
from segmentation.pipeline import BoundaryPrediction, segment_from_boundaries
from segmentation.watershed import distance_transform_watershed
from segmentation.watershed.distance_transform import (
    _footprint_shape,
    boundary_distance,
    label_sparse,
    relative_spacing,
)


def two_boxes(shape=(10, 32, 48)) -> np.ndarray:
    """Boundary map with a bright plane at X = 23..24 splitting the volume in two."""
    boundary = np.zeros(shape, dtype=np.float32)
    boundary[:, :, 23:25] = 1.0
    return boundary


def test_plane_splits_volume_into_two_superpixels():
    superpixels = distance_transform_watershed(two_boxes(), footprint=15)
    assert superpixels.dtype == np.uint32
    assert superpixels.min() == 1
    assert superpixels.max() == 2
    assert np.unique(superpixels[:, :, :23]).size == 1
    assert np.unique(superpixels[:, :, 25:]).size == 1
    assert superpixels[0, 0, 0] != superpixels[0, 0, -1]


def test_labels_are_consecutive_and_cover_volume():
    rng = np.random.default_rng(0)
    boundary = rng.random((8, 40, 40)).astype(np.float32)
    superpixels = distance_transform_watershed(boundary, min_size=5)
    assert superpixels.min() == 1
    assert np.array_equal(np.unique(superpixels), np.arange(1, superpixels.max() + 1))


def test_min_size_refloods_small_segments_without_zeros():
    rng = np.random.default_rng(1)
    boundary = rng.random((8, 48, 48)).astype(np.float32)
    unfiltered = distance_transform_watershed(boundary, footprint=3, min_size=1)
    filtered = distance_transform_watershed(boundary, footprint=3, min_size=40)
    assert np.bincount(unfiltered.ravel())[1:].min() < 40
    sizes = np.bincount(filtered.ravel())[1:]
    assert sizes.min() >= 40
    assert filtered.min() == 1
    assert filtered.max() < unfiltered.max()


def test_mask_leaves_outside_zero_and_inside_labelled():
    boundary = two_boxes()
    mask = np.zeros(boundary.shape, dtype=bool)
    mask[:, 4:28, :] = True
    superpixels = distance_transform_watershed(boundary, footprint=15, mask=mask)
    assert np.all(superpixels[~mask] == 0)
    assert np.all(superpixels[mask] > 0)


def test_anisotropic_spacing_relative_to_x():
    assert relative_spacing(None, 3) == (1.0, 1.0, 1.0)
    assert relative_spacing((2.0, 0.5, 0.5), 3) == (4.0, 1.0, 1.0)
    with pytest.raises(InputError):
        relative_spacing((1.0, 0.5), 3)


def test_voxel_size_scales_distance_transform_along_z():
    boundary = np.zeros((6, 5, 7), dtype=bool)
    boundary[0] = True
    spacing = relative_spacing((2.0, 0.5, 0.5), 3)
    distance = boundary_distance(boundary, spacing)
    assert np.allclose(distance[:, 2, 3], 4.0 * np.arange(6))
    assert np.allclose(boundary_distance(boundary, (1.0, 1.0, 1.0))[:, 2, 3], np.arange(6))
    across_x = np.zeros((3, 5, 7), dtype=bool)
    across_x[:, :, 0] = True
    assert np.allclose(boundary_distance(across_x, spacing)[1, 2], np.arange(7))


def test_footprint_is_narrower_along_coarse_z():
    assert _footprint_shape(9, (1.0, 1.0, 1.0)) == (9, 9, 9)
    assert _footprint_shape(9, (4.0, 1.0, 1.0)) == (3, 9, 9)
    assert _footprint_shape(9, (20.0, 1.0, 1.0)) == (1, 9, 9)
    assert _footprint_shape(8, (1.0, 1.0)) == (9, 9)
    # the nearest odd number of planes, not one rounded up: 17 px at a Z step of 4.5 px
    # is 3.8 planes -> 3 (it was 5); 4 planes -> 5; at least 3 once a plane is reached
    assert _footprint_shape(17, (4.46, 1.0, 1.0)) == (3, 17, 17)
    assert _footprint_shape(17, (4.25, 1.0, 1.0)) == (5, 17, 17)
    assert _footprint_shape(17, (12.0, 1.0, 1.0)) == (3, 17, 17)
    assert _footprint_shape(17, (6.74, 1.0, 1.0)) == (3, 17, 17)


def test_rejects_bad_input():
    with pytest.raises(InputError):
        distance_transform_watershed(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(InputError):
        distance_transform_watershed(two_boxes(), footprint=0)
    with pytest.raises(InputError):
        distance_transform_watershed(two_boxes(), voxel_size=(1.0, 1.0))
    with pytest.raises(InputError, match="foreground_probability shape"):
        distance_transform_watershed(two_boxes(), foreground_probability=np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="foreground_seed_distance"):
        distance_transform_watershed(two_boxes(), foreground_seed_distance=-1.0)


def cell_beside_background(cell_width: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Boundary and foreground maps of one cell with a faint outer border.

    The only boundary above the threshold is a plane at the far X end; the cell's border
    to the background is faint (0.5). The distance transform peaks in the background at
    X = 0 and a single seed there floods the cell as well.
    """
    shape = (8, 40, 120)
    start = 118 - cell_width
    boundary = np.zeros(shape, dtype=np.float32)
    boundary[:, :, 118:] = 1.0
    boundary[:, :, start - 2 : start] = 0.5
    foreground = np.zeros(shape, dtype=np.float32)
    foreground[:, :, start:118] = 1.0
    return boundary, foreground


def test_stranded_foreground_gets_its_own_seed():
    boundary, foreground = cell_beside_background()
    without = distance_transform_watershed(boundary, footprint=15)
    assert without.max() == 1
    superpixels = distance_transform_watershed(
        boundary, footprint=15, foreground_probability=foreground
    )
    cell = superpixels[:, :, 90:118]
    background = superpixels[:, :, :88]
    assert np.unique(cell).size == 1
    assert np.unique(background).size == 1
    assert cell.flat[0] != background.flat[0]
    disabled = distance_transform_watershed(
        boundary, footprint=15, foreground_probability=foreground, foreground_seed_distance=0
    )
    assert np.array_equal(disabled, without)


def test_thin_stranded_rim_gets_no_seed():
    boundary, foreground = cell_beside_background(cell_width=8)
    superpixels = distance_transform_watershed(
        boundary, footprint=15, foreground_probability=foreground, foreground_seed_distance=6
    )
    assert superpixels.max() == 1
    deeper_rim = distance_transform_watershed(
        boundary, footprint=15, foreground_probability=foreground, foreground_seed_distance=3
    )
    assert deeper_rim.max() == 2


def test_seeded_cells_are_left_alone_by_foreground_seeding():
    boundary = two_boxes()
    foreground = np.zeros(boundary.shape, dtype=np.float32)
    foreground[:, :, 25:] = 1.0
    plain = distance_transform_watershed(boundary, footprint=15)
    seeded = distance_transform_watershed(boundary, footprint=15, foreground_probability=foreground)
    assert np.array_equal(plain, seeded)


def test_pipeline_finds_the_stranded_cell_only_with_foreground_seeds():
    boundary, foreground = cell_beside_background()
    prediction = BoundaryPrediction(boundary, foreground)
    found = segment_from_boundaries(prediction).labels
    assert found.max() == 1
    assert np.all(found[:, :, 92:116] == 1)
    assert np.all(found[:, :, :86] == 0)
    lost = segment_from_boundaries(
        prediction, SegmentationParameters(foreground_seed_distance=0)
    ).labels
    assert lost.max() == 0


@pytest.mark.parametrize("density", [0.0005, 0.004, 0.05])
@pytest.mark.parametrize("shape", [(9, 60, 70), (40, 50)])
def test_label_sparse_equals_labelling_the_whole_volume(shape, density):
    rng = np.random.default_rng(7)
    mask = rng.random(shape) < density
    mask.flat[rng.choice(mask.size, 6, replace=False)] = True
    mask |= np.roll(mask, 1, axis=-1) & (rng.random(shape) < 0.5)  # plateaus of 2+ voxels
    mask |= np.roll(mask, 1, axis=0) & (rng.random(shape) < 0.5)
    mask[-1] |= rng.random(shape[1:]) < 0.01  # components on the last plane too
    expected = bioimage_cpp.segmentation.label(mask, connectivity=1).astype(np.uint32)
    labels = label_sparse(mask)
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, expected)
    assert expected.max() > 1


def test_label_sparse_of_an_empty_mask_is_all_zero():
    assert not label_sparse(np.zeros((3, 4, 5), bool)).any()

"""Tests of background removal, size filters and relabelling."""

from __future__ import annotations

import numpy as np
import pytest

from segmentation.errors import InputError
from segmentation.postprocess import (
    filter_by_size,
    grow_into_foreground,
    merge_fragments,
    relabel_sequential,
    remove_background,
    segment_contacts,
)


def sized_labels() -> np.ndarray:
    """Labels 1, 2, 5 with 10, 20 and 40 voxels; 30 voxels of background."""
    return np.repeat(np.array([0, 1, 2, 5], dtype=np.uint32), [30, 10, 20, 40]).reshape(1, 10, 10)


def test_remove_background_by_mean_foreground():
    labels = sized_labels()
    foreground = np.where(labels == 2, 0.3, 0.9).astype(np.float32)
    foreground.ravel()[30:33] = 0.0  # label 1: mean 0.63
    result = remove_background(labels, foreground, threshold=0.5)
    assert result.dtype == labels.dtype
    assert set(np.unique(result).tolist()) == {0, 1, 5}
    assert np.array_equal(result[labels != 2], labels[labels != 2])
    lenient = remove_background(labels, foreground, threshold=0.25)
    assert set(np.unique(lenient).tolist()) == {0, 1, 2, 5}


def test_remove_background_rejects_shape_mismatch():
    with pytest.raises(InputError):
        remove_background(sized_labels(), np.zeros((2, 2)))


def test_filter_by_size_in_voxels():
    labels = sized_labels()
    assert set(np.unique(filter_by_size(labels, min_size=15, max_size=None))) == {0, 2, 5}
    assert set(np.unique(filter_by_size(labels, min_size=None, max_size=30))) == {0, 1, 2}
    assert set(np.unique(filter_by_size(labels, min_size=10, max_size=40))) == {0, 1, 2, 5}


def test_filter_by_size_in_cubic_micrometres():
    labels = sized_labels()
    voxel_size = (2.0, 0.5, 0.5)  # 0.5 µm³ per voxel: 5, 10 and 20 µm³
    kept = filter_by_size(
        labels, min_size=None, max_size=None, voxel_size=voxel_size,
        min_volume_um3=6.0, max_volume_um3=15.0,
    )
    assert set(np.unique(kept)) == {0, 2}
    with pytest.raises(InputError):
        filter_by_size(labels, min_volume_um3=6.0)


def test_relabel_sequential_uint16():
    labels = np.array([[0, 7, 7], [3, 0, 100]], dtype=np.int64)
    result = relabel_sequential(labels)
    assert result.dtype == np.uint16
    assert result.tolist() == [[0, 2, 2], [1, 0, 3]]


def test_relabel_sequential_switches_to_uint32_beyond_65535_labels():
    labels = np.arange(0, 2 * 70_000, 2, dtype=np.uint32).reshape(7, 100, 100)
    result = relabel_sequential(labels)
    assert result.dtype == np.uint32
    assert result.max() == 69_999
    assert np.array_equal(result.ravel(), np.arange(70_000))
    assert relabel_sequential(labels[:6, :, :50]).dtype == np.uint16


def test_relabel_sequential_with_huge_label_values():
    labels = np.array([0, 2**40, 5, 2**40], dtype=np.uint64)
    assert relabel_sequential(labels).tolist() == [0, 2, 1, 2]
    assert relabel_sequential(labels[1:]).tolist() == [2, 1, 2]


def oocyte_with_nucleus() -> np.ndarray:
    """A large cell (1) with a nucleus segment (2) inside, a small neighbour cell (3)."""
    labels = np.zeros((6, 40, 60), dtype=np.uint16)
    labels[:, 2:38, 2:40] = 1
    labels[:, 15:23, 15:23] = 2  # reaches the Z borders, like an oocyte's nucleus
    labels[:, 10:20, 40:50] = 3
    return labels


def test_segment_contacts_counts_faces_and_xy_borders():
    labels = np.zeros((2, 3, 4), dtype=np.uint8)
    labels[:, :, 2:] = 1
    first, second, area = segment_contacts(labels)
    pairs = {(int(a), int(b)): int(n) for a, b, n in zip(first, second, area, strict=True)}
    # the 0|1 face: 2 planes x 3 rows; each label touches the Y borders (2 x 2 planes x 2
    # columns) and one X border (2 planes x 3 rows); Z borders do not count
    assert pairs == {(0, 1): 6, (-1, 0): 14, (-1, 1): 14}


def test_merge_fragments_joins_a_nucleus_to_its_cell_and_keeps_the_neighbour():
    labels = oocyte_with_nucleus()
    merged = merge_fragments(labels, max_size_ratio=0.1, min_contact=0.5)
    assert set(np.unique(merged)) == {0, 1, 3}
    np.testing.assert_array_equal(merged[labels == 2], 1)
    # cell 3 is small but only part of its surface touches cell 1, the rest is background
    np.testing.assert_array_equal(merged == 3, labels == 3)
    assert merged.dtype == labels.dtype


def test_merge_fragments_respects_the_size_ratio_and_can_be_disabled():
    labels = oocyte_with_nucleus()
    # the nucleus is 384 voxels, cell 1 is 7,824: a ratio of 0.04 keeps it apart
    np.testing.assert_array_equal(merge_fragments(labels, max_size_ratio=0.04), labels)
    np.testing.assert_array_equal(merge_fragments(labels, max_size_ratio=0), labels)
    with pytest.raises(InputError):
        merge_fragments(labels, max_size_ratio=-1)
    with pytest.raises(InputError):
        merge_fragments(labels, min_contact=0)


def test_merge_fragments_follows_chains_to_the_cell():
    labels = oocyte_with_nucleus()
    labels[:, 17:21, 17:21] = 4  # a fragment inside the nucleus fragment
    # the nucleus now shares only two thirds of its surface with the cell: require half
    merged = merge_fragments(labels, max_size_ratio=0.5, min_contact=0.5)
    assert set(np.unique(merged)) == {0, 1, 3}
    np.testing.assert_array_equal(merged[(labels == 2) | (labels == 4)], 1)


def test_cell_at_the_field_edge_is_not_a_fragment():
    labels = np.zeros((4, 30, 30), dtype=np.uint16)
    labels[:, :, 6:] = 1
    labels[:, 10:16, 0:6] = 2  # cut by the X border; its other faces touch cell 1
    labels[:, :10, :6] = 1
    labels[:, 16:, :6] = 1
    merged = merge_fragments(labels, max_size_ratio=0.5, min_contact=0.9)
    np.testing.assert_array_equal(merged, labels)


def rim_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two cells side by side with an unlabelled foreground rim of 2 pixels around both, a
    membrane ridge between them, and an unlabelled foreground blob 10 pixels away."""
    labels = np.zeros((3, 30, 40), dtype=np.uint16)
    labels[:, 10:20, 5:15] = 1
    labels[:, 10:20, 15:25] = 2
    foreground = np.zeros(labels.shape, dtype=np.float32)
    foreground[:, 8:22, 3:27] = 0.9  # cells plus a 2-pixel rim
    foreground[:, 12:16, 35:39] = 0.9  # a separate blob, 10 pixels from cell 2
    boundary = np.full(labels.shape, 0.1, dtype=np.float32)
    boundary[:, :, 15] = 0.9  # membrane between the cells, through the rim too
    return labels, boundary, foreground


def test_grow_into_foreground_fills_rims_and_splits_them_at_the_membrane():
    labels, boundary, foreground = rim_case()
    grown = grow_into_foreground(labels, boundary, foreground, max_distance=3)
    assert grown.dtype == labels.dtype
    np.testing.assert_array_equal(grown[labels > 0], labels[labels > 0])
    # the rim is shared at the membrane: left of it cell 1, right of it cell 2
    assert (grown[:, 8:22, 3:15] == 1).all()
    assert (grown[:, 8:22, 16:27] == 2).all()
    # background and the distant blob stay unlabelled
    assert (grown[foreground == 0] == 0).all()
    assert (grown[:, 12:16, 35:39] == 0).all()


def test_grow_into_foreground_respects_the_distance_and_can_be_disabled():
    labels, boundary, foreground = rim_case()
    one = grow_into_foreground(labels, boundary, foreground, max_distance=1)
    assert (one[:, 9, 5:25] > 0).all() and (one[:, 10:20, 4] == 1).all()
    assert (one[:, 9, 4] == 0).all()  # the corner is sqrt(2) away
    assert (one[:, 8, :] == 0).all() and (one[:, :, 3] == 0).all()
    np.testing.assert_array_equal(
        grow_into_foreground(labels, boundary, foreground, max_distance=0), labels
    )
    # foreground not connected to a cell is never taken, however close
    far = grow_into_foreground(labels, boundary, foreground, max_distance=12)
    assert (far[:, 12:16, 35:39] == 0).all()
    bridged = foreground.copy()
    bridged[:, 13:15, 26:35] = 0.9
    near = grow_into_foreground(labels, boundary, bridged, max_distance=3)
    far = grow_into_foreground(labels, boundary, bridged, max_distance=15)
    assert (near[:, 12:16, 35:39] == 0).all() and (far[:, 12:16, 35:39] == 2).all()


def test_grow_into_foreground_scales_z_by_the_voxel_size():
    labels = np.zeros((9, 5, 5), dtype=np.uint8)
    labels[4] = 1
    foreground = np.ones(labels.shape, dtype=np.float32)
    boundary = np.zeros(labels.shape, dtype=np.float32)
    isotropic = grow_into_foreground(labels, boundary, foreground, max_distance=2)
    assert (isotropic[2:7] == 1).all() and (isotropic[[0, 1, 7, 8]] == 0).all()
    # planes 5 pixels apart: the next plane is already out of reach
    anisotropic = grow_into_foreground(
        labels, boundary, foreground, max_distance=2, voxel_size=(1.0, 0.2, 0.2)
    )
    np.testing.assert_array_equal(anisotropic, labels)


def test_grow_into_foreground_rejects_bad_input():
    labels, boundary, foreground = rim_case()
    with pytest.raises(InputError, match="foreground_probability shape"):
        grow_into_foreground(labels, boundary, foreground[:, :10])
    with pytest.raises(InputError, match="max_distance must be >= 0"):
        grow_into_foreground(labels, boundary, foreground, max_distance=-1)

"""Tests of training targets, weight maps, augmentation, data sources and patch datasets."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from segmentation.errors import InputError
from segmentation.training.augmentation import AugmentationConfig, augment
from segmentation.training.data import (
    PatchDataset,
    TrainingPair,
    crop_window,
    is_background_patch,
    patch_grid,
    read_training_sources,
    split_by_stack,
    split_stack_spatially,
)
from segmentation.training.targets import (
    edge_weights,
    labels_to_boundaries,
    labels_to_foreground,
    make_targets,
)
from segmentation.training.weight_maps import cached_weight_map, unet_weight_map


def _two_cells() -> np.ndarray:
    labels = np.zeros((3, 8, 8), dtype=np.int32)
    labels[:, 2:4, 2:6] = 1
    labels[:, 4:6, 2:6] = 2
    return labels


def _random_cells(seed: int, shape=(8, 48, 48), n_cells: int = 20) -> np.ndarray:
    """Voronoi cells around random seeds, cut off far from seeds, with gaps between cells."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    points = tuple(rng.integers(0, n, n_cells) for n in shape)
    seeds[points] = np.arange(1, n_cells + 1)
    distance, indices = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[tuple(indices)]
    labels[distance > 6] = 0
    inner = labels != ndi.grey_erosion(labels, size=(1, 3, 3))
    labels[inner & (rng.random(shape) < 0.7)] = 0
    return labels


# --- targets -------------------------------------------------------------------------------


def test_boundaries_mark_both_sides_of_every_label_change():
    boundaries = labels_to_boundaries(_two_cells(), connectivity=1)
    assert boundaries.dtype == np.float32
    row = boundaries[1, :, 3]
    # background | cell 1 (2 rows) | cell 2 (2 rows) | background: every change is thick
    np.testing.assert_array_equal(row, [0, 1, 1, 1, 1, 1, 1, 0])
    assert boundaries[1, 3, 3] == 1 and boundaries[1, 4, 3] == 1


def test_boundary_connectivity_changes_diagonal_neighbours():
    labels = np.zeros((3, 5, 5), dtype=np.int32)
    labels[1, 2, 2] = 1
    face = labels_to_boundaries(labels, connectivity=1)
    full = labels_to_boundaries(labels, connectivity=3)
    assert face.sum() == 7 and full.sum() == 27


def test_make_targets_channels():
    labels = _two_cells()
    targets = make_targets(labels)
    assert targets.shape == (2, *labels.shape) and targets.dtype == np.float32
    np.testing.assert_array_equal(targets[1], labels_to_foreground(labels))
    np.testing.assert_array_equal(targets[0], labels_to_boundaries(labels))


def test_edge_weights_penalise_non_edges_and_invert_within_range():
    boundary = np.array([[[1, 1, 0, 0]]], dtype=np.float32)
    weight_map = np.array([[[1.0, 3.0, 5.0, 7.0]]], dtype=np.float32)
    weights = edge_weights(boundary, weight_map, background_weight=0.5)
    np.testing.assert_allclose(weights[0, 0], [3.0, 5.0, 0.5, 0.5])
    inverted = edge_weights(boundary, weight_map, invert=True)
    np.testing.assert_allclose(inverted[0, 0], [5.0, 3.0, 1.0, 1.0])


def test_targets_reject_non_integer_labels():
    with pytest.raises(InputError):
        make_targets(np.zeros((2, 4, 4), dtype=np.float32))


# --- weight maps ---------------------------------------------------------------------------


def _brute_force_border_term(labels, w0, sigma, sampling):
    ids = np.unique(labels[labels > 0])
    distances = np.stack([ndi.distance_transform_edt(labels != k, sampling=sampling) for k in ids])
    distances.sort(axis=0)
    return w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize(
    ("seed", "sigma", "voxel_size"),
    [(0, 5.0, None), (1, 1.5, None), (2, 2.0, (3.0, 1.0, 1.0)), (3, 1.5, (2.0, 0.5, 0.5))],
)
def test_weight_map_matches_brute_force(seed, sigma, voxel_size):
    labels = _random_cells(seed)
    assert len(np.unique(labels)) > 10
    w0 = 10.0
    sampling = (1.0, 1.0, 1.0) if voxel_size is None else (voxel_size[0] / voxel_size[1], 1, 1)
    expected = _brute_force_border_term(labels, w0, sigma, sampling)
    result = unet_weight_map(labels, w0=w0, sigma=sigma, voxel_size=voxel_size, class_balance=False)
    assert result.dtype == np.float32 and result.shape == labels.shape
    np.testing.assert_allclose(result - 1.0, expected, atol=1e-3 * w0)
    matters = expected > 1e-3 * w0
    np.testing.assert_allclose((result - 1.0)[matters], expected[matters], rtol=1e-4, atol=1e-5)


def test_weight_map_class_balance_and_degenerate_cases():
    labels = _two_cells()
    balanced = unet_weight_map(labels, w0=0.0)
    foreground = labels > 0
    np.testing.assert_allclose(balanced.mean(), 1.0, rtol=1e-5)
    assert balanced[foreground].min() > balanced[~foreground].max()
    one_cell = (labels == 1).astype(np.int32)
    np.testing.assert_array_equal(unet_weight_map(one_cell, class_balance=False), 1.0)
    np.testing.assert_array_equal(unet_weight_map(np.zeros((2, 4, 4), np.int32)), 1.0)


def test_touching_cells_get_the_highest_weight():
    weights = unet_weight_map(_two_cells(), w0=10.0, sigma=5.0, class_balance=False)
    # inside cell 1 next to cell 2: d1 = 0, d2 = 1
    np.testing.assert_allclose(weights[1, 3, 3], 1 + 10 * np.exp(-1 / 50), rtol=1e-5)


def test_cached_weight_map_hits_and_respects_parameters(tmp_path):
    labels = _random_cells(4, shape=(4, 24, 24), n_cells=6)
    first = cached_weight_map(labels, tmp_path, "stack a", sigma=3.0)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    second = cached_weight_map(labels, tmp_path, "stack a", sigma=3.0)
    np.testing.assert_array_equal(first, second)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    other = cached_weight_map(labels, tmp_path, "stack a", sigma=4.0)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    assert not np.array_equal(first, other)


# --- augmentation --------------------------------------------------------------------------


def _patch(seed=0, shape=(12, 32, 32)):
    labels = _random_cells(seed, shape=shape, n_cells=8)
    targets = make_targets(labels)
    weights = np.stack([targets[0] * 2 + 1, targets[1] + 0.5]).astype(np.float32)
    return targets, weights


@pytest.mark.parametrize("seed", range(6))
def test_spatial_augmentation_keeps_image_targets_and_weights_aligned(seed):
    targets, weights = _patch(seed)
    config = AugmentationConfig.spatial_only()
    config = type(config)(**{**config.__dict__, "p_elastic": 1.0, "elastic_sigma": 3.0})
    image, new_targets, new_weights = augment(
        targets.copy(), targets, weights, np.random.default_rng(seed), config
    )
    exact = (image == 0) | (image == 1)
    assert exact.mean() > 0.5
    np.testing.assert_array_equal(image[exact], new_targets[exact])
    assert np.mean((image > 0.5) != new_targets) < 0.05
    # weights were built from the targets and must still match them voxel by voxel
    np.testing.assert_array_equal(new_weights[0], new_targets[0] * 2 + 1)
    np.testing.assert_array_equal(new_weights[1], new_targets[1] + 0.5)


def test_flips_and_rotations_are_exact_on_non_square_patches():
    targets, weights = _patch(shape=(6, 16, 24))
    config = AugmentationConfig.spatial_only()
    config = type(config)(**{**config.__dict__, "p_elastic": 0.0, "p_flip": 1.0, "p_rot90": 1.0})
    image, new_targets, _ = augment(targets, targets, weights, np.random.default_rng(0), config)
    assert image.shape == targets.shape
    np.testing.assert_array_equal(image, new_targets)
    np.testing.assert_array_equal(new_targets, targets[:, ::-1, :, :])  # Z flip + half turn


def test_augmentation_is_deterministic_and_keeps_shapes_and_binary_targets():
    targets, weights = _patch()
    image = np.random.default_rng(1).random((2, *targets.shape[1:]), dtype=np.float32)
    config = AugmentationConfig(p_elastic=1.0, p_blur=1.0, p_photons=1.0, p_dim_membrane=1.0)
    first = augment(image, targets, weights, np.random.default_rng(7), config)
    second = augment(image, targets, weights, np.random.default_rng(7), config)
    third = augment(image, targets, weights, np.random.default_rng(8), config)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], third[0])
    assert [a.shape for a in first] == [image.shape, targets.shape, weights.shape]
    assert set(np.unique(first[1])) <= {0.0, 1.0}
    assert all(a.dtype == np.float32 for a in first)


def test_intensity_transforms_never_mix_channels():
    image = np.zeros((2, 8, 16, 16), dtype=np.float32)
    image[0, 4, 8, 8] = 1.0
    config = AugmentationConfig.none()
    config = type(config)(**{**config.__dict__, "p_blur": 1.0})
    blurred, _, _ = augment(image, image[:1], image[:1], np.random.default_rng(0), config)
    np.testing.assert_array_equal(blurred[1], 0.0)
    assert blurred[0].max() < 1.0


@pytest.mark.parametrize("seed", range(6))
def test_single_channel_copies_one_channel_into_both_inputs(seed):
    """As read_stack does for a single-channel stack: identical inputs, from either channel."""
    targets, weights = _patch()
    image = np.random.default_rng(1).random((2, *targets.shape[1:]), dtype=np.float32)
    image[1] += 5.0  # tell the channels apart
    config = replace(AugmentationConfig.none(), p_single_channel=1.0)
    copied, new_targets, new_weights = augment(
        image, targets, weights, np.random.default_rng(seed), config
    )
    np.testing.assert_array_equal(copied[0], copied[1])
    assert any(np.array_equal(copied[0], channel) for channel in image)
    np.testing.assert_array_equal(new_targets, targets)
    np.testing.assert_array_equal(new_weights, weights)


def test_single_channel_fraction_sets_how_many_patches_are_copied():
    targets, weights = _patch()
    image = np.random.default_rng(1).random((2, *targets.shape[1:]), dtype=np.float32)
    config = replace(AugmentationConfig.none(), p_single_channel=0.25)
    copied = [
        np.array_equal(*augment(image, targets, weights, np.random.default_rng(s), config)[0])
        for s in range(400)
    ]
    assert 0.18 < np.mean(copied) < 0.32
    assert AugmentationConfig().p_single_channel == 0.0


# --- data sources and patching -------------------------------------------------------------


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_sources_from_csv(tmp_path):
    for name in ("a", "b", "c", "d"):
        _touch(tmp_path / "img" / f"{name}.tif")
        _touch(tmp_path / "lab" / f"{name}.tif")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text(
        "images,masks,train\n"
        "img/a.tif,lab/a.tif,TRUE\nimg/b.tif,lab/b.tif,FALSE\n"
        "img/c.tif,lab/c.tif,val\nimg/d.tif,lab/d.tif,\n"
    )
    pairs = read_training_sources(csv_path)
    assert [p.split for p in pairs] == [None, "test", "val", None]
    assert pairs[0].image_path == (tmp_path / "img" / "a.tif").resolve()
    train, val = split_by_stack(pairs)
    assert {p.image_path.stem for p in train} == {"a", "d"}
    assert [p.image_path.stem for p in val] == ["c"]

    bad = tmp_path / "bad.csv"
    bad.write_text("image,mask\nimg/a.tif,lab/missing.tif\n")
    with pytest.raises(InputError, match="not found"):
        read_training_sources(bad)

    headerless = tmp_path / "headerless.csv"
    headerless.write_text("img/a.tif,lab/a.tif,train\nimg/b.tif,lab/b.tif,val\n")
    assert [p.split for p in read_training_sources(headerless)] == ["train", "val"]
    other_names = tmp_path / "other_names.csv"
    other_names.write_text("img,seg\nimg/a.tif,lab/a.tif\n")
    with pytest.raises(InputError, match="header 'img,seg' not recognised; name the columns"):
        read_training_sources(other_names)


def test_sources_from_folders(tmp_path):
    flat = tmp_path / "flat"
    for name in ("x.tif", "x_labels.tif", "y.tif", "y_masks.tif", "z.tif"):
        _touch(flat / name)
    pairs = read_training_sources(flat)
    assert [(p.image_path.name, p.labels_path.name) for p in pairs] == [
        ("x.tif", "x_labels.tif"),
        ("y.tif", "y_masks.tif"),
    ]
    nested = tmp_path / "nested"
    _touch(nested / "images" / "s1.tif")
    _touch(nested / "labels" / "s1.tif")
    _touch(nested / "images" / "s2.tif")
    _touch(nested / "labels" / "s2_labels.tif")
    pairs = read_training_sources(nested)
    assert [p.labels_path.name for p in pairs] == ["s1.tif", "s2_labels.tif"]
    with pytest.raises(InputError):
        read_training_sources(tmp_path / "empty_or_missing")


def test_split_by_stack_is_per_stack_seeded_and_excludes_test(caplog):
    pairs = [TrainingPair(f"i{i}", f"l{i}") for i in range(10)] + [TrainingPair("t", "t", "test")]
    train, val = split_by_stack(pairs, val_fraction=0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert not {p.image_path for p in train} & {p.image_path for p in val}
    assert all(p.split != "test" for p in train + val)
    assert split_by_stack(pairs, val_fraction=0.2, seed=3) == (train, val)
    with caplog.at_level(logging.WARNING):
        single_train, single_val = split_by_stack([TrainingPair("a", "b")])
    assert single_val == [] and len(single_train) == 1
    assert "split_stack_spatially" in caplog.text


def test_split_stack_spatially():
    image = np.zeros((2, 3, 4, 10), dtype=np.float32)
    labels = np.zeros((3, 4, 10), dtype=np.int32)
    (ti, tl), (vi, vl) = split_stack_spatially(image, labels, 0.2)
    assert ti.shape == (2, 3, 4, 8) and vl.shape == (3, 4, 2) and tl.shape == (3, 4, 8)
    assert vi.shape == (2, 3, 4, 2)


@pytest.mark.parametrize(
    ("shape", "patch"), [((25, 100, 130), (24, 48, 48)), ((20, 64, 64), (24, 64, 32))]
)
def test_patch_grid_covers_volume_without_mostly_mirrored_patches(shape, patch):
    windows = patch_grid(shape, patch, min_real_fraction=0.6)
    covered = np.zeros(shape, dtype=bool)
    for window in windows:
        assert all(w.stop - w.start == p for w, p in zip(window, patch, strict=True))
        real = np.prod([min(w.stop, n) - w.start for w, n in zip(window, shape, strict=True)])
        assert real / np.prod(patch) >= 0.6
        covered[window] = True
    assert covered.all()


def test_patch_grid_rejects_patches_that_would_be_mostly_mirrored():
    with pytest.raises(InputError, match="mirrored"):
        patch_grid((10, 64, 64), (24, 64, 64))


def test_crop_window_pads_past_the_edge():
    array = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    window = (slice(0, 4), slice(0, 2), slice(0, 2))
    reflected = crop_window(array, window)
    assert reflected.shape == (2, 4, 2, 2)
    np.testing.assert_array_equal(reflected[:, 3], array[:, 1])
    np.testing.assert_array_equal(crop_window(array, window, mode="constant")[:, 3], 0)


def test_crop_window_pads_before_the_start():
    array = np.arange(4 * 3 * 2).reshape(4, 3, 2)
    window = (slice(-2, 3), slice(0, 3), slice(0, 2))
    edge = crop_window(array, window, mode="edge")
    assert edge.shape == (5, 3, 2)
    np.testing.assert_array_equal(edge[:3], np.broadcast_to(array[0], (3, 3, 2)))
    np.testing.assert_array_equal(edge[2:], array[:3])
    constant = crop_window(array, window, mode="constant")
    np.testing.assert_array_equal(constant[:2], 0)
    np.testing.assert_array_equal(constant[2:], array[:3])
    with pytest.raises(InputError, match="outside"):
        crop_window(array, (slice(-3, 0), slice(0, 3), slice(0, 2)))


@pytest.mark.parametrize("planes", [8, 9, 16])
def test_z_margin_places_patches_past_the_stack_ends_with_edge_padding(planes):
    labels = np.zeros((planes, 16, 16), dtype=np.int32)
    labels[:, 2:14, 2:14] = 1
    # plane z of the membrane channel holds z + 1, so padding shows up as repeated values
    image = np.broadcast_to(
        np.arange(1, planes + 1, dtype=np.float32)[None, :, None, None], (2, planes, 16, 16)
    ).copy()
    patch, margin = 12, 4
    dataset = PatchDataset(
        [(image, labels)], (patch, 16, 16), samples_per_epoch=60, padding="edge", z_margin=margin
    )
    before_counts, after_counts = set(), set()
    for index in range(len(dataset)):
        item = dataset[index]
        values = item["image"][1, :, 0, 0].numpy()
        real = item["weight"][1, :, 0, 0].numpy() > 0
        before, after = int(np.argmax(real)), int(np.argmax(real[::-1]))
        before_counts.add(before)
        after_counts.add(after)
        largest = max(margin, -(-(patch - planes) // 2))
        assert before <= largest and after <= largest
        # padded planes repeat the first or last plane of the stack; real ones are in order
        np.testing.assert_array_equal(values[:before], 1)
        np.testing.assert_array_equal(values[patch - after :], planes)
        np.testing.assert_array_equal(np.diff(values[real]), 1)
        assert real.sum() == patch - before - after
    # patches reach past both ends, not only past the end the stack is too short for
    assert max(before_counts) > 0 and max(after_counts) > 0


def test_z_margin_and_padding_are_checked():
    labels = np.ones((12, 8, 8), dtype=np.int32)
    image = np.zeros((2, 12, 8, 8), dtype=np.float32)
    with pytest.raises(InputError, match="z_margin"):
        PatchDataset([(image, labels)], (10, 8, 8), z_margin=5)
    with pytest.raises(InputError, match="padding"):
        PatchDataset([(image, labels)], (10, 8, 8), padding="wrap")


def test_is_background_patch_direction():
    labels = np.zeros((10, 10, 10), dtype=np.int32)
    assert is_background_patch(labels)
    labels[:2] = 1
    assert not is_background_patch(labels)
    labels[:] = 0
    labels[0, 0, :10] = 1  # 1 % foreground
    assert is_background_patch(labels, max_background_fraction=0.98)
    assert not is_background_patch(labels, max_background_fraction=0.995)


def test_patch_dataset_items(tmp_path):
    labels = _random_cells(5, shape=(10, 48, 48), n_cells=10)
    image = np.stack([labels > 0, labels % 2]).astype(np.float32)
    dataset = PatchDataset(
        [(image, labels)],
        (12, 32, 32),
        samples_per_epoch=4,
        augmentation=AugmentationConfig(),
        cache_dir=tmp_path,
        seed=1,
    )
    item = dataset[2]
    assert set(item) == {"image", "target", "weight"}
    assert item["image"].shape == (2, 12, 32, 32)
    assert item["target"].shape == item["weight"].shape == (2, 12, 32, 32)
    assert all(t.dtype == torch.float32 for t in item.values())
    # Z = 10 < 12: the two padded slices carry no weight (before augmentation moves them)
    assert (item["weight"] == 0).any()
    again = dataset[2]
    assert all(torch.equal(item[k], again[k]) for k in item)
    dataset.set_epoch(1)
    assert not torch.equal(item["image"], dataset[2]["image"])
    assert len(list(tmp_path.glob("*.npy"))) == 1

    grid = PatchDataset([(image, labels)], (10, 32, 32), grid=True)
    assert len(grid) == 4
    window_item = grid[0]
    np.testing.assert_array_equal(window_item["target"][1].numpy(), labels[:, :32, :32] > 0)
    np.testing.assert_array_equal(window_item["image"].numpy(), image[:, :, :32, :32])


def test_grid_patch_weights_are_the_full_precision_weights_within_half_precision():
    labels = _random_cells(6, shape=(10, 48, 48), n_cells=10)
    image = np.stack([labels > 0, labels % 2]).astype(np.float32)
    grid = PatchDataset([(image, labels)], (10, 32, 32), grid=True)
    weight_map = unet_weight_map(labels)
    boundary = make_targets(labels)[0]
    expected = np.stack([edge_weights(boundary, weight_map), weight_map])[:, :, :32, :32]
    weights = grid[0]["weight"].numpy()
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-3)
    # image 8, targets 2, weights 4 bytes a voxel; foreground indices 4 bytes each
    voxels, foreground = labels.size, np.count_nonzero(labels)
    assert grid.nbytes == 14 * voxels + 4 * foreground


def test_z_flip_uses_the_targets_of_the_flipped_labels():
    labels = np.zeros((6, 8, 8), dtype=np.int32)
    labels[:3, 1:7, 1:7] = 1  # two cells stacked in Z
    labels[3:, 1:7, 1:7] = 2
    targets = make_targets(labels, mode="anisotropic")
    flipped = make_targets(labels[::-1], mode="anisotropic")[:, ::-1]
    assert not np.array_equal(targets, flipped)  # plane 2 marked, plane 3 after flipping
    weights = targets + 1
    config = AugmentationConfig.spatial_only()
    config = type(config)(**{**config.__dict__, "p_elastic": 0.0, "p_rot90": 0.0, "p_flip": 1.0})
    image = labels[None].astype(np.float32)
    new_image, new_targets, new_weights = augment(
        image, targets, weights, np.random.default_rng(0), config, z_flipped=(flipped, flipped + 1)
    )
    flipped_labels = labels[::-1, ::-1, ::-1]
    np.testing.assert_array_equal(new_image[0], flipped_labels)
    # the lower plane of the face is marked again, as for unflipped labels
    np.testing.assert_array_equal(new_targets, make_targets(flipped_labels, mode="anisotropic"))
    np.testing.assert_array_equal(new_weights, new_targets + 1)
    with pytest.raises(InputError, match="z_flipped"):
        augment(
            image,
            targets,
            weights,
            np.random.default_rng(0),
            config,
            z_flipped=(flipped[:1], weights),
        )


@pytest.mark.parametrize("mode", ["anisotropic", "anisotropic-symmetric", "thick"])
def test_patch_dataset_targets_match_the_augmented_labels(mode):
    labels = _random_cells(3, shape=(12, 32, 32), n_cells=12)
    image = np.stack([labels, labels]).astype(np.float32)
    config = AugmentationConfig.spatial_only()
    config = type(config)(**{**config.__dict__, "p_elastic": 0.0, "p_flip": 0.5})
    dataset = PatchDataset(
        [(image, labels)],
        (12, 32, 32),
        samples_per_epoch=8,
        augmentation=config,
        target_options={"mode": mode},
        max_background_fraction=None,
    )
    for index in range(len(dataset)):
        item = dataset[index]
        seen_labels = item["image"][0].numpy().astype(np.int32)
        expected = make_targets(seen_labels, mode=mode)
        np.testing.assert_array_equal(item["target"].numpy(), expected)


def test_anisotropic_boundaries_mark_one_plane_between_planes():
    from segmentation.training.targets import labels_to_boundaries

    labels = np.zeros((4, 6, 6), dtype=np.int32)
    labels[:2, :, :3] = 1  # two cells side by side in the lower planes
    labels[:2, :, 3:] = 2
    labels[2:, :, :] = 3  # one cell above both
    boundaries = labels_to_boundaries(labels, mode="anisotropic")
    # in-plane change between cells 1 and 2: columns 2 and 3 in planes 0 and 1
    assert boundaries[0, :, 2].all() and boundaries[0, :, 3].all()
    assert not boundaries[0, :, 0].any() and not boundaries[0, :, 5].any()
    # the change between planes 1 and 2 marks plane 1 only
    assert boundaries[1].all()
    assert not boundaries[2].any() and not boundaries[3].any()
    thick = labels_to_boundaries(labels, mode="thick", connectivity=1)
    assert thick[2].all() and boundaries.sum() < thick.sum()


def test_symmetric_anisotropic_boundaries_mark_both_planes_with_one_half():
    from segmentation.training.targets import labels_to_boundaries

    labels = np.zeros((4, 6, 6), dtype=np.int32)
    labels[:2, :, :3] = 1
    labels[:2, :, 3:] = 2
    labels[2:, :, :] = 3
    boundaries = labels_to_boundaries(labels, mode="anisotropic-symmetric")
    assert set(np.unique(boundaries)) == {0.0, 0.5, 1.0}
    # in-plane change between cells 1 and 2 stays 1 on both sides
    assert (boundaries[:2, :, 2:4] == 1).all()
    # the change between planes 1 and 2 gives 0.5 on both planes away from it
    assert (boundaries[1, :, [0, 1, 4, 5]] == 0.5).all()
    assert (boundaries[2] == 0.5).all()
    assert not boundaries[0, :, [0, 1, 4, 5]].any() and not boundaries[3].any()
    # independent of the direction of the Z axis
    flipped = labels_to_boundaries(labels[::-1], mode="anisotropic-symmetric")[::-1]
    np.testing.assert_array_equal(boundaries, flipped)
    # a one-plane cap on the first plane is no longer all boundary
    cap = np.full((3, 8, 8), 2, dtype=np.int32)
    cap[0, 2:6, 2:6] = 1
    lower = labels_to_boundaries(cap, mode="anisotropic")
    symmetric = labels_to_boundaries(cap, mode="anisotropic-symmetric")
    assert lower[0, 3, 3] == 1 and symmetric[0, 3, 3] == 0.5


def _shot_noise_patch(seed: int = 0, photons: float = 20.0) -> np.ndarray:
    """Two channels of flat cells imaged with ``photons`` per unit intensity (white noise)."""
    rng = np.random.default_rng(seed)
    signal = np.full((2, 8, 64, 64), 0.5, dtype=np.float32)
    signal[:, :, :, 32:] = 1.0
    return (rng.poisson(signal * photons) / photons).astype(np.float32)


def _noise_variance(channel: np.ndarray, columns: slice) -> float:
    steps = np.diff(channel[:, :, columns], axis=2)
    return 0.5 * float(np.mean(steps**2))


def test_fewer_photons_raise_the_noise_variance_by_their_inverse():
    image = _shot_noise_patch()
    config = replace(
        AugmentationConfig.none(), p_photons=1.0, photon_fraction_range=(0.5, 0.5)
    )
    noisier, _, _ = augment(image, image[:1], image[:1], np.random.default_rng(0), config)
    for c in range(2):
        for columns in (slice(2, 30), slice(34, 62)):
            ratio = _noise_variance(noisier[c], columns) / _noise_variance(image[c], columns)
            assert ratio == pytest.approx(2.0, rel=0.15)
    # the signal itself is unchanged on average
    np.testing.assert_allclose(noisier.mean(axis=(1, 2, 3)), image.mean(axis=(1, 2, 3)), rtol=0.02)


def test_blur_blurs_the_signal_but_keeps_the_noise_white_and_as_strong():
    image = _shot_noise_patch(photons=40.0)
    config = replace(
        AugmentationConfig.none(),
        p_blur=1.0,
        blur_sigma_xy_range=(2.0, 2.0),
        blur_sigma_z_range=(1.0, 1.0),
    )
    blurred, _, _ = augment(image, image[:1], image[:1], np.random.default_rng(0), config)
    # the step between the two cells is smeared over several pixels
    profile = blurred[0].mean(axis=(0, 1))
    assert 0.6 < profile[31] < 0.9 and 0.6 < profile[32] < 0.9
    inner = slice(40, 62)
    before, after = _noise_variance(image[0], inner), _noise_variance(blurred[0], inner)
    assert after == pytest.approx(before, rel=0.2)
    # still white: neighbouring noise values are nearly uncorrelated
    noise = blurred[0][:, :, inner] - blurred[0][:, :, inner].mean()
    correlation = np.corrcoef(noise[:, :, 1:].ravel(), noise[:, :, :-1].ravel())[0, 1]
    assert abs(correlation) < 0.15


def test_noise_never_goes_below_the_cameras_clip():
    image = _shot_noise_patch(photons=5.0)
    image[:, :, :8] = 0.0  # clipped at the camera's zero
    config = replace(AugmentationConfig.none(), p_photons=1.0, p_gauss_noise=1.0)
    for seed in range(3):
        augmented, _, _ = augment(image, image[:1], image[:1], np.random.default_rng(seed), config)
        assert augmented.min() == 0.0
        assert np.mean(augmented == 0.0) >= 0.05  # many clipped voxels stay clipped


def test_patch_dataset_can_yield_labels_transformed_with_the_targets():
    labels = np.zeros((8, 48, 48), np.int32)
    labels[:, 4:24, 4:24] = 3
    labels[:, 24:44, 4:44] = 7
    image = np.random.default_rng(0).random((2, *labels.shape), dtype=np.float32)
    dataset = PatchDataset(
        [(image, labels)],
        (8, 32, 32),
        samples_per_epoch=6,
        augmentation=AugmentationConfig(p_elastic=1.0),
        keep_labels=True,
    )
    for index in range(len(dataset)):
        item = dataset[index]
        patch_labels = item["labels"].numpy()
        assert patch_labels.dtype == np.int64 and patch_labels.shape == (8, 32, 32)
        assert set(np.unique(patch_labels)) <= {0, 3, 7}
        # the foreground target was transformed exactly as the labels were
        np.testing.assert_array_equal(item["target"][1].numpy() > 0.5, patch_labels > 0)
    assert "labels" not in PatchDataset([(image, labels)], (8, 32, 32), samples_per_epoch=1)[0]


@pytest.mark.parametrize("gain", [0.8, -0.1])
def test_face_contrast_brightens_or_dims_the_faces_between_cells(gain):
    labels = np.zeros((6, 48, 48), np.int32)
    labels[:, 4:44, 4:24] = 1
    labels[:, 4:44, 24:44] = 2
    targets = make_targets(labels, mode="anisotropic-symmetric").astype(np.float32)
    weights = np.ones_like(targets)
    image = _shot_noise_patch(photons=50.0)[:, :6, :48, :48]
    image[:, labels == 0] = 0.1
    config = replace(
        AugmentationConfig.none(), p_face_contrast=1.0, face_contrast_range=(gain, gain)
    )
    changed, _, _ = augment(image, targets, weights, np.random.default_rng(0), config)
    faces = np.zeros_like(labels, dtype=bool)
    faces[:, 10:38, 23:25] = True  # the face between the two cells, away from background
    interior = (targets[1] > 0) & ~ndi.binary_dilation(targets[0] > 0, iterations=3)
    for c in range(2):
        before = image[c][faces].mean() / image[c][interior].mean()
        after = changed[c][faces].mean() / changed[c][interior].mean()
        assert (after > before + 0.3) if gain > 0 else (after < before - 0.02)
        np.testing.assert_allclose(changed[c][labels == 0].mean(), 0.1, atol=0.02)

"""Tests of segmentation.evaluation on tiny hand-made label volumes with hand-worked numbers."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage import metrics as skmetrics

from segmentation.errors import InputError
from segmentation.evaluation import (
    DEFAULT_IOU_THRESHOLDS,
    adapted_rand_error,
    evaluate_segmentation,
    iou_matrix,
    match_instances,
    merges_and_splits,
    plot_f1_vs_iou,
    variation_of_information,
    write_evaluation_csv,
)
from segmentation.evaluation.report import CSV_COLUMNS

THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def three_cubes() -> np.ndarray:
    """Cells of 2x2x2 = 8, 4x4x4 = 64 and 4x3x2 = 24 voxels on background."""
    labels = np.zeros((4, 8, 16), dtype=np.uint16)
    labels[0:2, 0:2, 0:2] = 1
    labels[:, 2:6, 4:8] = 2
    labels[:, 4:7, 10:12] = 3
    return labels


def merge_case() -> tuple[np.ndarray, np.ndarray]:
    """GT: g1 = x 0:4 (4*4*4 = 64 voxels), g2 = x 4:6 (32); pred: one cell over x 0:6 (96)."""
    gt = np.zeros((4, 4, 10), dtype=np.int32)
    gt[..., 0:4] = 1
    gt[..., 4:6] = 2
    pred = np.zeros_like(gt)
    pred[..., 0:6] = 1
    return gt, pred


def split_case() -> tuple[np.ndarray, np.ndarray]:
    """GT: one cell x 0:8 (128 voxels); pred: halves x 0:4 and x 4:8 (64 each)."""
    gt = np.ones((4, 4, 8), dtype=np.int32)
    pred = np.ones_like(gt)
    pred[..., 4:8] = 2
    return gt, pred


def merge_and_split_case() -> tuple[np.ndarray, np.ndarray]:
    """GT g1 x 0:4, g2 x 4:8 (64 each), g3 x 8:16 (128).

    Pred p1 x 0:8 merges g1+g2; p2 x 8:12 and p3 x 12:16 split g3. Every overlapping pair has
    IoU 64/128 = 0.5.
    """
    gt = np.zeros((4, 4, 16), dtype=np.int32)
    gt[..., 0:4], gt[..., 4:8], gt[..., 8:16] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[..., 0:8], pred[..., 8:12], pred[..., 12:16] = 1, 2, 3
    return gt, pred


def voronoi_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small Voronoi label volume with background and a shifted, re-cut copy of it."""
    rng = np.random.default_rng(seed)
    shape = (6, 40, 40)
    markers = np.zeros(shape, dtype=np.int32)
    points = [rng.integers(0, s, 20) for s in shape]
    markers[tuple(points)] = np.arange(1, 21)
    _, index = ndi.distance_transform_edt(markers == 0, return_indices=True)
    gt = markers[tuple(index)]
    gt[:, :, :5] = 0
    pred = np.roll(gt, 2, axis=1)
    pred[:, 20:, :] = np.where(pred[:, 20:, :] > 0, pred[:, 20:, :] + 100, 0)
    return gt, pred


def reference_f1(gt: np.ndarray, pred: np.ndarray, threshold: float) -> float:
    """F1 as the reference computed it (metrics.py:85-92): strict >, no one-to-one matching."""
    iou, _, _ = iou_matrix(gt, pred)
    matches = iou > threshold
    tp = np.count_nonzero(matches.sum(axis=1) == 1)
    fp = np.count_nonzero(matches.sum(axis=0) == 0)
    fn = np.count_nonzero(matches.sum(axis=1) == 0)
    return 2 * tp / (2 * tp + fp + fn)


def test_perfect_prediction_scores_one_everywhere() -> None:
    gt = three_cubes()
    result = evaluate_segmentation(gt, gt.copy(), iou_thresholds=[*THRESHOLDS, 1.0])
    assert (result["n_gt"], result["n_pred"]) == (3, 3)
    assert [row["f1"] for row in result["per_threshold"]] == [1.0] * 10
    assert [row["tp"] for row in result["per_threshold"]] == [3] * 10
    assert result["f1_iou50"] == 1.0
    assert (result["merges"], result["splits"]) == (0, 0)
    assert result["adapted_rand_error"] == 0.0
    assert (result["voi_split"], result["voi_merge"]) == (0.0, 0.0)


def test_iou_matrix_of_a_merge() -> None:
    gt, pred = merge_case()
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    # |g1 ∩ p| / |g1 ∪ p| = 64 / 96, |g2 ∩ p| / |g2 ∪ p| = 32 / 96.
    np.testing.assert_allclose(iou, [[64 / 96], [32 / 96]])
    assert gt_ids.tolist() == [1, 2]
    assert pred_ids.tolist() == [1]


def test_merge_is_one_match_and_one_merge() -> None:
    gt, pred = merge_case()
    # IoU 2/3 and 1/3 (see above): one-to-one, so only g1 can match p, at thresholds <= 2/3.
    at_50 = match_instances(gt, pred, 0.5)
    assert (at_50.tp, at_50.fp, at_50.fn) == (1, 0, 1)
    # precision 1/1, recall 1/2, F1 = 2*1 / (2 + 1) = 2/3.
    assert (at_50.precision, at_50.recall) == (1.0, 0.5)
    assert at_50.f1 == pytest.approx(2 / 3)
    assert at_50.matched_pairs.tolist() == [[1, 1]]
    # At 0.3 both pairs are matchable but p can be used once: the higher IoU (g1) wins.
    at_30 = match_instances(gt, pred, 0.3)
    assert (at_30.tp, at_30.fp, at_30.fn) == (1, 0, 1)
    assert at_30.matched_pairs.tolist() == [[1, 1]]
    at_70 = match_instances(gt, pred, 0.7)
    assert (at_70.tp, at_70.fp, at_70.fn, at_70.f1) == (0, 1, 2, 0.0)
    # p covers all of g1 (64/64 >= 0.5) and all of g2 (32/32): a merge. No GT cell contains
    # two predicted cells (|g1 ∩ p| / |p| = 64/96, |g2 ∩ p| / |p| = 32/96): no split.
    assert merges_and_splits(gt, pred) == (1, 0)


def test_split_halves_have_iou_one_half_and_match_inclusively() -> None:
    gt, pred = split_case()
    iou, _, _ = iou_matrix(gt, pred)
    # Each half: 64 / 128 = 0.5 exactly.
    assert iou.tolist() == [[0.5, 0.5]]
    # IoU >= threshold is matchable: at 0.5 one half matches, the other is a false positive.
    at_50 = match_instances(gt, pred, 0.5)
    assert (at_50.tp, at_50.fp, at_50.fn) == (1, 1, 0)
    # precision 1/2, recall 1/1, F1 = 2 / (1 + 2) = 2/3.
    assert (at_50.precision, at_50.recall) == (0.5, 1.0)
    assert at_50.f1 == pytest.approx(2 / 3)
    at_60 = match_instances(gt, pred, 0.6)
    assert (at_60.tp, at_60.fp, at_60.fn) == (0, 2, 1)
    # Both halves lie fully inside g (64/64 >= 0.5): a split; each half covers only 64/128 of
    # g, but one GT cell cannot be a merge.
    assert merges_and_splits(gt, pred) == (0, 1)


@pytest.mark.parametrize(
    ("shift", "expected_tp"),
    [
        # IoU = (4 - k) * 16 / ((4 + k) * 16): k = 1 -> 48/80 = 0.6 (matched up to 0.6)
        (1, [1, 1, 1, 1, 1, 1, 0, 0, 0]),
        # k = 2 -> 32/96 = 1/3 (matched at 0.1, 0.2, 0.3)
        (2, [1, 1, 1, 0, 0, 0, 0, 0, 0]),
        # k = 3 -> 16/112 = 1/7 ~ 0.143 (matched at 0.1 only)
        (3, [1, 0, 0, 0, 0, 0, 0, 0, 0]),
    ],
)
def test_shifted_cube_matches_below_its_iou(shift: int, expected_tp: list[int]) -> None:
    gt = np.zeros((4, 8, 12), dtype=np.uint8)
    gt[:, 2:6, 2:6] = 1
    pred = np.zeros_like(gt)
    pred[:, 2:6, 2 + shift : 6 + shift] = 1
    iou, _, _ = iou_matrix(gt, pred)
    assert iou[0, 0] == pytest.approx((4 - shift) / (4 + shift))
    result = evaluate_segmentation(gt, pred, iou_thresholds=THRESHOLDS)
    assert [row["tp"] for row in result["per_threshold"]] == expected_tp
    assert [row["f1"] for row in result["per_threshold"]] == [float(t) for t in expected_tp]


def test_merge_and_split_is_not_scored_perfect() -> None:
    gt, pred = merge_and_split_case()
    # The reference counted g1 and g2 as TPs (one match each) and g3 as neither (two matches):
    # TP 2, FP 0, FN 0 -> F1 = 1.0 at IoU 0.1. The case reproduces that bug...
    assert reference_f1(gt, pred, 0.1) == 1.0
    # ...while one-to-one matching gives TP 2 (p1-g1 or p1-g2, p2-g3 or p3-g3), FP 1, FN 1:
    # F1 = 2*2 / (3 + 3) = 2/3, at 0.1 and (IoU 0.5 >= 0.5) at 0.5, none from 0.6.
    result = evaluate_segmentation(gt, pred, iou_thresholds=[0.1, 0.5, 0.6])
    counts = [(r["tp"], r["fp"], r["fn"]) for r in result["per_threshold"]]
    assert counts == [(2, 1, 1), (2, 1, 1), (0, 3, 3)]
    assert result["per_threshold"][0]["f1"] == pytest.approx(2 / 3)
    assert (result["merges"], result["splits"]) == (1, 1)


def test_merges_and_splits_mirror_each_other() -> None:
    gt, pred = voronoi_pair()
    merges, splits = merges_and_splits(gt, pred)
    assert merges_and_splits(pred, gt) == (splits, merges)
    gt, pred = merge_and_split_case()
    assert merges_and_splits(pred, gt) == (1, 1)
    assert merges_and_splits(*split_case()[::-1]) == (1, 0)


def test_partial_overlap_is_neither_merge_nor_split() -> None:
    gt, pred = merge_case()
    pred[..., 3:6] = 0
    # p = x 0:3 covers 48/64 of g1 and nothing of g2: one GT cell covered, no merge.
    assert merges_and_splits(gt, pred) == (0, 0)
    with pytest.raises(InputError, match="Overlap fraction"):
        merges_and_splits(gt, pred, overlap_fraction=0.0)


@pytest.mark.parametrize(
    ("dtype", "offset"),
    # Ids up to ~2**40 in both volumes overflow an int64 pair key: the rank path is used.
    [(np.int64, 1000), (np.uint64, 1000), (np.uint64, 2**40)],
)
def test_relabelling_does_not_change_any_result(dtype: type, offset: int) -> None:
    gt, pred = voronoi_pair()
    rng = np.random.default_rng(1)
    gt_lut = np.zeros(gt.max() + 1, dtype=dtype)
    gt_lut[1:] = rng.permutation(gt.max()).astype(dtype) * 7 + offset
    pred_lut = np.zeros(pred.max() + 1, dtype=dtype)
    pred_lut[1:] = rng.permutation(pred.max()).astype(dtype) * 13 + offset
    relabelled = evaluate_segmentation(gt_lut[gt], pred_lut[pred])
    original = evaluate_segmentation(gt, pred)
    assert relabelled == original
    assert 0 < original["f1_iou50"] < 1
    iou, gt_ids, pred_ids = iou_matrix(gt_lut[gt], pred_lut[pred])
    original_iou, original_gt_ids, original_pred_ids = iou_matrix(gt, pred)
    rows = np.argsort(gt_lut[original_gt_ids])
    cols = np.argsort(pred_lut[original_pred_ids])
    np.testing.assert_array_equal(iou, original_iou[np.ix_(rows, cols)])
    np.testing.assert_array_equal(gt_ids, np.sort(gt_lut[original_gt_ids]))
    np.testing.assert_array_equal(pred_ids, np.sort(pred_lut[original_pred_ids]))


def test_adapted_rand_error_hand_worked() -> None:
    # All four GT voxels in one predicted segment. Ordered pairs of distinct voxels
    # (Σ n² - N): same in both 2²+2²-4 = 4, same in GT 4, same in pred 4²-4 = 12;
    # F = 2*4 / (4 + 12) = 0.5, error 0.5. GT background (the two 0 voxels) is ignored.
    gt = np.array([[[0, 0, 1, 1, 2, 2]]])
    pred = np.array([[[3, 0, 1, 1, 1, 1]]])
    assert adapted_rand_error(gt, pred) == pytest.approx(0.5)
    # Merge case: n = 64, 32 (N = 96); both 64²+32²-96 = 5024 = GT; pred 96²-96 = 9120;
    # error = 1 - 2*5024 / (5024 + 9120) = 4096 / 14144.
    assert adapted_rand_error(*merge_case()) == pytest.approx(4096 / 14144)
    # Split case: both 2*64²-128 = 8064 = pred; GT 128²-128 = 16256;
    # error = 1 - 2*8064 / (8064 + 16256) = 8192 / 24320.
    assert adapted_rand_error(*split_case()) == pytest.approx(8192 / 24320)


def test_partition_metrics_agree_with_scikit_image() -> None:
    gt, pred = voronoi_pair(seed=3)
    expected_are = skmetrics.adapted_rand_error(gt, pred)[0]
    assert adapted_rand_error(gt, pred) == pytest.approx(expected_are)
    expected_voi = skmetrics.variation_of_information(gt, pred, ignore_labels=[0])
    np.testing.assert_allclose(variation_of_information(gt, pred), expected_voi, atol=1e-9)


def test_variation_of_information_hand_worked() -> None:
    # Merge of a 2/3 and a 1/3 cell: split H(pred|gt) = 0; merge H(gt|pred) = H(2/3, 1/3).
    voi_split, voi_merge = variation_of_information(*merge_case())
    assert voi_split == pytest.approx(0.0, abs=1e-12)
    assert voi_merge == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    # Two equal halves: split = H(1/2, 1/2) = 1 bit, merge = 0.
    voi_split, voi_merge = variation_of_information(*split_case())
    assert voi_split == pytest.approx(1.0)
    assert voi_merge == pytest.approx(0.0, abs=1e-12)


def test_f1_by_size_bins_matched_predictions_with_their_gt_cell() -> None:
    gt = np.zeros((5, 8, 16), dtype=np.int32)
    gt[0:2, 0:2, 0:2] = 1  # 8 voxels
    gt[0:4, 2:6, 4:8] = 2  # 64 voxels
    pred = np.zeros_like(gt)
    pred[0:2, 0:2, 0:2] = 5  # = cell 1
    pred[0:5, 2:6, 4:8] = 6  # 80 voxels containing cell 2: IoU 64/80 = 0.8
    pred[0:2, 0:2, 12:14] = 7  # 8 voxels, unmatched
    result = evaluate_segmentation(gt, pred, size_bins=[0, 20, 70, math.inf],
                                   voxel_size=(2.0, 0.5, 0.5))
    small, medium, large = result["f1_by_size"]
    # Small: GT {1}, pred {5 (matched to 1), 7 (own size 8)}: TP 1, F1 = 2 / (1 + 2).
    assert (small["n_gt"], small["n_pred"], small["tp"]) == (1, 2, 1)
    assert small["f1"] == pytest.approx(2 / 3)
    # Medium: GT {2}; pred 6 has 80 voxels but follows its GT cell here: F1 1.
    assert (medium["n_gt"], medium["n_pred"], medium["tp"], medium["f1"]) == (1, 1, 1, 1.0)
    # Nothing is >= 70 voxels after assignment: empty bin, no score.
    assert (large["n_gt"], large["n_pred"], large["f1"], large["max_voxels"]) == (0, 0, None, None)
    # Voxel volume 2 * 0.5 * 0.5 = 0.5 µm³.
    assert (medium["min_um3"], medium["max_um3"]) == (10.0, 35.0)
    json.dumps(result, allow_nan=False)


def test_empty_volumes() -> None:
    empty = np.zeros((2, 4, 4), dtype=np.uint8)
    both_empty = evaluate_segmentation(empty, empty)
    assert both_empty["f1_iou50"] == 1.0
    assert (both_empty["adapted_rand_error"], both_empty["voi_split"]) == (0.0, 0.0)
    cells = empty.copy()
    cells[0, :2, :2] = 1
    missed = match_instances(cells, empty, 0.5)
    assert (missed.tp, missed.fn, missed.precision, missed.recall, missed.f1) == (0, 1, 0, 0, 0)
    invented = match_instances(empty, cells, 0.5)
    assert (invented.fp, invented.precision, invented.f1) == (1, 0.0, 0.0)


def test_bad_input_is_rejected() -> None:
    gt = three_cubes()
    with pytest.raises(InputError, match="shape"):
        evaluate_segmentation(gt, gt[:, :, :8])
    with pytest.raises(InputError, match="dtype"):
        iou_matrix(gt, gt.astype(np.float32))
    with pytest.raises(InputError, match="negative"):
        iou_matrix(gt.astype(np.int32) - 1, gt)
    with pytest.raises(InputError, match="IoU threshold"):
        match_instances(gt, gt, 0.0)
    with pytest.raises(InputError, match="Size bins"):
        evaluate_segmentation(gt, gt, size_bins=[0, 100, 50])
    with pytest.raises(InputError, match="Voxel size"):
        evaluate_segmentation(gt, gt, voxel_size=(1.0, 0.5))


def test_csv_and_png_reports(tmp_path) -> None:
    results = [
        ("perfect", evaluate_segmentation(three_cubes(), three_cubes())),
        ("merge_split", evaluate_segmentation(*merge_and_split_case())),
    ]
    csv_path = write_evaluation_csv(tmp_path / "out" / "evaluation.csv", results)
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2 * len(DEFAULT_IOU_THRESHOLDS)
    merge_split_at_50 = next(
        r for r in rows if r["name"] == "merge_split" and float(r["iou_threshold"]) == 0.5
    )
    assert (merge_split_at_50["tp"], merge_split_at_50["merges"]) == ("2", "1")
    assert float(merge_split_at_50["f1"]) == pytest.approx(2 / 3)

    png_path = plot_f1_vs_iou(tmp_path / "out" / "f1_vs_iou.png", results)
    with Image.open(png_path) as image:
        assert image.format == "PNG"
        assert image.size == (1500, 450)
        colours = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert np.unique(colours, axis=0).shape[0] > 10
    with pytest.raises(InputError, match="No evaluation results"):
        write_evaluation_csv(tmp_path / "none.csv", [])


def test_small_ground_truth_cells_and_predictions_on_them_can_be_left_out() -> None:
    gt = np.zeros((4, 20, 20), np.int32)
    gt[:, 0:10, 0:10] = 1  # 400 voxels
    gt[:, 10:20, 0:10] = 2  # 400 voxels
    gt[:, 0:2, 18:20] = 3  # a 16-voxel fragment at the border
    pred = np.zeros_like(gt)
    pred[:, 0:10, 0:10] = 5
    pred[:, 12:20, 0:10] = 6  # IoU 0.8 with cell 2
    pred[:, 0:2, 17:20] = 7  # lies mostly on the fragment
    everything = evaluate_segmentation(gt, pred)
    assert everything["n_gt"] == 3 and everything["n_pred"] == 3
    assert everything["ignored_gt"] == 0
    result = evaluate_segmentation(gt, pred, min_gt_size=100)
    assert result["n_gt"] == 2 and result["n_pred"] == 2
    assert result["ignored_gt"] == 1 and result["ignored_pred"] == 1
    assert result["f1_iou50"] == 1.0
    # a prediction only partly on the fragment stays, and counts as a false positive
    pred[:, 0:2, 12:20] = 7
    kept = evaluate_segmentation(gt, pred, min_gt_size=100)
    assert kept["ignored_pred"] == 0 and kept["n_pred"] == 3
    assert kept["f1_iou50"] == pytest.approx(2 * 2 / (2 + 3))
    with pytest.raises(InputError, match="whole number"):
        evaluate_segmentation(gt, pred, min_gt_size=-1)

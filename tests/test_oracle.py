"""Oracle test of the post-network chain with the library defaults.

A near-perfect network is simulated from a phantom's true labels: thick label boundaries
(including those with the background), blurred anisotropically, with Gaussian noise, as the
boundary probability, and the blurred foreground as the foreground probability. The chain
watershed -> region graph -> partition -> projection -> background removal -> fragment merging
-> size filter -> relabelling (``segment_from_boundaries``) must then recover the cells.
Ground-truth cells smaller than DEFAULT_MIN_SIZE voxels (cells cut by the window's edges)
are left out of the evaluation: the size filter removes them by design.
"""

from __future__ import annotations

import bioimage_cpp.filters
import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from segmentation.evaluation import match_instances
from segmentation.parameters import DEFAULT_MIN_SIZE, SegmentationParameters
from segmentation.pipeline import BoundaryPrediction, segment_from_boundaries
from segmentation.postprocess import filter_by_size
from segmentation.synthetic import make_phantom
from segmentation.watershed.distance_transform import relative_spacing

SHAPE = (24, 384, 384)
NOISE = 0.1


def oracle_probabilities(labels: np.ndarray, voxel_size, seed: int):
    """Boundary and foreground probabilities a near-perfect network would predict."""
    sigma = tuple(1.0 / step for step in relative_spacing(voxel_size, 3))
    boundary = find_boundaries(labels, mode="thick").astype(np.float32)
    boundary = bioimage_cpp.filters.gaussian_smoothing(boundary, sigma)
    boundary /= boundary.max()
    boundary += np.random.default_rng(seed).normal(0.0, NOISE, labels.shape).astype(np.float32)
    np.clip(boundary, 0.0, 1.0, out=boundary)
    foreground = bioimage_cpp.filters.gaussian_smoothing((labels > 0).astype(np.float32), sigma)
    return boundary, np.clip(foreground, 0.0, 1.0)


def segment(boundary, foreground, voxel_size, method: str) -> np.ndarray:
    """The library's post-network chain with its defaults (only the method varies)."""
    prediction = BoundaryPrediction(boundary, foreground)
    return segment_from_boundaries(
        prediction, SegmentationParameters(method=method), voxel_size
    ).labels


@pytest.fixture(scope="module", params=[(3, 0.0), (1, 0.5)], ids=["canonical", "moderate"])
def oracle_case(request):
    seed, variation = request.param
    phantom = make_phantom(SHAPE, seed, variation=variation)
    boundary, foreground = oracle_probabilities(phantom.labels, phantom.voxel_size, seed)
    truth = filter_by_size(phantom.labels, min_size=DEFAULT_MIN_SIZE, max_size=None)
    return truth, boundary, foreground, phantom.voxel_size


@pytest.mark.parametrize("method", ["agglomeration", "multicut"])
def test_oracle_boundaries_recover_cells(oracle_case, method):
    truth, boundary, foreground, voxel_size = oracle_case
    predicted = segment(boundary, foreground, voxel_size, method)
    assert predicted.dtype == np.uint16
    result = match_instances(truth, predicted, iou_threshold=0.5)
    assert result.n_gt >= 50
    assert result.f1 >= 0.95, (method, result.f1, result.precision, result.recall)

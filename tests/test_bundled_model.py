"""The shipped model on photon-limited phantoms (what real stacks look like, issue 16)."""

from __future__ import annotations

import numpy as np
import pytest

from segmentation.evaluation import evaluate_segmentation
from segmentation.io import Stack
from segmentation.model import load_model
from segmentation.parameters import InferenceParameters, SegmentationParameters
from segmentation.pipeline import predict, segment_from_boundaries
from segmentation.synthetic import make_phantom


@pytest.fixture(scope="module")
def bundled_model():
    return load_model(None, device="cpu")


def test_bundled_model_finds_cells_in_photon_limited_phantoms(bundled_model):
    """Held-out seeds 10004-10007, 25 x 256 x 256: v8 scores F1@0.5 0.57, 0.77, 0.43, 0.49
    (mean 0.56; OpenVINO float32), v7 0.52, 0.61, 0.60, 0.43 (0.54); the model trained on
    the old, clean phantoms (v5) scored 0.25 and 0.12 on 10004 and 10006. Single small
    fields swing by +-0.15 between models of equal means, so the mean is what is held."""
    scores = []
    for seed in (10004, 10005, 10006, 10007):
        phantom = make_phantom((25, 256, 256), seed)
        stack = Stack(
            phantom.image.astype(np.float32), phantom.voxel_size, "CZYX", "uint16", ()
        )
        prediction = predict(stack, bundled_model, InferenceParameters(engine="torch"))
        result = segment_from_boundaries(prediction, SegmentationParameters(), phantom.voxel_size)
        scores.append(evaluate_segmentation(phantom.labels, result.labels)["f1_iou50"])
    assert np.mean(scores) >= 0.5, scores
    assert min(scores) >= 0.3, scores


def test_bundled_card_names_the_trained_z_steps(bundled_model):
    assert bundled_model.card.z_step_range == [4.0, 8.0]
    assert bundled_model.card.metrics["mean_f1_iou50"] > 0

"""Sliding-window inference: no seams, patch-size independence, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from segmentation.errors import InputError
from segmentation.inference import predict_probabilities, sliding_windows, window_starts
from segmentation.model import UNet3D


class ConstantLogit(nn.Module):
    """Answers the same logit everywhere, whatever the input."""

    def __init__(self, value: float, out_channels: int = 2) -> None:
        super().__init__()
        self.value = value
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], self.out_channels, *x.shape[2:])
        return torch.full(shape, self.value, dtype=x.dtype)


class Pointwise(nn.Module):
    """A 1×1×1 convolution: each voxel's output depends on that voxel only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 2, kernel_size=1)
        torch.manual_seed(0)
        nn.init.normal_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class WrongAtWindowBorder(nn.Module):
    """Answers "boundary" on the first and last column (X) of every window, "inside" elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.full((x.shape[0], 2, *x.shape[2:]), -10.0, dtype=x.dtype)
        logits[..., 0] = 10.0
        logits[..., -1] = 10.0
        return logits


def _whole_volume_probabilities(network: nn.Module, image: np.ndarray) -> np.ndarray:
    """The network applied to the whole volume at once, no windows."""
    with torch.no_grad():
        return torch.sigmoid(network(torch.from_numpy(image)[None]))[0].numpy()


def test_windows_cover_volume_and_end_at_border():
    assert window_starts(100, 40, 0.25) == [0, 30, 60]
    assert window_starts(30, 40, 0.25) == [0]
    windows = sliding_windows((10, 100, 70), (10, 40, 40), 0.5)
    covered = np.zeros((10, 100, 70), dtype=int)
    for window in windows:
        covered[window] += 1
    assert covered.min() >= 1


def test_constant_model_gives_constant_output():
    image = np.random.default_rng(0).normal(size=(2, 12, 70, 90)).astype(np.float32)
    output = predict_probabilities(
        ConstantLogit(0.7), image, patch=(8, 32, 32), overlap=0.3, batch_size=3
    )
    assert output.shape == (2, 12, 70, 90)
    np.testing.assert_allclose(output, 1 / (1 + np.exp(-0.7)), rtol=1e-5)


def test_result_does_not_depend_on_patch_size():
    image = np.random.default_rng(1).normal(size=(2, 10, 60, 50)).astype(np.float32)
    network = Pointwise()
    small = predict_probabilities(network, image, patch=(4, 16, 16), overlap=0.5)
    large = predict_probabilities(network, image, patch=(10, 40, 64), overlap=0.25)
    direct = _whole_volume_probabilities(network, image)
    np.testing.assert_allclose(small, direct, atol=1e-5)
    np.testing.assert_allclose(large, direct, atol=1e-5)


def test_deterministic_and_batch_size_independent():
    torch.manual_seed(0)
    network = UNet3D(2, 2, f_maps=4).eval()
    image = np.random.default_rng(2).normal(size=(2, 12, 48, 48)).astype(np.float32)
    first = predict_probabilities(network, image, patch=(8, 32, 32), overlap=0.5, batch_size=1)
    second = predict_probabilities(network, image, patch=(8, 32, 32), overlap=0.5, batch_size=4)
    np.testing.assert_allclose(first, second, atol=1e-5)
    assert np.all((first >= 0) & (first <= 1))


def test_progress_callback_reports_every_window():
    calls = []
    image = np.zeros((2, 8, 40, 40), dtype=np.float32)
    predict_probabilities(
        ConstantLogit(0.0),
        image,
        patch=(8, 16, 16),
        overlap=0.0,
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    total = len(sliding_windows((8, 40, 40), (8, 16, 16), 0.0))
    assert calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_bf16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    network = UNet3D(2, 2, f_maps=4).eval()
    image = np.random.default_rng(3).normal(size=(2, 8, 32, 32)).astype(np.float32)
    full = predict_probabilities(network, image, patch=(8, 32, 32), overlap=0.0)
    reduced = predict_probabilities(network, image, patch=(8, 32, 32), overlap=0.0, autocast="bf16")
    assert np.abs(full - reduced).max() < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"overlap": 1.0}, "overlap"), ({"autocast": "int8"}, "autocast")],
)
def test_bad_parameters_are_rejected(kwargs, message):
    image = np.zeros((2, 4, 8, 8), dtype=np.float32)
    arguments = {"patch": (4, 8, 8), "overlap": 0.0, **kwargs}
    with pytest.raises(InputError, match=message):
        predict_probabilities(ConstantLogit(0.0), image, **arguments)


def test_auto_autocast_is_bf16_only_on_cpus_that_run_it_natively():
    from segmentation.inference import resolve_autocast

    cpu = torch.device("cpu")
    assert resolve_autocast("auto", cpu, fast_cpu_bfloat16=True) == "bf16"
    # emulated bfloat16 is ~100x slower than float32 (AVX2-only CPUs)
    assert resolve_autocast("auto", cpu, fast_cpu_bfloat16=False) == "none"
    assert resolve_autocast("auto", torch.device("cuda")) == "fp16"
    assert resolve_autocast("none", cpu, fast_cpu_bfloat16=True) == "none"
    assert resolve_autocast("fp16", torch.device("cuda")) == "fp16"


def test_auto_autocast_follows_this_cpu():
    from segmentation.inference import cpu_has_fast_bfloat16, resolve_autocast

    expected = "bf16" if cpu_has_fast_bfloat16() else "none"
    assert resolve_autocast("auto", torch.device("cpu")) == expected


def test_explicit_bf16_on_a_cpu_without_it_is_kept_with_a_warning(caplog):
    from segmentation.inference import resolve_autocast

    with caplog.at_level("WARNING"):
        assert resolve_autocast("bf16", torch.device("cpu"), fast_cpu_bfloat16=False) == "bf16"
    assert "no native bfloat16" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert resolve_autocast("bf16", torch.device("cpu"), fast_cpu_bfloat16=True) == "bf16"
    assert caplog.text == ""


def test_tissue_mask_keeps_tissue_and_drops_empty_field():
    from segmentation.inference import tissue_mask

    rng = np.random.default_rng(0)
    image = rng.poisson(100, size=(2, 6, 128, 128)).astype(np.float32)  # camera noise
    image[:, :, 32:96, 40:100] += 1500  # tissue
    image[:, :, 60:68, 64:72] -= 1400  # a dark nucleus inside it
    mask = tissue_mask(image)
    assert mask is not None and mask.shape == (6, 128, 128)
    assert mask[:, 32:96, 40:100].all()  # tissue and the nucleus hole are kept
    assert not mask[:, :8, :8].any() and not mask[:, 120:, 120:].any()


def test_tissue_mask_leaves_stacks_without_background_alone():
    from segmentation.inference import tissue_mask

    rng = np.random.default_rng(1)
    image = rng.normal(1000, 150, size=(2, 6, 64, 64)).astype(np.float32)
    assert tissue_mask(image) is None


def test_tissue_mask_leaves_a_field_full_of_cells_alone():
    """Bright membranes around dark interiors (a crop inside tissue) are not empty field,
    even with a few very bright stripe artefacts that could pass for the "tissue" class."""
    from segmentation.inference import tissue_mask

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:256, :256]
    membranes = (yy % 32 < 3) | (xx % 32 < 3)  # 29 px interiors between 3 px membranes
    signal = np.where(membranes, 300.0, 40.0)
    image = rng.poisson(np.broadcast_to(signal, (2, 12, 256, 256))).astype(np.float32)
    image[:, :, 100:102, :] = 900.0  # a stripe artefact
    assert tissue_mask(image) is None


def test_tissue_mask_keeps_tissue_in_dim_end_planes():
    from segmentation.inference import tissue_mask

    rng = np.random.default_rng(3)
    depth = np.array([0.15, 0.3, 0.6, 1.0, 1.0, 0.9, 0.8, 0.7])[:, None, None]
    signal = np.full((8, 256, 256), 60.0)
    signal[:, 64:192, 64:192] = 1000.0
    image = rng.poisson(np.broadcast_to(signal * depth, (2, 8, 256, 256))).astype(np.float32)
    mask = tissue_mask(image)
    assert mask is not None
    assert mask[:, 64:192, 64:192].all()  # the first planes, as dim as the field, too
    assert not mask[:, :32, :32].any()


class ShapeRecorder(Pointwise):
    """A :class:`Pointwise` network that remembers the shape of every window it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        return super().forward(x)


@pytest.mark.parametrize(
    ("patch", "windows"),
    [((32, 32, 32), {(32, 32, 32)}), ((24, 32, 32), {(24, 32, 32)}), ((25, 33, 4), {(24, 32, 8)})],
)
def test_windows_are_multiples_of_the_network_grid(patch, windows):
    image = np.random.default_rng(4).normal(size=(2, 25, 40, 36)).astype(np.float32)
    network = ShapeRecorder()
    output = predict_probabilities(network, image, patch=patch, overlap=0.25, multiple_of=8)
    assert output.shape == (2, 25, 40, 36)
    # 25 planes under a 32-plane patch are padded to 32; a 24-plane patch takes two windows
    assert set(network.shapes) == windows
    direct = _whole_volume_probabilities(network, image)
    np.testing.assert_allclose(output, direct, atol=1e-5)


@pytest.mark.parametrize("planes", [1, 5])
def test_axes_shorter_than_the_grid_are_padded_and_cropped(planes):
    image = np.random.default_rng(5).normal(size=(2, planes, 16, 16)).astype(np.float32)
    network = ShapeRecorder()
    output = predict_probabilities(network, image, patch=(32, 16, 16), overlap=0.0, multiple_of=8)
    assert network.shapes == [(8, 16, 16)]
    assert output.shape == (2, planes, 16, 16)
    direct = _whole_volume_probabilities(network, image)
    np.testing.assert_allclose(output, direct, atol=1e-5)


def test_unet_downsampling_factor():
    assert UNet3D(2, 2, f_maps=4, num_levels=4).downsampling_factor == 8
    assert UNet3D(2, 2, f_maps=4, num_levels=2).downsampling_factor == 2


def test_padding_equals_predicting_on_the_edge_padded_stack():
    torch.manual_seed(0)
    network = UNet3D(2, 2, f_maps=4).eval()
    image = np.random.default_rng(6).normal(size=(2, 5, 24, 20)).astype(np.float32)
    padded = np.pad(image, ((0, 0), (1, 2), (0, 0), (0, 0)), mode="edge")
    expected = predict_probabilities(network, padded, patch=(8, 16, 16), overlap=0.25)
    output = predict_probabilities(network, image, patch=(8, 16, 16), overlap=0.25, multiple_of=8)
    np.testing.assert_allclose(output, expected[:, 1:6], atol=1e-5)


@pytest.mark.parametrize("planes", [25, 32, 40])
def test_window_borders_leave_no_seam_on_any_plane(planes):
    # Two windows along X meet at column 63 (the last column of the first window, deep inside
    # the second). Weights floored after multiplying the axes' profiles gave every window the
    # same weight on a stack's first and last planes, where the Z profile is small, and the
    # first window's wrong border showed as a seam there (up to 0.5 at the Y edges).
    image = np.zeros((2, planes, 64, 96), dtype=np.float32)
    output = predict_probabilities(
        WrongAtWindowBorder(), image, patch=(32, 64, 64), overlap=0.25, multiple_of=8
    )
    assert output[:, :, :, 63].max() < 0.01
    assert output[:, :, :, 1:95].max() < 0.01
    np.testing.assert_allclose(output[:, :, :, 0], 1.0, atol=1e-4)


class _ZRamp(nn.Module):
    """Logits = channel 0 + the plane's index in the window: not symmetric along Z."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1)
        return x[:, :1] + ramp


def test_test_time_flip_averages_with_the_z_flipped_prediction():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 6, 16, 16)).astype(np.float32)
    common = {"patch": (6, 16, 16), "overlap": 0.0, "batch_size": 1}
    plain = predict_probabilities(_ZRamp(), image, **common)
    flipped = predict_probabilities(_ZRamp(), image, test_time_flip=True, **common)
    ramp = np.arange(6, dtype=np.float32).reshape(6, 1, 1)

    def sigmoid(values):
        return 1.0 / (1.0 + np.exp(-values))

    np.testing.assert_allclose(plain[0], sigmoid(image[0] + ramp), atol=1e-5)
    expected = (sigmoid(image[0] + ramp) + sigmoid(image[0] + ramp[::-1])) / 2
    np.testing.assert_allclose(flipped[0], expected, atol=1e-5)


def test_network_planes_resample_only_stacks_outside_the_trained_z_steps():
    from segmentation.inference.anisotropy import network_planes

    assert network_planes(25, (0.8, 0.16, 0.16), (4.0, 8.0)) == 25  # Z step 5 px: kept
    assert network_planes(25, None, (4.0, 8.0)) == 25  # unknown: kept
    assert network_planes(64, (1.0, 1.0, 1.0), (4.0, 8.0)) == 16  # isotropic: 4 px steps
    assert network_planes(20, (2.0, 0.1, 0.1), (4.0, 8.0)) == 50  # 20 px steps: 8 px
    assert network_planes(3, (0.1, 1.0, 1.0), (4.0, 8.0)) == 1


def test_resampling_keeps_the_first_and_last_planes_and_the_shape_elsewhere():
    from segmentation.inference.anisotropy import resample_planes

    ramp = np.broadcast_to(np.linspace(0, 1, 9, dtype=np.float32)[None, :, None, None],
                           (2, 9, 4, 4))
    coarse = resample_planes(ramp, 3)
    assert coarse.shape == (2, 3, 4, 4) and coarse.dtype == np.float32
    np.testing.assert_allclose(coarse[0, :, 0, 0], [0.0, 0.5, 1.0], atol=1e-6)
    back = resample_planes(coarse, 9)
    np.testing.assert_allclose(back, ramp, atol=1e-6)  # a ramp survives there and back


def test_predict_shows_the_network_resampled_planes_and_returns_the_stacks_own():
    from segmentation.io import Stack
    from segmentation.model import LoadedModel, ModelCard
    from segmentation.parameters import InferenceParameters
    from segmentation.pipeline import predict

    recorder = ShapeRecorder()
    model = LoadedModel(recorder, ModelCard(name="recorder"), torch.device("cpu"))
    image = np.random.default_rng(0).random((2, 32, 40, 40), dtype=np.float32)
    isotropic = Stack(image, (0.2, 0.2, 0.2), "CZYX", "float32", ())
    parameters = InferenceParameters(patch=(8, 40, 40), autocast="none")
    prediction = predict(isotropic, model, parameters)
    assert prediction.boundary_probability.shape == (32, 40, 40)
    assert len(recorder.shapes) == 1  # 32 planes -> 8 (Z step 4 px): one window
    recorder.shapes.clear()
    kept = predict(isotropic, model, replace(parameters, resample_z=False))
    assert kept.boundary_probability.shape == (32, 40, 40)
    assert len(recorder.shapes) > 1  # the 32 planes themselves: several windows along Z


def test_windows_without_needed_voxels_are_not_run():
    recorder = ShapeRecorder()
    image = np.random.default_rng(0).random((2, 8, 64, 256), dtype=np.float32)
    needed = np.zeros((8, 64, 256), bool)
    needed[:, 10:20, 10:20] = True
    everything = predict_probabilities(recorder, image, patch=(8, 64, 64), overlap=0.25)
    all_windows = len(recorder.shapes)
    recorder.shapes.clear()
    some = predict_probabilities(recorder, image, patch=(8, 64, 64), overlap=0.25, needed=needed)
    assert 0 < len(recorder.shapes) < all_windows
    # where it matters the result is the full run's; far from it nothing was computed
    np.testing.assert_allclose(some[:, needed], everything[:, needed], atol=1e-6)
    assert not some[:, :, :, 200:].any()
    recorder.shapes.clear()
    predict_probabilities(
        recorder, image, patch=(8, 64, 64), overlap=0.25, needed=np.zeros_like(needed)
    )
    assert len(recorder.shapes) == all_windows  # a mask no window holds runs them all

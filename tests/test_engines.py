"""Engines: OpenVINO and ONNX Runtime give PyTorch's probabilities and cells within the
issue's tolerance, convert once per set of weights, and bad choices fail in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from segmentation import parameters
from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.evaluation.matching import match_instances
from segmentation.inference.engine_cache import (
    ENGINE_CACHE_ENVIRONMENT_VARIABLE,
    cached_path,
    weights_digest,
)
from segmentation.inference.engines import (
    engine_precision,
    load_engine,
    open_engine,
    resolve_engine,
)
from segmentation.io import Stack
from segmentation.model import default_weights_path, load_model
from segmentation.parameters import InferenceParameters, installed_engines
from segmentation.pipeline import predict, segment_from_boundaries
from segmentation.synthetic import make_phantom

#: The issue's tolerance against float32 PyTorch.
MAX_MEAN_ABSOLUTE = 0.02
MAX_F1_DIFFERENCE = 0.005


def _needs(engine: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        engine not in installed_engines(), reason=f"{engine} is not installed"
    )


@pytest.fixture(scope="module")
def bundled():
    return load_model(default_weights_path(), device="cpu")


@pytest.fixture(scope="module")
def phantom():
    # seed 10001 puts 19 cells in this small field (seed 10000 only three large ones)
    return make_phantom((16, 128, 128), seed=10001)


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory):
    """A fresh conversion cache for this module, as ``$GERMSEG_ENGINE_CACHE``."""
    folder = tmp_path_factory.mktemp("engines")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENGINE_CACHE_ENVIRONMENT_VARIABLE, str(folder))
        yield folder


def _segment(bundled, phantom, engine: str, autocast: str):
    """Probabilities, labels and F1@0.5 against the phantom's cells, through the pipeline."""
    stack = Stack(phantom.image, phantom.voxel_size, "CZYX", "float32")
    parameters = InferenceParameters(engine=engine, autocast=autocast)
    prediction = predict(stack, bundled, parameters)
    labels = segment_from_boundaries(prediction, voxel_size=phantom.voxel_size).labels
    f1 = match_instances(phantom.labels, labels, 0.5).f1
    return prediction, labels, f1


@pytest.fixture(scope="module")
def torch_float32(bundled, phantom, engine_cache):
    return _segment(bundled, phantom, "torch", "none")


@pytest.mark.parametrize(
    ("engine", "autocast"),
    [
        pytest.param("openvino", "none", marks=_needs("openvino")),
        pytest.param("openvino", "auto", marks=_needs("openvino")),
        pytest.param("onnxruntime", "none", marks=_needs("onnxruntime")),
    ],
)
def test_engine_matches_torch_float32(bundled, phantom, torch_float32, engine, autocast):
    reference, reference_labels, reference_f1 = torch_float32
    assert reference_labels.max() > 5  # the phantom has cells to compare
    prediction, labels, f1 = _segment(bundled, phantom, engine, autocast)
    boundary = np.abs(prediction.boundary_probability - reference.boundary_probability)
    foreground = np.abs(prediction.foreground_probability - reference.foreground_probability)
    assert boundary.mean() <= MAX_MEAN_ABSOLUTE
    assert foreground.mean() <= MAX_MEAN_ABSOLUTE
    assert abs(f1 - reference_f1) <= MAX_F1_DIFFERENCE
    # and the cells are PyTorch's cells
    assert match_instances(reference_labels, labels, 0.5).f1 >= 0.95


@_needs("openvino")
def test_conversion_happens_once_and_is_reused(bundled, tmp_path, monkeypatch):
    first = open_engine(bundled.network, "openvino", "float32", cache_dir=tmp_path)
    digest = weights_digest(bundled.network)
    onnx = cached_path(digest, "onnx", "float32", ".onnx", tmp_path)
    ir = cached_path(digest, "openvino", "float32", ".xml", tmp_path)
    assert first.ir_path == ir and onnx.is_file() and ir.with_suffix(".bin").is_file()
    written = {path: path.stat().st_mtime_ns for path in tmp_path.iterdir()}

    def no_export(*args, **kwargs):
        raise AssertionError("the network was exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = open_engine(bundled.network, "openvino", "float32", cache_dir=tmp_path)
    assert {path: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == written
    batch = torch.zeros((1, 2, 8, 32, 32))
    assert torch.equal(first(batch), again(batch))
    # within one process the opened engine itself is kept
    kept = load_engine(bundled.network, "openvino", "float32", cache_dir=tmp_path)
    assert load_engine(bundled.network, "openvino", "float32", cache_dir=tmp_path) is kept


def test_weights_digest_follows_the_weights_not_the_layout(bundled):
    network = bundled.network
    copy = load_model(default_weights_path(), device="cpu").network
    copy.to(memory_format=torch.contiguous_format)
    assert weights_digest(copy) == weights_digest(network)
    with torch.no_grad():
        copy.final_conv.bias.add_(1e-3)
    assert weights_digest(copy) != weights_digest(network)


def test_auto_and_explicit_engines_resolve_per_device_and_network(bundled, monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    unet = bundled.network
    expected = "openvino" if "openvino" in installed_engines() else "torch"
    assert resolve_engine("auto", cpu, unet) == expected
    assert resolve_engine("auto", gpu, unet) == "torch"
    # a module that is not germseg's U-Net is not converted unless asked for
    assert resolve_engine("auto", cpu, torch.nn.Sequential(unet)) == "torch"
    assert resolve_engine("torch", gpu, unet) == "torch"
    assert engine_precision("onnxruntime", "auto", cpu) == "float32"
    assert engine_precision("openvino", "none", cpu) == "float32"
    # as if ONNX Runtime were installed (any importable package will do), so that the
    # device check, not the installation check, answers
    monkeypatch.setitem(parameters.ENGINE_PACKAGES, "onnxruntime", "numpy")
    with pytest.raises(InputError, match="runs on the CPU only"):
        resolve_engine("onnxruntime", gpu, unet)


def test_openvino_reports_the_precision_its_cpu_plugin_runs(monkeypatch):
    """An AVX-512 CPU without AVX512_BF16 gets bfloat16 from oneDNN but float32 from OpenVINO."""
    from segmentation.inference import engines

    cpu = torch.device("cpu")
    monkeypatch.setattr(engines, "openvino_cpu_has_bfloat16", lambda: False)
    assert engine_precision("openvino", "bf16", cpu) == "float32"
    monkeypatch.setattr(engines, "openvino_cpu_has_bfloat16", lambda: True)
    assert engine_precision("openvino", "bf16", cpu) == "bfloat16"
    assert engine_precision("openvino", "none", cpu) == "float32"


def test_engine_values_are_checked_with_one_message(monkeypatch):
    with pytest.raises(InputError, match=r"unknown engine 'tensorrt': use auto or torch or"):
        InferenceParameters(engine="tensorrt")
    monkeypatch.setitem(parameters.ENGINE_PACKAGES, "onnxruntime", "numpy")
    with pytest.raises(InputError, match="engine onnxruntime cannot run autocast bf16"):
        InferenceParameters(engine="onnxruntime", autocast="bf16")
    monkeypatch.setitem(parameters.ENGINE_PACKAGES, "openvino", "no_such_package_for_germseg")
    with pytest.raises(InputError, match="engine openvino is not installed: pip install"):
        InferenceParameters(engine="openvino")
    assert InferenceParameters(engine="auto").engine == "auto"


def test_a_bad_engine_is_one_line_before_any_work(tmp_path: Path, capsys):
    image = tmp_path / "image.tif"
    tifffile.imwrite(image, np.zeros((2, 8, 32, 32), np.uint16), metadata={"axes": "CZYX"})
    out = tmp_path / "out"
    status = main(["segment", str(image), "--out", str(out),
                   "--engine", "tensorrt", "--weights", str(tmp_path / "absent.pt")])
    assert status == 2
    error = capsys.readouterr().err.strip()
    # one line, about the engine: the (missing) weights were never opened
    assert error.count("\n") == 0 and error.startswith("error: unknown engine 'tensorrt'")
    assert not out.exists()


@_needs("openvino")
def test_released_activations_come_back_with_the_same_output(bundled, tmp_path):
    engine = open_engine(bundled.network, "openvino", "float32", cache_dir=tmp_path)
    batch = torch.rand((1, 2, 8, 32, 32), generator=torch.Generator().manual_seed(0))
    before = engine(batch)
    engine.release_memory()
    assert torch.equal(engine(batch), before)


def test_predict_releases_the_engines_memory_after_the_network(bundled, phantom, monkeypatch):
    released = []

    class RecordingEngine:
        def __call__(self, batch):
            return bundled.network(batch)

        def release_memory(self):
            released.append(True)

    monkeypatch.setattr("segmentation.pipeline.load_engine", lambda *args: RecordingEngine())
    stack = Stack(phantom.image[:, :8, :64, :64], phantom.voxel_size, "CZYX", "uint16")
    prediction = predict(stack, bundled, InferenceParameters(engine="torch", autocast="none"))
    assert released == [True]
    assert prediction.boundary_probability.shape == (8, 64, 64)

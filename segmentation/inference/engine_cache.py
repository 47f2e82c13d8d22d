"""Where converted networks live: files named by the hash of the weights, written once.

An engine other than PyTorch runs the network from a converted file (ONNX, OpenVINO IR).
Converting takes seconds to a minute, so each file is made once per set of weights and
kept under :func:`engine_cache_dir`, named ``<sha256 of the weights>-<engine>-<variant>``;
the next start finds it there. Files are written under a temporary name and renamed, so
a file that exists is complete.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import warnings
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: Environment variable that overrides the folder of converted networks.
ENGINE_CACHE_ENVIRONMENT_VARIABLE = "GERMSEG_ENGINE_CACHE"
#: ONNX operator set of the exported network.
ONNX_OPSET = 17
#: Input and output names of the exported network.
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def engine_cache_dir() -> Path:
    """``$GERMSEG_ENGINE_CACHE`` if set, else ``~/.cache/germseg/engines``."""
    from_environment = os.environ.get(ENGINE_CACHE_ENVIRONMENT_VARIABLE)
    if from_environment:
        return Path(from_environment)
    return Path.home() / ".cache" / "germseg" / "engines"


def weights_digest(network: torch.nn.Module) -> str:
    """Hex SHA-256 of a network's weights (names, shapes, dtypes and values, in key order).

    Two networks with the same digest compute the same function (for one architecture
    class), whatever file they were read from and whatever memory layout they have.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cached_path(
    digest: str, engine: str, variant: str, suffix: str, cache_dir: Path | None = None
) -> Path:
    """The cache file of one converted network, e.g. ``<digest>-openvino-float32.xml``."""
    folder = engine_cache_dir() if cache_dir is None else Path(cache_dir)
    return folder / f"{digest}-{engine}-{variant}{suffix}"


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (same folder, same suffix)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def export_onnx(network: torch.nn.Module, path: Path, sample_shape: tuple[int, ...]) -> Path:
    """Export ``network`` to ONNX at ``path`` unless it is there, with free batch and Z/Y/X.

    Parameters
    ----------
    network : torch.nn.Module
        Maps (B, C, z, y, x) float32 to logits (B, K, z, y, x); exported from a float32
        copy on the CPU, the network itself is left as it is.
    path : Path
        The cache file (:func:`cached_path`).
    sample_shape : tuple of int
        (B, C, z, y, x) of the example input that the export traces.

    Returns
    -------
    Path
        ``path``, now complete.
    """
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(path)
    axes = {0: "batch", 2: "z", 3: "y", 4: "x"}
    traced = _float32_cpu_copy(network)
    logger.info("exporting the network to ONNX: %s (once for these weights)", path)
    with warnings.catch_warnings():
        # the TorchScript exporter is the one that gives dynamic Z/Y/X for this U-Net
        # without extra packages; its deprecation notice, and the tracer's note that
        # GroupNorm's batch-size check becomes a constant, are not for the user
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            traced,
            (torch.zeros(sample_shape, dtype=torch.float32),),
            str(partial),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    os.replace(partial, path)
    return path


def _float32_cpu_copy(network: torch.nn.Module) -> torch.nn.Module:
    """A float32, contiguous, eval-mode copy of ``network`` on the CPU."""
    duplicate = copy.deepcopy(network).to("cpu", dtype=torch.float32)
    duplicate.to(memory_format=torch.contiguous_format)
    return duplicate.eval()

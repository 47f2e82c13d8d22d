"""Run the network with OpenVINO on the CPU, from an IR converted once (float32 or INT8).

The IR is read from the cached ONNX export (``openvino.Core.read_model``, which needs no
converter tool) and saved beside it uncompressed (float32 weights). The INT8 variant is
quantised after training with NNCF on phantom windows (:func:`quantize_int8`). OpenVINO is
optional: it is imported only here, when the engine is asked for.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segmentation.inference.engine_cache import temporary_path

logger = logging.getLogger(__name__)

#: OpenVINO's inference precision hint for each precision name.
_PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16"}


def convert_to_ir(onnx_path: Path, ir_path: Path) -> Path:
    """Save the ONNX network at ``onnx_path`` as an OpenVINO IR at ``ir_path`` unless it is there.

    Returns
    -------
    Path
        ``ir_path`` (``.xml``, with its ``.bin`` beside it).
    """
    if ir_path.is_file():
        return ir_path
    import openvino as ov

    logger.info("converting the network to OpenVINO: %s (once for these weights)", ir_path)
    _save_ir(ov.Core().read_model(str(onnx_path)), ir_path)
    return ir_path


def quantize_int8(float_ir: Path, int8_ir: Path, windows: Sequence[np.ndarray]) -> Path:
    """Quantise the float32 IR to INT8 with NNCF, calibrated on ``windows``.

    Parameters
    ----------
    float_ir : Path
        The float32 IR (:func:`convert_to_ir`).
    int8_ir : Path
        Where the INT8 IR goes.
    windows : sequence of ndarray of float32, shape (1, C, z, y, x)
        Normalised network inputs to calibrate the activations' ranges on.

    Returns
    -------
    Path
        ``int8_ir``.
    """
    import nncf
    import openvino as ov

    logger.info("quantising the network to INT8 on %d windows: %s", len(windows), int8_ir)
    model = ov.Core().read_model(str(float_ir))
    quantized = nncf.quantize(
        model, nncf.Dataset(list(windows)), subset_size=len(windows), fast_bias_correction=True
    )
    _save_ir(quantized, int8_ir)
    return int8_ir


def _save_ir(model: object, ir_path: Path) -> None:
    """Write an IR under a temporary name, then rename the weights and then the graph."""
    import openvino as ov

    ir_path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(ir_path)
    ov.save_model(model, str(partial), compress_to_fp16=False)
    os.replace(partial.with_suffix(".bin"), ir_path.with_suffix(".bin"))
    os.replace(partial, ir_path)


class OpenVINOEngine:
    """The network as an OpenVINO model on the CPU: maps a (B, C, z, y, x) batch to logits.

    The IR has free batch and window sizes; each input shape gets its own compiled model
    (static shapes run fastest), compiled on first use and kept.

    Parameters
    ----------
    ir_path : Path
        The IR to run (float32 or INT8).
    precision : {"float32", "bfloat16"}
        What the float layers compute in (OpenVINO's inference precision hint).
    threads : int
        CPU threads for inference.
    """

    def __init__(self, ir_path: Path, precision: str, threads: int) -> None:
        import openvino as ov

        self.ir_path = Path(ir_path)
        self.precision = precision
        self._core = ov.Core()
        self._config = {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(threads),
        }
        self._compiled: dict[tuple[int, ...], object] = {}
        self._lock = threading.Lock()

    def _compiled_for(self, shape: tuple[int, ...]) -> object:
        compiled = self._compiled.get(shape)
        if compiled is None:
            model = self._core.read_model(str(self.ir_path))
            model.reshape(list(shape))
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._compiled[shape] = compiled
        return compiled

    def __call__(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Logits (B, K, z, y, x), float32, for a float32 batch (B, C, z, y, x)."""
        array = np.ascontiguousarray(
            batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch,
            dtype=np.float32,
        )
        with self._lock:
            logits = self._compiled_for(array.shape)(array)[0]
        return torch.from_numpy(np.array(logits, dtype=np.float32))

    def release_memory(self) -> None:
        """Free the compiled models' activation buffers (about 1 GB for a float32
        32×288×288 window); the next call allocates them again."""
        with self._lock:
            for compiled in self._compiled.values():
                compiled.release_memory()

"""Run the network with ONNX Runtime on the CPU, from the cached ONNX export (float32).

ONNX Runtime is optional: it is imported only here, when the engine is asked for.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from segmentation.inference.engine_cache import INPUT_NAME


class OnnxRuntimeEngine:
    """The network as an ONNX Runtime session on the CPU: maps a (B, C, z, y, x) batch to logits.

    Parameters
    ----------
    onnx_path : Path
        The exported network (free batch and window sizes).
    threads : int
        CPU threads for one forward pass.
    """

    precision = "float32"

    def __init__(self, onnx_path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.onnx_path = Path(onnx_path)
        self._session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Logits (B, K, z, y, x), float32, for a float32 batch (B, C, z, y, x)."""
        array = np.ascontiguousarray(
            batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch,
            dtype=np.float32,
        )
        with self._lock:
            (logits,) = self._session.run(None, {INPUT_NAME: array})
        return torch.from_numpy(logits)

"""Which engine runs the network, in which precision, and the engine objects themselves.

``torch`` runs the :class:`~segmentation.model.UNet3D` as it is (always installed).
``openvino`` and ``onnxruntime`` run it on the CPU from a file converted once per set of
weights (:mod:`segmentation.inference.engine_cache`); they are optional packages
(``requirements-engines.txt``), imported only when asked for. Every engine is a callable
that maps a float32 batch (B, C, z, y, x) to logits, so
:func:`~segmentation.inference.predict_probabilities` windows and blends the same way
whichever runs.

``auto`` is the fastest engine installed for the device (measured in
``benchmarks/bench_engines.py``, see BENCHMARKS.md): OpenVINO on a CPU for germseg's
U-Net when it is installed, PyTorch otherwise and on a GPU.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from segmentation.errors import InputError
from segmentation.inference.engine_cache import (
    cached_path,
    engine_cache_dir,
    export_onnx,
    weights_digest,
)
from segmentation.inference.sliding_window import precision_name, resolve_autocast
from segmentation.model.unet3d import UNet3D
from segmentation.parameters import check_engine, installed_engines

logger = logging.getLogger(__name__)

#: A network as an engine runs it: (B, C, z, y, x) float32 batch to logits (B, K, z, y, x).
Engine = Callable[[torch.Tensor], torch.Tensor]
#: Engines that run on the CPU only.
CPU_ENGINES: tuple[str, ...] = ("openvino", "onnxruntime")
#: Precisions an OpenVINO engine can run in: float layers in float32 or bfloat16, or INT8.
OPENVINO_PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "int8")
#: Phantom seeds of the INT8 calibration windows: training seeds (the test seeds, from
#: 10000, and the tuning seeds, from 20000, stay unseen).
CALIBRATION_SEEDS: tuple[int, ...] = tuple(range(100, 108))
#: Window (z, y, x) of the ONNX export's example input (the export has free sizes).
_EXPORT_SAMPLE_WINDOW = (32, 64, 64)
#: Opened engines kept in this process, so that a server compiles each one once.
_OPENED_LIMIT = 4
_opened: OrderedDict[tuple, Engine] = OrderedDict()
_opened_lock = threading.Lock()


def resolve_engine(engine: str, device: torch.device, network: torch.nn.Module) -> str:
    """Resolve ``"auto"`` and check that the engine is installed and runs on ``device``.

    Parameters
    ----------
    engine : {"auto", "torch", "openvino", "onnxruntime"}
        The requested engine.
    device : torch.device
        Where the network runs.
    network : torch.nn.Module
        The network: ``auto`` converts germseg's :class:`~segmentation.model.UNet3D` only
        (whose export is tested) and runs any other module with PyTorch.

    Returns
    -------
    str
        ``"torch"``, ``"openvino"`` or ``"onnxruntime"``.

    Raises
    ------
    InputError
        For an unknown or missing engine, or a CPU engine asked to run on a GPU.
    """
    engine = check_engine(engine)
    if engine == "auto":
        if (
            device.type == "cpu"
            and isinstance(network, UNet3D)
            and "openvino" in installed_engines()
        ):
            return "openvino"
        return "torch"
    if engine in CPU_ENGINES and device.type != "cpu":
        raise InputError(
            f"engine {engine} runs on the CPU only: use --device cpu or --engine torch"
        )
    return engine


@functools.cache
def openvino_cpu_has_bfloat16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bfloat16 here (its ``BF16`` capability).

    oneDNN (and so PyTorch) also accepts bfloat16 on AVX-512 CPUs without the AVX512_BF16
    or AMX instructions, by conversion; OpenVINO then ignores a ``bf16`` precision hint and
    runs float32. Asked once per process (a property of the machine).
    """
    try:
        import openvino as ov

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception as error:  # noqa: BLE001 - any failure means no bfloat16 from it
        logger.debug("OpenVINO capabilities unavailable: %s", error)
        return False
    return "BF16" in capabilities


def engine_precision(engine: str, autocast: str, device: torch.device) -> str:
    """What ``engine`` (resolved) computes in for ``autocast`` on ``device``.

    PyTorch follows :func:`~segmentation.inference.precision_name`; OpenVINO runs bfloat16
    where PyTorch would (a CPU with native bfloat16) and its CPU plugin offers it
    (:func:`openvino_cpu_has_bfloat16`), float32 elsewhere; ONNX Runtime runs float32.
    """
    if engine == "torch":
        return precision_name(autocast, device)
    if engine == "openvino":
        wants_bfloat16 = resolve_autocast(autocast, device) == "bf16"
        return "bfloat16" if wants_bfloat16 and openvino_cpu_has_bfloat16() else "float32"
    return "float32"


def prepare_engine_files(
    network: torch.nn.Module,
    engine: str,
    precision: str,
    cache_dir: Path | None = None,
) -> Path:
    """Convert ``network`` for ``engine`` once; later calls find the files in the cache.

    Parameters
    ----------
    network : torch.nn.Module
        The network (its weights name the files).
    engine : {"openvino", "onnxruntime"}
        The engine the file is for.
    precision : str
        ``"int8"`` for OpenVINO's quantised network; anything else uses the float32 file.
    cache_dir : Path, optional
        Folder of converted networks; None is :func:`engine_cache_dir`.

    Returns
    -------
    Path
        The file the engine opens (``.onnx`` or ``.xml``).
    """
    digest = weights_digest(network)
    channels = _input_channels(network)
    onnx_path = export_onnx(
        network,
        cached_path(digest, "onnx", "float32", ".onnx", cache_dir),
        (1, channels, *_EXPORT_SAMPLE_WINDOW),
    )
    if engine == "onnxruntime":
        return onnx_path
    from segmentation.inference.openvino_engine import convert_to_ir, quantize_int8

    float_ir = convert_to_ir(
        onnx_path, cached_path(digest, "openvino", "float32", ".xml", cache_dir)
    )
    if precision != "int8":
        return float_ir
    int8_ir = cached_path(digest, "openvino", "int8", ".xml", cache_dir)
    if int8_ir.is_file():
        return int8_ir
    return quantize_int8(float_ir, int8_ir, calibration_windows(channels))


def open_engine(
    network: torch.nn.Module,
    engine: str,
    precision: str,
    *,
    cache_dir: Path | None = None,
    threads: int | None = None,
) -> Engine:
    """The network as ``engine`` runs it, converting it first if the cache has no file.

    Parameters
    ----------
    network : torch.nn.Module
        The loaded network, returned as it is for ``"torch"``.
    engine : {"torch", "openvino", "onnxruntime"}
        A resolved engine (:func:`resolve_engine`).
    precision : str
        ``"float32"``, ``"bfloat16"`` or ``"int8"`` (OpenVINO); ONNX Runtime runs float32.
    cache_dir : Path, optional
        Folder of converted networks.
    threads : int, optional
        CPU threads; None takes PyTorch's (``torch.get_num_threads``).
    """
    if engine == "torch":
        return network
    threads = torch.get_num_threads() if threads is None else int(threads)
    path = prepare_engine_files(network, engine, precision, cache_dir)
    if engine == "onnxruntime":
        from segmentation.inference.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, threads)
    from segmentation.inference.openvino_engine import OpenVINOEngine

    if precision not in OPENVINO_PRECISIONS:
        raise InputError(f"OpenVINO runs {', '.join(OPENVINO_PRECISIONS)}, not {precision}")
    # an INT8 network keeps float32 for the layers it does not quantise
    return OpenVINOEngine(path, "float32" if precision == "int8" else precision, threads)


def load_engine(
    network: torch.nn.Module,
    engine: str,
    precision: str,
    *,
    cache_dir: Path | None = None,
) -> Engine:
    """:func:`open_engine`, kept for this process (the last few engines opened)."""
    if engine == "torch":
        return network
    folder = engine_cache_dir() if cache_dir is None else Path(cache_dir)
    key = (weights_digest(network), engine, precision, str(folder), torch.get_num_threads())
    with _opened_lock:
        opened = _opened.get(key)
        if opened is None:
            opened = open_engine(network, engine, precision, cache_dir=folder)
            _opened[key] = opened
            while len(_opened) > _OPENED_LIMIT:
                _opened.popitem(last=False)
        _opened.move_to_end(key)
    return opened


def release_engine_memory(engine: Engine) -> None:
    """Free what ``engine`` keeps between calls for its activations (OpenVINO's buffers).

    The engine stays usable: its next call allocates them again (a few milliseconds). A
    PyTorch module or an engine without such buffers is left as it is.
    """
    release = getattr(engine, "release_memory", None)
    if callable(release):
        release()


def calibration_windows(
    channels: int, window: tuple[int, int, int] = (32, 128, 128)
) -> list[np.ndarray]:
    """Normalised phantom windows (1, C, z, y, x) to calibrate INT8 quantisation on.

    One window per seed of :data:`CALIBRATION_SEEDS`, normalised as the pipeline does
    (:func:`~segmentation.io.normalize_percentile`); the first ``channels`` channels.
    """
    from segmentation.io import normalize_percentile
    from segmentation.synthetic import make_phantom

    windows = []
    for seed in CALIBRATION_SEEDS:
        image = normalize_percentile(make_phantom(window, seed=seed).image)[:channels]
        windows.append(np.ascontiguousarray(image[None], dtype=np.float32))
    return windows


def _input_channels(network: torch.nn.Module) -> int:
    """The number of input channels of ``network``'s first convolution."""
    for module in network.modules():
        if isinstance(module, torch.nn.Conv3d):
            return int(module.in_channels)
    raise InputError("the network has no 3D convolution to take its input channels from")

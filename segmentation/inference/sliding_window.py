"""Patched inference: overlapping windows blended with Gaussian weights (no seams)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from segmentation.errors import InputError

logger = logging.getLogger(__name__)

Window = tuple[slice, slice, slice]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: What each resolved autocast value computes in, for logs and reports.
_PRECISION_NAMES = {"none": "float32", "bf16": "bfloat16", "fp16": "float16"}


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of length ``window`` covering ``size`` with ``overlap``.

    The last window ends exactly at ``size``; ``window`` must not exceed ``size``.
    """
    if window >= size:
        return [0]
    step = max(1, int(round(window * (1.0 - overlap))))
    starts = list(range(0, size - window, step))
    starts.append(size - window)
    return starts


def sliding_windows(
    shape: tuple[int, int, int], window: tuple[int, int, int], overlap: float
) -> list[Window]:
    """All windows (as slices) of size ``window`` over a volume of ``shape``."""
    per_axis = [window_starts(s, w, overlap) for s, w in zip(shape, window, strict=True)]
    return [
        tuple(slice(start, start + w) for start, w in zip(starts, window, strict=True))
        for starts in itertools.product(*per_axis)
    ]


def gaussian_importance(
    window: tuple[int, int, int],
    sigma_scale: float = 0.125,
    flat_axes: tuple[int, ...] = (),
) -> np.ndarray:
    """Separable Gaussian weights peaking at the window centre.

    Each axis's profile is floored at 1e-3 of its peak before the profiles are multiplied,
    so that the weights stay separable: along any axis, two windows' weights at a voxel keep
    the ratio of their profiles there, however far the voxel lies from the centre along the
    other axes. (Flooring the product instead gives every window the same weight wherever
    the product is small, e.g. on a stack's first planes, and window borders show as seams.)

    Parameters
    ----------
    window : tuple of int
        Window size (Z, Y, X).
    sigma_scale : float
        Gaussian sigma as a fraction of the window's length along each axis.
    flat_axes : tuple of int
        Axes along which the volume has a single window: their profile is flat (all ones),
        as there is nothing to blend along them.

    Returns
    -------
    ndarray of float32, shape ``window``
        Weights in (0, 1], 1 at the centre.
    """
    profiles = []
    for axis, length in enumerate(window):
        if axis in flat_axes:
            profiles.append(np.ones(length))
            continue
        centre = (length - 1) / 2.0
        sigma = max(length * sigma_scale, 1e-3)
        coordinate = np.arange(length, dtype=np.float64)
        profile = np.exp(-0.5 * ((coordinate - centre) / sigma) ** 2)
        profiles.append(np.maximum(profile / profile.max(), 1e-3))
    importance = (
        profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    )
    return importance.astype(np.float32)


def _batches(windows: list[Window], batch_size: int) -> Iterator[list[Window]]:
    for start in range(0, len(windows), batch_size):
        yield windows[start : start + batch_size]


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 convolutions at speed (AVX-512 or Arm BF16, via oneDNN).

    Without those instructions PyTorch emulates bfloat16 convolutions, which is not 2×
    faster than float32 but about 100× slower (measured on a 2-core AVX2-only AMD EPYC: one
    2×32×64×64 window of the bundled U-Net took 59 s in bfloat16, 0.5 s in float32).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_autocast(
    autocast: str, device: torch.device, *, fast_cpu_bfloat16: bool | None = None
) -> str:
    """Resolve ``"auto"`` and check the other values.

    ``"auto"`` is float16 on a GPU; on a CPU it is bfloat16 where the CPU runs it natively
    (:func:`cpu_has_fast_bfloat16`) and float32 (``"none"``) elsewhere. An explicit
    ``"bf16"`` on a CPU without native bfloat16 is kept, with a warning.

    Parameters
    ----------
    autocast : {"auto", "none", "bf16", "fp16"}
        The requested precision.
    device : torch.device
        Where the network runs.
    fast_cpu_bfloat16 : bool, optional
        Overrides the CPU check (for tests); None asks the CPU.

    Returns
    -------
    str
        ``"none"``, ``"bf16"`` or ``"fp16"``.
    """
    if autocast != "auto" and autocast != "none" and autocast not in _AUTOCAST_DTYPES:
        raise InputError(f"unknown autocast {autocast!r}: use auto, none, bf16 or fp16")
    if device.type != "cpu":
        return "fp16" if autocast == "auto" else autocast
    if autocast not in ("auto", "bf16"):
        return autocast
    if fast_cpu_bfloat16 is None:
        fast_cpu_bfloat16 = cpu_has_fast_bfloat16()
    if autocast == "auto":
        return "bf16" if fast_cpu_bfloat16 else "none"
    if not fast_cpu_bfloat16:
        logger.warning(
            "this CPU has no native bfloat16 (AVX-512 or Arm BF16): bf16 autocast runs far "
            "slower than float32; use --autocast none or auto"
        )
    return autocast


def precision_name(autocast: str, device: torch.device) -> str:
    """What the network computes in for ``autocast`` on ``device``: float32, bfloat16 or float16."""
    return _PRECISION_NAMES[resolve_autocast(autocast, device)]


def _autocast_context(device: torch.device, autocast: str) -> contextlib.AbstractContextManager:
    autocast = resolve_autocast(autocast, device)
    logger.info("inference precision: %s", _PRECISION_NAMES[autocast])
    if autocast == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[autocast])


def predict_probabilities(
    network: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    *,
    patch: tuple[int, int, int],
    overlap: float,
    batch_size: int = 2,
    device: torch.device | str = "cpu",
    autocast: str = "none",
    progress: Callable[[int, int], None] | None = None,
    multiple_of: int = 1,
    test_time_flip: bool = False,
    needed: np.ndarray | None = None,
) -> np.ndarray:
    """Predict per-voxel probabilities with overlapping, Gaussian-blended windows.

    Each window's logits go through a sigmoid; the probabilities of overlapping windows are
    averaged with Gaussian weights that peak at each window's centre, so window borders,
    where the network sees least context, count least and no seams appear.

    Parameters
    ----------
    network : torch.nn.Module or callable
        Maps (B, C, z, y, x) to logits (B, K, z, y, x): a PyTorch module (run in eval mode
        under ``autocast``), or an engine object (:mod:`segmentation.inference.engines`)
        that runs in its own precision, ``autocast`` unused.
    image : ndarray of float32, shape (C, Z, Y, X)
        Normalised input.
    patch : tuple of int
        Window size (Z, Y, X); each axis is clipped to the stack's size.
    overlap : float
        Fraction of a window shared with its neighbour, in [0, 1).
    batch_size : int
        Windows per forward pass.
    device : torch.device or str
        Where the network runs; the blended output stays in host memory.
    autocast : {"auto", "none", "bf16", "fp16"}
        Mixed precision for the forward pass; ``"auto"`` is bfloat16 on a CPU and float16
        on a GPU.
    progress : callable(done, total), optional
        Called with the number of windows done after each batch.
    multiple_of : int
        The network's grid (its ``downsampling_factor``): every window is a multiple of it
        along each axis, so that no plane loses the network's deepest features (max pooling
        drops the last plane of an odd-sized axis). An axis shorter than ``patch`` is
        padded with its edge values, half before and half after, up to the next multiple
        (a 25-plane stack becomes 32 planes, one window deep) and cropped afterwards;
        windows along longer axes are ``patch`` rounded down to a multiple (``patch`` 24
        on a 25-plane stack gives two overlapping 24-plane windows).
    test_time_flip : bool
        Also run the network on each window flipped along Z, flip its output back and
        average the two probabilities (twice the network time).
    needed : ndarray of bool, shape (Z, Y, X), optional
        Where the probabilities matter (e.g. the tissue mask): windows that hold none of it
        are not run and give probability 0; so are the parts of run windows' neighbours
        that overlap them, which lie outside ``needed`` too. None (or a mask that no window
        holds) runs every window.

    Returns
    -------
    ndarray of float32, shape (K, Z, Y, X)
        Probabilities in [0, 1].
    """
    if image.ndim != 4:
        raise InputError(f"expected a (C, Z, Y, X) image, got shape {image.shape}")
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"overlap {overlap} is out of range: use a value in [0, 1)")
    if batch_size < 1 or min(patch) < 1 or multiple_of < 1:
        raise InputError("patch sizes, batch size and multiple_of must be positive")
    device = torch.device(device)
    spatial_shape = image.shape[1:]
    padding = _padding_to_multiple(spatial_shape, patch, multiple_of)
    padded_shape = tuple(
        size + before + after for size, (before, after) in zip(spatial_shape, padding, strict=True)
    )
    window = tuple(
        _window_length(p, s, multiple_of) for p, s in zip(patch, padded_shape, strict=True)
    )
    # windows live on the padded grid; each is cut back to the stack (the padding is never
    # materialised, so memory stays that of the unpadded stack)
    windows = [
        _Placement(padded, padding, spatial_shape)
        for padded in sliding_windows(padded_shape, window, overlap)
    ]
    single_window_axes = tuple(
        axis
        for axis in range(3)
        if len({placement.window[axis].start for placement in windows}) == 1
    )
    importance = gaussian_importance(window, flat_axes=single_window_axes)
    importance_tensor = torch.from_numpy(importance).to(device)

    output: np.ndarray | None = None
    weight_sum = np.zeros(spatial_shape, dtype=np.float32)
    for placement in windows:
        weight_sum[placement.inside] += importance[placement.local]
    if needed is not None:
        if needed.shape != spatial_shape:
            raise InputError(f"needed mask {needed.shape} must match the stack {spatial_shape}")
        kept = [placement for placement in windows if needed[placement.inside].any()]
        if kept:
            logger.info("inference: %d of %d windows hold no tissue, not run",
                        len(windows) - len(kept), len(windows))
            windows = kept
    logger.info("inference: %d windows of %s on %s", len(windows), window, device)

    is_module = isinstance(network, torch.nn.Module)
    if is_module:
        network.eval()
    precision = _autocast_context(device, autocast) if is_module else contextlib.nullcontext()
    done = 0
    with torch.inference_mode(), precision:
        for batch in _batches(windows, batch_size):
            inputs = np.stack([placement.crop(image) for placement in batch])
            batch_input = torch.from_numpy(inputs).to(device)
            if is_module and device.type == "cpu":
                # matches the layout load_model gives a CPU network (faster convolutions)
                batch_input = batch_input.contiguous(memory_format=torch.channels_last_3d)
            probability = torch.sigmoid(network(batch_input).float())
            if test_time_flip:
                flipped = network(torch.flip(batch_input, dims=(2,))).float()
                probability = (probability + torch.sigmoid(torch.flip(flipped, dims=(2,)))) / 2
            weighted = (probability * importance_tensor).cpu().numpy()
            if output is None:
                output = np.zeros((weighted.shape[1], *spatial_shape), dtype=np.float32)
            for placement, window_probability in zip(batch, weighted, strict=True):
                output[(slice(None), *placement.inside)] += window_probability[
                    (slice(None), *placement.local)
                ]
            done += len(batch)
            if progress is not None:
                progress(done, len(windows))
    assert output is not None
    output /= weight_sum
    return output


def crop_window(array: np.ndarray, window: Window, *, mode: str = "reflect") -> np.ndarray:
    """Crop ``window`` from the last three axes of ``array``, padding past the edges.

    A window may start before 0 or stop past the end of an axis; ``mode`` is the
    ``numpy.pad`` mode for the part of the window outside the array (``"constant"`` pads
    zeros, ``"edge"`` repeats the edge planes as inference does for short stacks).
    """
    spatial = array.shape[-3:]
    inside = tuple(
        slice(max(w.start, 0), min(w.stop, n)) for w, n in zip(window, spatial, strict=True)
    )
    if any(s.stop <= s.start for s in inside):
        raise InputError(f"window {window} lies outside the array of shape {spatial}")
    crop = array[(..., *inside)]
    padding = [(s.start - w.start, w.stop - s.stop) for w, s in zip(window, inside, strict=True)]
    if not any(before or after for before, after in padding):
        return crop
    padding = [(0, 0)] * (array.ndim - 3) + padding
    if mode == "reflect" and min(crop.shape[-3:]) < 2:
        mode = "symmetric"
    return np.pad(crop, padding, mode=mode)


class _Placement:
    """A window on the padded grid: the part inside the stack and where it sits in the window."""

    def __init__(
        self,
        padded: tuple[slice, ...],
        padding: list[tuple[int, int]],
        shape: tuple[int, ...],
    ) -> None:
        window, inside, local = [], [], []
        for padded_slice, (before, _), size in zip(padded, padding, shape, strict=True):
            start, stop = padded_slice.start - before, padded_slice.stop - before
            first, last = max(0, start), min(size, stop)
            window.append(slice(start, stop))
            inside.append(slice(first, last))
            local.append(slice(first - start, last - start))
        self.window = tuple(window)
        self.inside = tuple(inside)
        self.local = tuple(local)

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The window's input: the stack's voxels, edge values where it reaches past them."""
        return crop_window(image, self.window, mode="edge")


def _window_length(patch: int, size: int, multiple_of: int) -> int:
    """``min(patch, size)`` rounded down to a multiple of ``multiple_of`` (at least that)."""
    length = min(patch, size)
    return max(multiple_of, length - length % multiple_of)


def _padding_to_multiple(
    shape: tuple[int, ...], patch: tuple[int, int, int], multiple_of: int
) -> list[tuple[int, int]]:
    """Padding (before, after) that brings axes shorter than ``patch`` to a multiple."""
    padding = []
    for size, window in zip(shape, patch, strict=True):
        missing = -size % multiple_of if size < max(window, multiple_of) else 0
        padding.append((missing // 2, missing - missing // 2))
    return padding

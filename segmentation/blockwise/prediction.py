"""The network over a stack larger than memory, tile by tile, into an on-disk Zarr array.

The windows are those of the whole stack (:func:`~segmentation.inference.sliding_window.
sliding_windows` on its grid), each run once: they are grouped into XY tiles, a tile's
input is read and normalised with the whole stack's percentiles, and its Gaussian-weighted
sums are added into an on-disk float32 array. Dividing by the summed weights (separable, so
computed per axis) then gives the whole-stack prediction up to float rounding, which is
stored as float16 (probabilities within 0.0005 of float32).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from segmentation.blockwise.blocks import block_grid
from segmentation.blockwise.lazy_stack import LazyStack
from segmentation.blockwise.statistics import StackStatistics
from segmentation.blockwise.storage import create_array
from segmentation.inference import predict_probabilities
from segmentation.inference.anisotropy import network_planes, resample_planes
from segmentation.inference.engines import (
    engine_precision,
    load_engine,
    release_engine_memory,
    resolve_engine,
)
from segmentation.inference.sliding_window import (
    _padding_to_multiple,
    _Placement,
    _window_length,
    crop_window,
    gaussian_importance,
    sliding_windows,
)
from segmentation.model import LoadedModel
from segmentation.parameters import InferenceParameters

logger = logging.getLogger(__name__)

#: Channels of the stored prediction.
BOUNDARY, FOREGROUND = 0, 1
PROBABILITY_DTYPE = np.float16


def _axis_weights(
    placements: list[_Placement], profile: np.ndarray, size: int, axis: int
) -> np.ndarray:
    """The windows' summed weight along one axis: the sum of ``profile`` over each window
    start along it (the weights are separable and the windows a product grid)."""
    total = np.zeros(size, dtype=np.float64)
    seen = set()
    for placement in placements:
        if placement.window[axis].start not in seen:
            seen.add(placement.window[axis].start)
            total[placement.inside[axis]] += profile[placement.local[axis]]
    return total


def _axis_profile(length: int, flat: bool) -> np.ndarray:
    """``gaussian_importance``'s profile along an axis of ``length``."""
    return gaussian_importance((length, 1, 1), flat_axes=(0,) if flat else ())[:, 0, 0]


def predict_blockwise(
    stack: LazyStack,
    model: LoadedModel,
    statistics: StackStatistics,
    work_dir: Path,
    tile_shape: tuple[int, int],
    parameters: InferenceParameters | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> zarr.Array:
    """Predict boundary (and foreground) probabilities into ``work_dir/probabilities.zarr``.

    Parameters
    ----------
    stack : LazyStack
    model : LoadedModel
    statistics : StackStatistics
        The whole stack's percentiles and tissue mask (:func:`scan_stack`).
    work_dir : Path
        Folder for the on-disk arrays.
    tile_shape : (int, int)
        Y and X size of the tiles into which the windows are grouped (by their start).
    parameters : InferenceParameters, optional
    progress : callable(done, total), optional
        Called after each window.

    Returns
    -------
    zarr.Array
        float16 (K, Z, Y, X): the boundary probability, then (models with a foreground
        output) the foreground probability gated by the tissue mask.
    """
    parameters = parameters or InferenceParameters()
    start = time.perf_counter()
    card = model.card
    planes, n_y, n_x = stack.shape
    shown = planes
    if parameters.resample_z:
        shown = network_planes(planes, stack.voxel_size, card.z_step_range)
    multiple_of = getattr(model.network, "downsampling_factor", 1)
    spatial = (shown, n_y, n_x)
    padding = _padding_to_multiple(spatial, parameters.patch, multiple_of)
    padded_shape = tuple(s + a + b for s, (a, b) in zip(spatial, padding, strict=True))
    window = tuple(
        _window_length(p, s, multiple_of)
        for p, s in zip(parameters.patch, padded_shape, strict=True)
    )
    placements = [
        _Placement(padded, padding, spatial)
        for padded in sliding_windows(padded_shape, window, parameters.overlap)
    ]
    flat_axes = tuple(
        axis for axis in range(3) if len({p.window[axis].start for p in placements}) == 1
    )
    importance = gaussian_importance(window, flat_axes=flat_axes)
    weights = [
        _axis_weights(placements, _axis_profile(window[axis], axis in flat_axes), size, axis)
        for axis, size in enumerate(spatial)
    ]
    if statistics.tissue is not None:
        placements = [p for p in placements if statistics.tissue[p.inside[1:]].any()] or placements
    engine = resolve_engine(parameters.engine, model.device, model.network)
    precision = engine_precision(engine, parameters.autocast, model.device)
    network = load_engine(model.network, engine, precision)
    channels = [card.boundary_channel]
    if card.foreground_channel is not None:
        channels.append(card.foreground_channel)
    sums = create_array(work_dir / "sums.zarr", (len(channels), *spatial), np.float32)
    tiles = block_grid((shown, n_y, n_x), (shown, *tile_shape))
    done = 0
    for tile in tiles:
        members = [
            p
            for p in placements
            if tile.inner[1].start <= p.inside[1].start < tile.inner[1].stop
            and tile.inner[2].start <= p.inside[2].start < tile.inner[2].stop
        ]
        if not members:
            continue
        region = tuple(
            slice(
                min(p.inside[axis].start for p in members),
                max(p.inside[axis].stop for p in members),
            )
            for axis in range(3)
        )
        raw = stack.read((slice(0, planes), region[1], region[2]))
        image = statistics.normalise(raw)
        del raw
        if shown != planes:
            image = resample_planes(image, shown)
        image = image[:, region[0]]
        tile_sums = np.zeros((len(channels), *image.shape[1:]), dtype=np.float32)
        origin = [s.start for s in region]
        for placement in members:
            shifted = tuple(
                slice(w.start - o, w.stop - o)
                for w, o in zip(placement.window, origin, strict=True)
            )
            probability = predict_probabilities(
                network,
                crop_window(image, shifted, mode="edge"),
                patch=window,
                overlap=0.0,
                device=model.device,
                autocast=parameters.autocast,
                multiple_of=multiple_of,
                test_time_flip=parameters.test_time_flip,
            )[channels]
            inside = tuple(
                slice(s.start - o, s.stop - o)
                for s, o in zip(placement.inside, origin, strict=True)
            )
            tile_sums[(slice(None), *inside)] += (probability * importance)[
                (slice(None), *placement.local)
            ]
            done += 1
            if progress is not None:
                progress(done, len(placements))
        target = (slice(None), *region)
        sums[target] = sums[target] + tile_sums
    release_engine_memory(network)
    probabilities = create_array(
        work_dir / "probabilities.zarr", (len(channels), planes, n_y, n_x), PROBABILITY_DTYPE
    )
    for block in block_grid((planes, n_y, n_x), (planes, *tile_shape)):
        _, ys, xs = block.inner
        weight = (weights[0][:, None, None] * weights[1][ys, None] * weights[2][None, xs]).astype(
            np.float32
        )
        block_sums = sums[:, :, ys, xs] / weight
        block_sums = resample_planes(block_sums, planes)
        if len(channels) > 1 and statistics.tissue is not None:
            block_sums[FOREGROUND] *= statistics.tissue[ys, xs]
        probabilities[:, :, ys, xs] = block_sums.astype(PROBABILITY_DTYPE)
    shutil.rmtree(work_dir / "sums.zarr")
    logger.info(
        "network (blockwise): %d windows in %d tiles, %.1f s on %s (%s, %s)",
        len(placements),
        len(tiles),
        time.perf_counter() - start,
        model.device,
        engine,
        precision,
    )
    return probabilities

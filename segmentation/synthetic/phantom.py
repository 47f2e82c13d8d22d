"""Synthetic two-channel germline phantoms with ground-truth labels.

A phantom is a window onto a virtual full-size field (at least 1024 x 1024 pixels) through
which a curved gonad tube runs, often folded back on itself as in the gonad's loop: small
germ cells in a layer around a rachis at the distal end, growing through a transition zone
into a single row of coin-like oocytes. The tube fills much of the stack's depth; about
45-65 % of a full-size field's area is background (55-80 % of the volume, counting the
rachis, which is labelled 0), with about 200 to 1,600 cells. Sizes are in full-scale pixels,
so a small phantom looks like a crop of a full stack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from segmentation.errors import InputError
from segmentation.synthetic.cells import build_cells, make_profiles
from segmentation.synthetic.parameters import PhantomParameters
from segmentation.synthetic.render import image_channel, render_channels
from segmentation.synthetic.tube import make_centreline, tube_maps

logger = logging.getLogger(__name__)

#: Smallest side (Y, X) of the virtual field that a phantom is a window onto.
FIELD_SIZE = 1024
#: Smallest depth of the virtual stack that a phantom is a window onto.
STACK_DEPTH = 24
#: How often a window that holds no cell is placed again.
WINDOW_TRIES = 10


@dataclass(frozen=True)
class Phantom:
    """A synthetic stack and its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        (2, Z, Y, X) uint16 in 0..4095; channel 0 cytoplasm/granule marker, channel 1
        membrane marker.
    labels : numpy.ndarray
        (Z, Y, X) uint16 (uint32 beyond 65535 cells); 0 background, 1..N cells, each
        6-connected in 3D.
    voxel_size : tuple of float
        (z, y, x) in micrometres.
    """

    image: np.ndarray
    labels: np.ndarray
    voxel_size: tuple[float, float, float]


def _window_origin(
    rng: np.random.Generator,
    centreline_points: np.ndarray,
    field: tuple[int, int],
    window: tuple[int, int],
    radius: float,
) -> tuple[int, int]:
    """Place a window that is smaller than the field around a random point of the tube."""
    inside = (
        (centreline_points[:, 0] >= 0)
        & (centreline_points[:, 0] < field[0])
        & (centreline_points[:, 1] >= 0)
        & (centreline_points[:, 1] < field[1])
    )
    candidates = centreline_points[inside] if inside.any() else centreline_points
    centre = candidates[rng.integers(len(candidates))] + rng.uniform(-0.5, 0.5, 2) * radius
    origin = []
    for axis in range(2):
        start = int(round(centre[axis] - window[axis] / 2))
        origin.append(int(np.clip(start, 0, field[axis] - window[axis])))
    return origin[0], origin[1]


def make_phantom(
    shape: tuple[int, int, int] = (25, 1024, 1024), seed: int = 0, *, variation: float = 1.0
) -> Phantom:
    """Generate a synthetic germline stack with its ground-truth labels.

    Parameters
    ----------
    shape : (int, int, int)
        (Z, Y, X) of the stack. Sizes below 1024 in Y or X give a window onto a full-size
        field, placed on the gonad.
    seed : int
        Seed of the random generator; the same seed gives the same phantom.
    variation : float
        Spread of the per-seed parameters: 0 gives the canonical phantom (only the noise
        and the cell layout change with the seed), 1 the full training variety.

    Returns
    -------
    Phantom
    """
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"phantom shape {shape} must be three positive sizes (Z, Y, X)")
    if not 0.0 <= variation <= 1.0:
        raise InputError(f"variation {variation} must lie between 0 and 1")
    depth, height, width = (int(n) for n in shape)
    rng = np.random.default_rng(seed)
    params = PhantomParameters.sample(rng, variation)
    field = (max(height, FIELD_SIZE), max(width, FIELD_SIZE))
    centreline = make_centreline(
        rng, field, params.radius_distal, variation, coverage=params.field_coverage
    )
    stack_depth = max(depth, STACK_DEPTH)
    margin = int(1.6 * params.radius_proximal) + 8
    # a small window may miss every cell (it lies on the rachis, or in planes above or
    # below the tube): place it again, up to WINDOW_TRIES times
    for _ in range(WINDOW_TRIES):
        origin = (0, 0)
        if (height, width) != field:
            origin = _window_origin(rng, centreline.points, field, (height, width), 60.0)
        maps = tube_maps(centreline, origin, (height, width), margin)
        z_shift = int(rng.integers(0, stack_depth - depth + 1))
        profiles = make_profiles(params, centreline, stack_depth, z_shift)
        layout = build_cells(rng, params, centreline, profiles, maps, depth, origin)
        if layout.labels.max() > 0:
            break
    cytoplasm, membrane = render_channels(rng, layout, params)
    tissue = ((layout.labels > 0) | layout.rachis).astype(np.float32)
    image = np.stack(
        [
            image_channel(rng, cytoplasm, tissue, params, 0, origin, field),
            image_channel(rng, membrane, tissue, params, 1, origin, field),
        ]
    )
    n_cells = int(layout.labels.max())
    dtype = np.uint16 if n_cells <= np.iinfo(np.uint16).max else np.uint32
    logger.debug("phantom seed %d: %d cells, params %s", seed, n_cells, params)
    voxel_size = (params.pixel_um * params.z_ratio, params.pixel_um, params.pixel_um)
    return Phantom(
        image=image,
        labels=layout.labels.astype(dtype),
        voxel_size=tuple(round(v, 4) for v in voxel_size),
    )


def write_phantom(
    out_dir: str | Path, shape: tuple[int, int, int] = (25, 1024, 1024), seed: int = 0
) -> tuple[Path, Path]:
    """Write a phantom as ``out_dir/image.tif`` and ``out_dir/labels.tif``.

    ``image.tif`` holds the (C, Z, Y, X) uint16 array with tifffile's shaped metadata
    ``{'axes': 'CZYX', 'spacing': z_um, 'unit': 'um'}`` and the XY resolution in pixels per
    micrometre; ``labels.tif`` holds the (Z, Y, X) labels with ``{'axes': 'ZYX', ...}``.

    Returns
    -------
    (Path, Path)
        Paths of the image and the labels.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(shape, seed)
    z_um, y_um, x_um = phantom.voxel_size
    resolution = (1.0 / x_um, 1.0 / y_um)
    image_path, labels_path = out / "image.tif", out / "labels.tif"
    tifffile.imwrite(
        image_path,
        phantom.image,
        metadata={"axes": "CZYX", "spacing": z_um, "unit": "um"},
        resolution=resolution,
        resolutionunit="NONE",
        photometric="minisblack",
    )
    tifffile.imwrite(
        labels_path,
        phantom.labels,
        metadata={"axes": "ZYX", "spacing": z_um, "unit": "um"},
        resolution=resolution,
        resolutionunit="NONE",
        photometric="minisblack",
    )
    return image_path, labels_path

"""Rendering of a phantom's two channels and of the microscope's imaging process."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from segmentation.synthetic.cells import CellLayout, smooth_field
from segmentation.synthetic.parameters import PhantomParameters

#: Largest value of a 12-bit camera.
MAX_VALUE = 4095


def nucleus_map(layout: CellLayout, z_ratio: float) -> np.ndarray:
    """Soft (0..1) mask of the nuclei: 1 inside, a 1.5 px ramp at the edge.

    Each nucleus is painted in its bounding box and only inside its own cell.
    """
    labels = layout.labels
    nucleus = np.zeros(labels.shape, np.float32)
    shape = np.asarray(labels.shape)
    for cell in np.flatnonzero(layout.nucleus_radius > 0):
        centre = layout.nucleus_centre[cell]
        radius = float(layout.nucleus_radius[cell])
        half = np.array([radius / z_ratio, radius, radius]) + 2
        lo = np.maximum(np.floor(centre - half).astype(int), 0)
        hi = np.minimum(np.ceil(centre + half).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        z, y, x = (np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi, strict=True))
        dist = np.sqrt(
            (((z - centre[0]) * z_ratio) ** 2)[:, None, None]
            + ((y - centre[1]) ** 2)[None, :, None]
            + ((x - centre[2]) ** 2)[None, None, :]
        )
        value = np.clip((radius - dist) / 1.5 + 0.5, 0, 1) * (labels[box] == cell)
        np.maximum(nucleus[box], value, out=nucleus[box])
    return nucleus


def membrane_map(layout: CellLayout, params: PhantomParameters) -> np.ndarray:
    """Membrane strength (0..1) on both voxels of every face between different regions.

    Faces between two cells get 1, faces to the rachis, to the background and the outer
    faces of oocytes get their (weaker) per-phantom weights. Faces across Z are marked
    with weight 0.6 since one slice is much thicker than a membrane.
    """
    n = len(layout.is_oocyte)
    region = layout.labels.astype(np.uint32)
    region[layout.rachis] = n
    inner = np.ones(n + 1, np.float32)
    inner[0], inner[n] = 0.0, params.membrane_rachis_face
    outer = np.where(
        layout.is_oocyte, params.membrane_oocyte_outer_face, params.membrane_background_face
    )
    outer = np.concatenate([outer, [0.0]]).astype(np.float32)
    outer[0] = 0.0
    flat_region = region.ravel()
    membrane = np.zeros(region.size, np.float32)
    face = np.zeros(region.shape, bool)
    for axis, axis_weight in ((0, 0.6), (1, 1.0), (2, 1.0)):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        face[:] = False
        np.not_equal(region[tuple(lo)], region[tuple(hi)], out=face[tuple(lo)])
        first = np.flatnonzero(face)
        second = first + region.strides[axis] // region.itemsize
        a, b = flat_region[first], flat_region[second]
        weight = np.where(
            (a > 0) & (b > 0),
            np.minimum(inner[a], inner[b]),
            np.maximum(outer[a], outer[b]),
        ) * np.float32(axis_weight)
        membrane[first] = np.maximum(membrane[first], weight)
        membrane[second] = np.maximum(membrane[second], weight)
    return membrane.reshape(region.shape)


def _grain(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    """Positive multiplicative speckle with mean 1 (a chi-square(1) mixture)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= noise
    noise *= np.float32(strength)
    noise += np.float32(1 - strength)
    return noise


def _delta_peak(sigma: tuple[float, float, float]) -> float:
    """Peak of a unit impulse after Gaussian blur with ``sigma`` (per axis, in voxels)."""
    peak = 1.0
    for s in sigma:
        radius = int(3 * s + 0.5)
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(s, 1e-6)) ** 2)
        peak *= 1.0 / kernel.sum()
    return peak


def puncta_positions(
    rng: np.random.Generator, layout: CellLayout, params: PhantomParameters
) -> np.ndarray:
    """Voxel positions (n, 3) of bright granules on a shell around each nucleus."""
    radius = layout.nucleus_radius
    cells = np.flatnonzero(radius > 0)
    rate = params.puncta_rate * np.where(layout.is_oocyte[cells], 3.0, 1.0)
    counts = rng.poisson(rate)
    owner = np.repeat(cells, counts)
    direction = rng.standard_normal((len(owner), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-9
    distance = radius[owner] + rng.uniform(1.0, 5.0, len(owner))
    offset = direction * distance[:, None]
    offset[:, 0] /= params.z_ratio
    position = np.round(layout.nucleus_centre[owner] + offset).astype(np.int64)
    shape = np.asarray(layout.labels.shape)
    inside = np.all((position >= 0) & (position < shape), axis=1)
    position, owner = position[inside], owner[inside]
    same_cell = layout.labels[tuple(position.T)] == owner
    return position[same_cell]


def _spots(
    rng: np.random.Generator, layout: CellLayout, rate: float
) -> np.ndarray:
    """Voxel positions (n, 3) of bright spots scattered at random inside cells."""
    cells = layout.labels > 0
    n_cells = len(layout.is_oocyte) - 1
    count = int(rng.poisson(rate * max(n_cells, 0)))
    if count == 0 or not cells.any():
        return np.zeros((0, 3), np.int64)
    flat = np.flatnonzero(cells.ravel())
    chosen = flat[rng.integers(0, len(flat), count)]
    return np.stack(np.unravel_index(chosen, cells.shape), axis=1)


def render_channels(
    rng: np.random.Generator, layout: CellLayout, params: PhantomParameters
) -> tuple[np.ndarray, np.ndarray]:
    """Expected, unblurred intensities of channel 0 (cytoplasm) and 1 (membrane).

    Both are in units of a typical cell interior (about 1), before the microscope's blur,
    depth profile, haze and noise (:func:`image_channel`).
    """
    labels = layout.labels
    cells = labels > 0
    nucleus = nucleus_map(layout, params.z_ratio)
    faces = membrane_map(layout, params)
    level = rng.lognormal(0.0, params.cell_level_spread, len(layout.is_oocyte))
    level[0] = 0.0
    cytoplasm = level.astype(np.float32)[labels]
    cytoplasm[layout.rachis] = params.rachis_level
    cytoplasm *= 1 - np.float32(params.nucleus_darkness) * nucleus
    # the cytoplasm marker is slightly brighter on faces between cells, too
    cell_faces = np.where(faces >= 0.6, faces, 0).astype(np.float32)
    cytoplasm += cell_faces * np.float32((params.cytoplasm_face - 1) / 0.6)
    cytoplasm *= _grain(rng, labels.shape, params.grain)
    sigma = (params.blur_z, params.blur_xy, params.blur_xy)
    puncta = puncta_positions(rng, layout, params)
    np.add.at(cytoplasm, tuple(puncta.T), np.float32(params.puncta_level / _delta_peak(sigma)))

    tissue = (cells | layout.rachis).astype(np.float32)
    membrane_signal = tissue * level.astype(np.float32)[labels] ** 0.5
    membrane_signal[layout.rachis] = 1.0
    membrane_signal *= 1 - np.float32(params.membrane_nucleus_darkness) * nucleus
    # membranes vary in brightness along the faces (log-normal, smooth over ~20 px)
    height, width = labels.shape[1:]
    brightness = np.exp(
        smooth_field(rng, (height, width), 20.0, params.membrane_spread)
        - 0.5 * params.membrane_spread**2
    )
    # a 2-voxel membrane keeps ~60 % of its peak after the blur
    membrane_signal += faces * brightness[None] * np.float32((params.membrane_ratio - 1) / 0.6)
    membrane_signal *= _grain(rng, labels.shape, params.membrane_grain)
    spots = _spots(rng, layout, params.membrane_spot_rate)
    np.add.at(membrane_signal, tuple(spots.T), np.float32(8.0 / _delta_peak(sigma)))
    return cytoplasm, membrane_signal


def depth_profile(depth: int, peak: float, start: float, end: float) -> np.ndarray:
    """Relative intensity per plane: rises from ``start`` to 1 at ``peak`` (fraction of the
    depth), then falls to ``end`` at the last plane (smooth, cosine-shaped)."""
    z = np.arange(depth, dtype=np.float64) / max(depth - 1, 1)
    peak = float(np.clip(peak, 1e-3, 1 - 1e-3))
    rise = start + (1 - start) * np.sin(0.5 * np.pi * np.clip(z / peak, 0, 1)) ** 2
    fall = 1 - (1 - end) * np.sin(0.5 * np.pi * np.clip((z - peak) / (1 - peak), 0, 1))
    return np.where(z <= peak, rise, fall).astype(np.float32)


def image_channel(
    rng: np.random.Generator,
    signal: np.ndarray,
    tissue: np.ndarray,
    params: PhantomParameters,
    channel: int,
    origin: tuple[int, int],
    field: tuple[int, int],
) -> np.ndarray:
    """Image one channel: blur, depth profile, drift, haze, photon and camera noise.

    The physical model: the expected photon count of a voxel is ``photons`` times its
    relative intensity (``signal`` after blur, depth profile and drift, plus out-of-focus
    haze around the ``tissue``); the camera counts Poisson-distributed photons with
    ``gain`` counts per photon, adds read noise, subtracts an offset that lies
    ``black_level`` photons above its bias, and clips to 0..4095 (12 bit). ``signal``
    (float32) is overwritten.
    """
    depth, height, width = signal.shape
    ndi.gaussian_filter(
        signal,
        (params.blur_z, params.blur_xy, params.blur_xy),
        output=signal,
        mode="reflect",
        truncate=3.0,
    )
    profile = depth_profile(depth, params.depth_peak, params.depth_start, params.depth_end)
    gy, gx = rng.uniform(-1, 1, 2)
    yy = (np.arange(height, dtype=np.float32)[:, None] + origin[0]) / field[0] - 0.5
    xx = (np.arange(width, dtype=np.float32)[None, :] + origin[1]) / field[1] - 0.5
    drift = 1 + params.drift * (gy * yy + gx * xx)
    drift += smooth_field(rng, (height, width), 256.0, 0.3 * params.drift)
    drift = np.clip(drift, 0.2, None)
    # out-of-focus light: bright next to the tissue, fading over ~40 px to a floor
    near = ndi.gaussian_filter(tissue, (1.0, 12.0, 12.0), mode="nearest")
    near = np.clip(near * 2.0, 0, 1)
    haze_level = params.haze_0 if channel == 0 else params.haze_1
    haze = near + np.float32(params.haze_floor) * (1 - near)
    haze *= np.float32(haze_level)
    expected = signal
    expected += haze
    expected *= profile[:, None, None]
    expected *= drift[None]
    photons = params.photons_0 if channel == 0 else params.photons_1
    gain = params.gain_0 if channel == 0 else params.gain_1
    black_level = params.black_level_0 if channel == 0 else params.black_level_1
    np.maximum(expected, 0, out=expected)
    expected *= np.float32(photons)
    counts = rng.poisson(expected).astype(np.float32)
    counts += rng.normal(-black_level, params.read_noise, counts.shape).astype(np.float32)
    counts *= np.float32(gain)
    np.clip(counts, 0, MAX_VALUE, out=counts)
    return np.round(counts).astype(np.uint16)

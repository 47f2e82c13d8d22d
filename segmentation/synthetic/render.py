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


def render_channels(
    rng: np.random.Generator, layout: CellLayout, params: PhantomParameters
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free, unblurred intensities of channel 0 (cytoplasm) and 1 (membrane)."""
    labels = layout.labels
    cells = labels > 0
    nucleus = nucleus_map(layout, params.z_ratio)
    level = rng.lognormal(0.0, params.cell_level_spread, len(layout.is_oocyte))
    level[0] = 0.0
    cytoplasm = level.astype(np.float32)[labels]
    cytoplasm[layout.rachis] = params.rachis_level
    cytoplasm *= 1 - np.float32(params.nucleus_darkness) * nucleus
    cytoplasm += np.float32(params.autofluorescence)
    cytoplasm *= _grain(rng, labels.shape, params.grain)
    cytoplasm *= np.float32(params.cytoplasm_level)
    sigma = (params.blur_z, params.blur_xy, params.blur_xy)
    puncta = puncta_positions(rng, layout, params)
    peak = min(params.puncta_level * params.cytoplasm_level, 3600.0)
    np.add.at(cytoplasm, tuple(puncta.T), np.float32(peak * _delta_peak(sigma) * 0.5))

    tissue = (cells | layout.rachis).astype(np.float32)
    membrane_signal = tissue * (1 - np.float32(params.membrane_nucleus_darkness) * nucleus)
    membrane_signal += np.float32(0.5 * params.autofluorescence)
    # a 2-voxel membrane keeps ~60 % of its peak after the blur
    membrane_signal += membrane_map(layout, params) * np.float32((params.membrane_ratio - 1) / 0.6)
    membrane_signal *= _grain(rng, labels.shape, params.membrane_grain)
    membrane_signal *= np.float32(params.membrane_cytoplasm_level)
    return cytoplasm, membrane_signal


def image_channel(
    rng: np.random.Generator,
    signal: np.ndarray,
    params: PhantomParameters,
    origin: tuple[int, int],
    field: tuple[int, int],
) -> np.ndarray:
    """Blur, attenuate with depth, drift across the field, add noise; 12-bit uint16.

    ``signal`` (float32) is overwritten.
    """
    depth, height, width = signal.shape
    ndi.gaussian_filter(
        signal,
        (params.blur_z, params.blur_xy, params.blur_xy),
        output=signal,
        mode="reflect",
        truncate=3.0,
    )
    z = np.arange(depth, dtype=np.float32) / max(depth - 1, 1)
    if not params.attenuation_from_top:
        z = z[::-1]
    signal *= np.exp(-params.depth_attenuation * z).astype(np.float32)[:, None, None]
    gy, gx = rng.uniform(-1, 1, 2)
    yy = (np.arange(height, dtype=np.float32)[:, None] + origin[0]) / field[0] - 0.5
    xx = (np.arange(width, dtype=np.float32)[None, :] + origin[1]) / field[1] - 0.5
    drift = 1 + params.drift * (gy * yy + gx * xx)
    drift += smooth_field(rng, (height, width), 256.0, 0.3 * params.drift)
    signal *= np.clip(drift, 0.2, None)[None]
    # photon noise (Gaussian with the Poisson variance) and read noise in one draw
    noisy = np.maximum(signal, 0, out=signal)
    sigma = noisy * np.float32(params.gain)
    sigma += np.float32(params.read_noise**2)
    np.sqrt(sigma, out=sigma)
    sigma *= rng.standard_normal(noisy.shape, dtype=np.float32)
    noisy += sigma
    del sigma
    noisy += np.float32(params.offset)
    np.clip(noisy, 0, MAX_VALUE, out=noisy)
    return np.round(noisy).astype(np.uint16)

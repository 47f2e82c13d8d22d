"""The gonad as a curved tube: its centreline and tube coordinates of every pixel.

The tube lives in a virtual full-size field (at least 1024 x 1024 pixels); the phantom is a
window onto that field, so a small phantom looks like a crop of a full stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

#: Spacing of centreline samples, in pixels.
STEP = 1.0


@dataclass(frozen=True)
class Centreline:
    """A planar curve sampled every ``STEP`` pixels, parameterised by arc length ``s``.

    ``s = 0`` is the distal tip; points with ``s < 0`` do not exist (the tube ends there).
    """

    points: np.ndarray  # (n, 2) y, x in field coordinates
    tangents: np.ndarray  # (n, 2) unit vectors
    normals: np.ndarray  # (n, 2) unit vectors, tangent rotated by +90 degrees
    arc: np.ndarray  # (n,) arc length s from the distal tip
    in_field: tuple[float, float]  # arc-length range inside the field


def _walk(start: np.ndarray, heading: float, curvature: np.ndarray) -> np.ndarray:
    angles = heading + np.cumsum(curvature) * STEP
    steps = np.stack([np.sin(angles), np.cos(angles)], axis=1) * STEP
    return start + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)[:-1]])


def _inside(points: np.ndarray, field: tuple[int, int]) -> np.ndarray:
    return (
        (points[:, 0] >= 0)
        & (points[:, 0] < field[0])
        & (points[:, 1] >= 0)
        & (points[:, 1] < field[1])
    )


def _coverage(points: np.ndarray, radius: float, field: tuple[int, int]) -> float:
    """Fraction of the field within ``radius`` of the curve (on a 16-pixel grid)."""
    cell = 16.0
    grid = (int(np.ceil(field[0] / cell)), int(np.ceil(field[1] / cell)))
    pad = int(np.ceil(radius / cell)) + 1
    rows = np.round(points[:, 0] / cell).astype(np.int64) + pad
    cols = np.round(points[:, 1] / cell).astype(np.int64) + pad
    canvas = np.ones((grid[0] + 2 * pad, grid[1] + 2 * pad), bool)
    keep = (rows >= 0) & (rows < canvas.shape[0]) & (cols >= 0) & (cols < canvas.shape[1])
    canvas[rows[keep], cols[keep]] = False
    distance = ndi.distance_transform_edt(canvas)[pad:-pad, pad:-pad] * cell
    return float(np.mean(distance < radius))


def make_centreline(
    rng: np.random.Generator,
    field: tuple[int, int],
    radius: float,
    variation: float,
    *,
    coverage: float = 0.6,
    attempts: int = 12,
) -> Centreline:
    """Draw a smooth random path that crosses the field, covering about ``coverage`` of it.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    field : (int, int)
        Size (Y, X) of the virtual field.
    radius : float
        Typical tube radius (pixels), used to aim for ``coverage`` of the field.
    variation : float
        0 gives the canonical gently curved path, 1 the full variety.
    coverage : float
        Fraction of the field within ``radius`` of the path that the best of ``attempts``
        random paths comes closest to.

    Returns
    -------
    Centreline
    """
    size = float(max(field))
    length = int(4.0 * size / STEP)
    s = np.arange(length) * STEP
    best: tuple[float, np.ndarray] | None = None
    for _ in range(attempts if variation > 0 else 1):
        side = rng.uniform(0, 4)
        along = 0.5 + variation * rng.uniform(-0.35, 0.35)
        heading = variation * rng.uniform(-0.6, 0.6)
        bend = 1.0 / (1.1 * size) + variation * rng.uniform(-1.0, 5.0) / size
        wiggle = variation * rng.uniform(0.0, 2.0) / size
        period = rng.uniform(0.6, 1.6) * size
        phase = rng.uniform(0, 2 * np.pi)
        curvature = bend * np.sign(rng.uniform(-1, 1) or 1.0) + wiggle * np.sin(
            2 * np.pi * s / period + phase
        )
        curvature = np.clip(curvature, -1 / (2.2 * radius), 1 / (2.2 * radius))
        turned = np.cumsum(curvature) * STEP
        curvature[np.abs(turned) > 1.25 * np.pi] = 0.0
        margin = 2.5 * radius
        hairpin = rng.uniform() < 0.5 * variation
        turn_radius = rng.uniform(1.45, 1.9) * radius
        turn_start = margin + rng.uniform(0.3, 0.8) * size
        if hairpin:
            # a folded arm: nearly straight in, a half turn, nearly straight back out
            in_turn = (s >= turn_start) & (s < turn_start + np.pi * turn_radius)
            curvature = np.where(in_turn, np.sign(bend) / turn_radius, 0.25 * curvature)
        if side < 1 or variation == 0:
            start, heading0 = np.array([along * field[0], -margin]), 0.0
        elif side < 2:
            start, heading0 = np.array([along * field[0], field[1] + margin]), np.pi
        elif side < 3:
            start, heading0 = np.array([-margin, along * field[1]]), np.pi / 2
        else:
            start, heading0 = np.array([field[0] + margin, along * field[1]]), -np.pi / 2
        points = _walk(start, heading0 + heading, curvature)
        inside = _inside(points, field)
        if not inside.any():
            continue
        score = abs(_coverage(points, radius, field) - coverage)
        if best is None or score < best[0]:
            best = (score, points)
    if best is None:
        return make_centreline(rng, field, radius, 0.0, coverage=coverage)
    points = best[1]
    inside = np.flatnonzero(_inside(points, field))
    end = min(len(points), inside[-1] + int(3 * radius / STEP))
    points = points[:end]
    if rng.uniform() < 0.5 * variation + 0.5 * (variation == 0):
        points = points[::-1]
    inside = np.flatnonzero(_inside(points, field))
    first, last = inside[0], inside[-1]
    in_length = (last - first) * STEP
    tip = first - int(3 * radius / STEP)
    if rng.uniform() < 0.35 * variation:
        tip = first + int(rng.uniform(0.0, 0.25) * in_length / STEP)
    tip = max(tip, 0)
    points = points[tip:]
    tangents = np.gradient(points, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normals = np.stack([tangents[:, 1], -tangents[:, 0]], axis=1)
    arc = np.arange(len(points)) * STEP
    return Centreline(
        points=points,
        tangents=tangents,
        normals=normals,
        arc=arc,
        in_field=(max(0.0, (first - tip) * STEP), (last - tip) * STEP),
    )


@dataclass(frozen=True)
class TubeMaps:
    """Tube coordinates of every pixel of a 2D window (Y, X).

    ``arc``: arc length of the nearest centreline point plus the offset along its tangent
    (so it is continuous, and extends beyond the curve's ends); ``offset``: signed in-plane
    distance from the centreline.
    """

    arc: np.ndarray
    offset: np.ndarray


def tube_maps(
    centreline: Centreline, origin: tuple[int, int], shape: tuple[int, int], margin: int
) -> TubeMaps:
    """Project every pixel of the window ``origin + [0, shape)`` onto the centreline.

    ``margin`` must exceed the tube radius: pixels whose nearest centreline point lies
    farther than that outside the window get approximate (but outside-tube) coordinates.
    """
    y0, x0 = origin[0] - margin, origin[1] - margin
    canvas_shape = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    rows = np.round(centreline.points[:, 0] - y0).astype(np.int64)
    cols = np.round(centreline.points[:, 1] - x0).astype(np.int64)
    keep = (rows >= 0) & (rows < canvas_shape[0]) & (cols >= 0) & (cols < canvas_shape[1])
    if not keep.any():
        far = np.full(shape, 1e6, np.float32)
        return TubeMaps(arc=far, offset=far)
    index = np.full(canvas_shape, -1, np.int64)
    index[rows[keep], cols[keep]] = np.flatnonzero(keep)
    nearest = ndi.distance_transform_edt(index < 0, return_distances=False, return_indices=True)
    sl = (slice(margin, margin + shape[0]), slice(margin, margin + shape[1]))
    point_id = index[nearest[0][sl], nearest[1][sl]]
    yy, xx = np.meshgrid(
        np.arange(shape[0]) + origin[0], np.arange(shape[1]) + origin[1], indexing="ij"
    )
    dy = yy - centreline.points[point_id, 0]
    dx = xx - centreline.points[point_id, 1]
    along = dy * centreline.tangents[point_id, 0] + dx * centreline.tangents[point_id, 1]
    across = dy * centreline.normals[point_id, 0] + dx * centreline.normals[point_id, 1]
    arc = centreline.arc[point_id] + along
    return TubeMaps(arc=arc.astype(np.float32), offset=across.astype(np.float32))

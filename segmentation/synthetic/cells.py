"""Cells of the phantom: germ cells around the rachis, a transition zone, and oocytes.

Small cells are a Voronoi partition of seed points placed in a layer around the rachis
(one anisotropic distance transform for all cells, on a grid of half the XY resolution,
looked up through a smooth random warp so that cells get irregular faces). Oocytes are
slabs along the tube axis, separated by tilted, domed faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected_components

from segmentation.synthetic.parameters import PhantomParameters
from segmentation.synthetic.tube import Centreline, TubeMaps

#: XY down-sampling of the grid on which the Voronoi partition is computed.
VORONOI_FACTOR = 2


@dataclass(frozen=True)
class Profiles:
    """Functions of arc length: tube radii, rachis, cell size and where oocytes start."""

    params: PhantomParameters
    transition_start: float
    oocyte_start: float
    flatten: float  # tube semi-axis along Z / in-plane semi-axis
    z_centre: float
    z_slope: float  # slices per pixel of arc length
    arc_mid: float

    def maturity(self, arc: np.ndarray) -> np.ndarray:
        t = np.clip((arc - self.transition_start) / self.params.transition_width, 0, 1)
        return t * t * (3 - 2 * t)

    def radius(self, arc: np.ndarray) -> np.ndarray:
        p = self.params
        return p.radius_distal + (p.radius_proximal - p.radius_distal) * self.maturity(arc)

    def radius_z(self, arc: np.ndarray) -> np.ndarray:
        return self.radius(arc) * self.flatten

    def rachis(self, arc: np.ndarray) -> np.ndarray:
        """Rachis radius as a fraction of the tube's: none at the distal tip."""
        ramp = np.clip((arc - 1.5 * self.params.cell_size_distal) / 150.0, 0, 1)
        return self.params.rachis_radius * ramp

    def cell_size(self, arc: np.ndarray) -> np.ndarray:
        p = self.params
        return p.cell_size_distal + (p.cell_size_transition - p.cell_size_distal) * self.maturity(
            arc
        )

    def z(self, arc: np.ndarray) -> np.ndarray:
        """Z centre of the tube, in slices."""
        return self.z_centre + self.z_slope * (arc - self.arc_mid)


def make_profiles(
    params: PhantomParameters, centreline: Centreline, depth: int, z_shift: int
) -> Profiles:
    """Profiles of a tube seen through a window starting ``z_shift`` slices into a stack
    ``depth`` slices deep."""
    start, end = centreline.in_field
    length = max(end - start, 1.0)
    transition = start + params.transition_fraction * length
    return Profiles(
        params=params,
        transition_start=transition,
        oocyte_start=transition + params.transition_width,
        flatten=float(
            np.clip(params.tube_height * depth * params.z_ratio / params.radius_distal, 0.45, 1)
        ),
        z_centre=(depth - 1) / 2 + params.tube_z_offset * depth - z_shift,
        z_slope=params.tube_z_slope / length,
        arc_mid=(start + end) / 2,
    )


@dataclass(frozen=True)
class CellSeeds:
    """Seed points of the small cells, in window voxel coordinates (z, y, x)."""

    positions: np.ndarray  # (n, 3) float
    sizes: np.ndarray  # (n,) cell size in pixels


def place_seeds(
    rng: np.random.Generator,
    centreline: Centreline,
    profiles: Profiles,
    arc_range: tuple[float, float],
    origin: tuple[int, int],
) -> CellSeeds:
    """Place seeds in rings around the rachis, one ring every cell size along the tube."""
    p = profiles.params
    arc = max(arc_range[0], 0.0) + rng.uniform(0, 1) * p.cell_size_distal
    stop = min(arc_range[1], profiles.oocyte_start - 0.3 * p.cell_size_transition)
    positions, sizes = [], []
    last = len(centreline.arc) - 1
    while arc < stop:
        a = np.array([arc])
        size = float(profiles.cell_size(a)[0])
        radius, radius_z = float(profiles.radius(a)[0]), float(profiles.radius_z(a)[0])
        inner = float(profiles.rachis(a)[0])
        layers = max(1, int((1 - inner) * radius / size + 0.3))
        for layer in range(layers):
            rho = 1 - (layer + 0.5) * (1 - inner) / layers
            mean_radius = rho * np.sqrt((radius**2 + radius_z**2) / 2)
            count = int(round(2 * np.pi * mean_radius / size))
            if count < 2:
                rho, count = 0.0, 1
            theta = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(count) / count
            theta += rng.uniform(-0.2, 0.2, count) * 2 * np.pi / count
            rho_j = rho * (1 + rng.uniform(-0.08, 0.08, count))
            arc_j = np.clip(arc + rng.uniform(-0.15, 0.15, count) * size, 0, None)
            index = np.clip(np.round(arc_j / (centreline.arc[1] - centreline.arc[0])), 0, last)
            index = index.astype(np.int64)
            across = rho_j * radius * np.cos(theta)
            y = centreline.points[index, 0] + centreline.normals[index, 0] * across
            x = centreline.points[index, 1] + centreline.normals[index, 1] * across
            z = profiles.z(arc_j) + rho_j * radius_z * np.sin(theta) / p.z_ratio
            positions.append(np.stack([z, y - origin[0], x - origin[1]], axis=1))
            sizes.append(np.full(count, size))
        arc += size * rng.uniform(0.9, 1.1)
    if not positions:
        return CellSeeds(np.zeros((0, 3)), np.zeros(0))
    return CellSeeds(np.concatenate(positions), np.concatenate(sizes))


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], scale: float, amplitude: float
) -> np.ndarray:
    """Smooth random 2D field with unit-scale features of ``scale`` pixels."""
    coarse = (int(np.ceil(shape[0] / scale)) + 3, int(np.ceil(shape[1] / scale)) + 3)
    noise = rng.standard_normal(coarse)
    fine = ndi.zoom(noise, scale, order=1, mode="nearest", grid_mode=True)[: shape[0], : shape[1]]
    return (amplitude * fine).astype(np.float32)


def voronoi_ids(
    rng: np.random.Generator,
    seeds: CellSeeds,
    shape: tuple[int, int, int],
    z_ratio: float,
    warp_amplitude: float,
) -> np.ndarray:
    """Id (1..n) of the nearest seed for every voxel, 0 when there are no seeds.

    Computed on a grid padded around the window (so that cells cut by the window's edges
    keep their true shape) at ``1 / VORONOI_FACTOR`` XY resolution, and looked up through
    a smooth random warp of the coordinates.
    """
    depth, height, width = shape
    if len(seeds.positions) == 0:
        return np.zeros(shape, np.uint32)
    f = VORONOI_FACTOR
    pad_xy = int(seeds.sizes.max()) + 8
    pad_z = int(np.ceil(seeds.sizes.max() / z_ratio)) + 1
    grid = (depth + 2 * pad_z, (height + 2 * pad_xy) // f + 1, (width + 2 * pad_xy) // f + 1)
    gz = np.round(seeds.positions[:, 0] + pad_z).astype(np.int64)
    gy = np.round((seeds.positions[:, 1] + pad_xy) / f).astype(np.int64)
    gx = np.round((seeds.positions[:, 2] + pad_xy) / f).astype(np.int64)
    keep = (gz >= 0) & (gz < grid[0]) & (gy >= 0) & (gy < grid[1]) & (gx >= 0) & (gx < grid[2])
    if not keep.any():
        return np.zeros(shape, np.uint32)
    seed_image = np.zeros(grid, np.uint32)
    seed_image[gz[keep], gy[keep], gx[keep]] = np.flatnonzero(keep) + 1
    nearest = ndi.distance_transform_edt(
        seed_image == 0, sampling=(z_ratio, f, f), return_distances=False, return_indices=True
    )
    flat = np.ravel_multi_index(tuple(nearest), grid)
    del nearest
    nearest_id = seed_image.ravel()[flat].reshape(grid)
    del flat
    scale = 24.0
    warp = [smooth_field(rng, (height, width), scale, warp_amplitude) for _ in range(4)]
    rows = np.arange(height, dtype=np.float32)[:, None] + pad_xy
    cols = np.arange(width, dtype=np.float32)[None, :] + pad_xy
    ids = np.empty(shape, np.uint32)
    for z in range(depth):
        zt = 4 * (z - depth / 2) / max(depth, 1)
        iy = np.clip((rows + warp[0] + zt * warp[1]) / f + 0.5, 0, grid[1] - 1)
        ix = np.clip((cols + warp[2] + zt * warp[3]) / f + 0.5, 0, grid[2] - 1)
        ids[z] = nearest_id[z + pad_z][iy.astype(np.intp), ix.astype(np.intp)]
    return ids


def oocyte_boundaries(rng: np.random.Generator, profiles: Profiles, arc_max: float) -> np.ndarray:
    """Arc lengths of the faces between oocytes, from the start of the oocyte zone."""
    p = profiles.params
    faces = [profiles.oocyte_start]
    thickness = p.oocyte_thickness
    while faces[-1] < arc_max:
        faces.append(faces[-1] + thickness * rng.uniform(0.8, 1.2))
        thickness = min(thickness * (1 + p.oocyte_growth), 170.0)
    return np.asarray(faces)


def keep_largest_pieces(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the largest 6-connected piece of every id (others become 0); relabel 1..N.

    Returns the new label image and, for each new label, the original id.
    """
    pieces = connected_components(ids, background=0, connectivity=1)
    sizes = np.bincount(pieces.ravel())
    owner = np.zeros(len(sizes), np.int64)
    owner[pieces.ravel()] = ids.ravel()
    order = np.lexsort((-sizes[1:], owner[1:])) + 1
    first = np.ones(len(order), bool)
    first[1:] = owner[order[1:]] != owner[order[:-1]]
    kept = order[first]
    new_label = np.zeros(len(sizes), np.uint32)
    new_label[kept] = np.arange(1, len(kept) + 1)
    original = np.concatenate([[0], owner[kept]])
    return new_label[pieces], original


@dataclass(frozen=True)
class CellLayout:
    """Labels of a phantom window and what the renderer needs to know about each cell.

    Per-cell arrays are indexed by label (index 0 is background).
    """

    labels: np.ndarray  # (Z, Y, X) uint32, 0 background, 1..N cells
    rachis: np.ndarray  # (Z, Y, X) bool
    nucleus_centre: np.ndarray  # (N + 1, 3) z, y, x window voxel coordinates
    nucleus_radius: np.ndarray  # (N + 1,) pixels; 0 for cells without a nucleus
    is_oocyte: np.ndarray  # (N + 1,) bool


def build_cells(
    rng: np.random.Generator,
    params: PhantomParameters,
    centreline: Centreline,
    profiles: Profiles,
    maps: TubeMaps,
    depth: int,
    origin: tuple[int, int],
) -> CellLayout:
    """Label every voxel of the window: background, rachis (label 0) or one cell."""
    height, width = maps.arc.shape
    arc, offset = maps.arc, maps.offset
    radius, radius_z = profiles.radius(arc), profiles.radius_z(arc)
    z_centre = profiles.z(arc)
    cap = np.where(arc < 0, arc / radius, 0) ** 2
    in_plane = (offset / radius) ** 2 + cap
    limit = (1 + smooth_field(rng, (height, width), 48.0, 0.03)) ** 2
    nearest_z = np.clip(z_centre, 0, depth - 1)
    reached = in_plane + ((nearest_z - z_centre) * params.z_ratio / radius_z) ** 2 < limit
    arc_in_tube = arc[reached]
    arc_range = (
        (float(arc_in_tube.min()) - 60, float(arc_in_tube.max()) + 60)
        if arc_in_tube.size
        else (0.0, 0.0)
    )
    seeds = place_seeds(rng, centreline, profiles, arc_range, origin)
    n_seeds = len(seeds.positions)
    raw = voronoi_ids(rng, seeds, (depth, height, width), params.z_ratio, params.warp_amplitude)
    face_base = arc + params.oocyte_tilt * offset + smooth_field(rng, (height, width), 32.0, 3.0)
    dome = params.oocyte_dome * radius
    rachis_limit = profiles.rachis(arc) ** 2
    faces = oocyte_boundaries(rng, profiles, max(arc_range[1], profiles.oocyte_start) + 200)
    rachis = np.zeros(raw.shape, bool)
    for z in range(depth):
        dz = (z - z_centre) * params.z_ratio
        rho2 = in_plane + (dz / radius_z) ** 2
        face_arc = face_base + 0.5 * params.oocyte_tilt * dz + dome * rho2
        oocyte_zone = face_arc >= profiles.oocyte_start
        index = np.searchsorted(faces, face_arc[oocyte_zone], side="right")
        raw[z][oocyte_zone] = index.astype(np.uint32) + np.uint32(n_seeds)
        rachis[z] = ~oocyte_zone & (rho2 < rachis_limit)
        raw[z][(rho2 >= limit) | rachis[z]] = 0
    labels, original = keep_largest_pieces(raw)

    n_oocytes = len(faces)
    mids = np.concatenate([[0.0], (faces[:-1] + faces[1:]) / 2, [faces[-1]]])[1:]
    mids = mids[:n_oocytes]
    point = np.clip(np.round(mids / (centreline.arc[1] - centreline.arc[0])), 0, None)
    point = np.minimum(point.astype(np.int64), len(centreline.arc) - 1)
    spread = rng.uniform(-0.35, 0.35, (n_oocytes, 2))
    across = spread[:, 0] * profiles.radius(mids)
    oocyte_centres = np.stack(
        [
            profiles.z(mids) + spread[:, 1] * profiles.radius_z(mids) / params.z_ratio,
            centreline.points[point, 0] + centreline.normals[point, 0] * across - origin[0],
            centreline.points[point, 1] + centreline.normals[point, 1] * across - origin[1],
        ],
        axis=1,
    )
    thickness = np.diff(np.concatenate([faces, [faces[-1] + params.oocyte_thickness]]))
    oocyte_radius = np.minimum(
        params.oocyte_nucleus_radius * rng.uniform(0.85, 1.15, n_oocytes), 0.4 * thickness
    )
    has_nucleus = rng.uniform(size=n_seeds) < params.nucleus_probability
    seed_radius = (
        seeds.sizes * params.nucleus_fraction * rng.uniform(0.85, 1.15, n_seeds) * has_nucleus
    )
    # raw ids: 1..n_seeds are small cells, n_seeds + k (k = 1..n_oocytes) are oocytes
    all_centres = np.concatenate([np.zeros((1, 3)), seeds.positions, oocyte_centres])
    all_radius = np.concatenate([[0.0], seed_radius, oocyte_radius])
    all_oocyte = np.concatenate([[False], np.zeros(n_seeds, bool), np.ones(n_oocytes, bool)])
    original = np.minimum(original, len(all_radius) - 1)
    return CellLayout(
        labels=labels,
        rachis=rachis,
        nucleus_centre=all_centres[original],
        nucleus_radius=all_radius[original],
        is_oocyte=all_oocyte[original],
    )

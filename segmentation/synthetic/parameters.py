"""Per-seed random parameters of a synthetic germline phantom.

Every parameter has a canonical value (``variation=0``) and a range that is sampled
uniformly at ``variation=1``; in between, a draw is pulled towards the canonical value.
All draws happen in a fixed order, so a seed gives the same phantom for any ``variation``
apart from the spread of the values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def vary(
    rng: np.random.Generator, canonical: float, low: float, high: float, variation: float
) -> float:
    """Draw ``U(low, high)`` and pull it towards ``canonical`` by ``1 - variation``."""
    draw = rng.uniform(low, high)
    return float(canonical + variation * (draw - canonical))


@dataclass(frozen=True)
class PhantomParameters:
    """Geometry, texture and imaging parameters of one phantom (lengths in XY pixels)."""

    z_ratio: float  # Z step / XY pixel size
    pixel_um: float
    radius_distal: float  # in-plane tube semi-axis at the distal end
    radius_proximal: float
    tube_height: float  # tube semi-axis along Z as a fraction of the stack depth
    rachis_radius: float  # rachis semi-axes as a fraction of the tube's
    cell_size_distal: float
    cell_size_transition: float  # cell size where oocytes start
    transition_fraction: float  # where the transition starts, as fraction of in-field length
    transition_width: float
    oocyte_thickness: float
    oocyte_growth: float  # relative thickness increase per oocyte
    oocyte_tilt: float  # tilt of oocyte faces against the tube axis
    oocyte_dome: float  # curvature of oocyte faces
    nucleus_fraction: float  # nucleus radius / cell size
    nucleus_probability: float
    oocyte_nucleus_radius: float
    warp_amplitude: float
    tube_z_offset: float  # centre of the tube in Z as a fraction of depth from the middle
    tube_z_slope: float  # change of the tube's Z centre across the field, in slices
    cell_level_spread: float  # log-normal spread of the cells' brightness
    grain: float  # fine multiplicative texture of channel 0 (germ granules)
    nucleus_darkness: float
    puncta_rate: float
    puncta_level: float  # peak of a granule over the interior level, before blur
    rachis_level: float
    cytoplasm_face: float  # channel 0 brightness of faces between cells over the interior
    membrane_ratio: float  # channel 1 membrane peak over the cytoplasm level, before blur
    membrane_spread: float  # log-normal spread of the membrane's brightness along faces
    membrane_background_face: float
    membrane_oocyte_outer_face: float
    membrane_rachis_face: float
    membrane_grain: float
    membrane_nucleus_darkness: float
    membrane_spot_rate: float  # bright membrane spots (vesicles) per cell
    blur_xy: float
    blur_z: float
    depth_peak: float  # where the intensity peaks along Z, as a fraction of the depth
    depth_start: float  # intensity at the first plane over the peak
    depth_end: float  # intensity at the last plane over the peak
    drift: float
    photons_0: float  # photon-equivalents of a typical interior voxel, channel 0
    photons_1: float
    gain_0: float  # camera counts per photon-equivalent, channel 0
    gain_1: float
    haze_0: float  # out-of-focus light next to the tissue over the interior level
    haze_1: float
    haze_floor: float  # haze far from the tissue over the haze next to it
    black_level_0: float  # offset subtracted beyond the camera's bias, in photons (clips at 0)
    black_level_1: float
    read_noise: float  # in photons
    field_coverage: float  # fraction of the field's area within a tube radius of the centreline

    @classmethod
    def sample(cls, rng: np.random.Generator, variation: float) -> PhantomParameters:
        """Draw one parameter set; ``variation`` in [0, 1] scales the spread."""

        def v(canonical: float, low: float, high: float) -> float:
            return vary(rng, canonical, low, high, variation)

        def log_v(canonical: float, low: float, high: float) -> float:
            return float(np.exp(v(np.log(canonical), np.log(low), np.log(high))))

        radius_distal = v(130.0, 100.0, 165.0)
        cell_size_distal = v(36.0, 28.0, 46.0)
        membrane_ratio = log_v(1.45, 1.15, 2.6)
        return cls(
            z_ratio=v(6.0, 4.0, 8.0),
            pixel_um=v(0.15, 0.1, 0.2),
            radius_distal=radius_distal,
            radius_proximal=radius_distal * v(1.15, 1.0, 1.35),
            tube_height=v(1.0, 0.7, 1.4),
            rachis_radius=v(0.45, 0.35, 0.6),
            cell_size_distal=cell_size_distal,
            cell_size_transition=cell_size_distal * v(2.0, 1.5, 2.6),
            transition_fraction=v(0.45, 0.1, 0.95),
            transition_width=v(220.0, 120.0, 320.0),
            oocyte_thickness=v(75.0, 50.0, 100.0),
            oocyte_growth=v(0.08, 0.0, 0.2),
            oocyte_tilt=v(0.0, -0.35, 0.35),
            oocyte_dome=v(0.15, -0.1, 0.4),
            nucleus_fraction=v(0.33, 0.25, 0.4),
            nucleus_probability=v(0.9, 0.75, 1.0),
            oocyte_nucleus_radius=v(28.0, 18.0, 40.0),
            warp_amplitude=v(3.0, 1.5, 6.0),
            tube_z_offset=v(0.0, -0.2, 0.2),
            tube_z_slope=v(0.0, -6.0, 6.0),
            cell_level_spread=v(0.15, 0.05, 0.3),
            grain=v(0.05, 0.0, 0.15),
            nucleus_darkness=v(0.55, 0.35, 0.8),
            puncta_rate=v(6.0, 1.0, 14.0),
            puncta_level=v(4.0, 2.5, 6.0),
            rachis_level=v(0.9, 0.6, 1.2),
            cytoplasm_face=v(1.25, 1.0, 1.6),
            membrane_ratio=membrane_ratio,
            membrane_spread=v(0.5, 0.2, 0.8),
            membrane_background_face=v(0.25, 0.05, 0.6),
            membrane_oocyte_outer_face=v(0.15, 0.02, 0.5),
            membrane_rachis_face=v(0.6, 0.3, 1.0),
            membrane_grain=v(0.05, 0.0, 0.2),
            membrane_nucleus_darkness=v(0.5, 0.3, 0.7),
            membrane_spot_rate=v(8.0, 2.0, 16.0),
            blur_xy=v(1.1, 0.6, 2.0),
            blur_z=v(0.8, 0.4, 1.4),
            depth_peak=v(0.24, 0.1, 0.4),
            depth_start=v(0.42, 0.25, 0.8),
            depth_end=v(0.56, 0.3, 0.9),
            drift=v(0.15, 0.0, 0.4),
            photons_0=log_v(9.0, 4.5, 18.0),
            photons_1=log_v(12.5, 6.0, 25.0),
            gain_0=log_v(50.0, 30.0, 90.0),
            gain_1=log_v(15.0, 9.0, 27.0),
            haze_0=v(0.45, 0.25, 0.7),
            haze_1=v(0.4, 0.2, 0.65),
            haze_floor=v(0.75, 0.5, 1.0),
            black_level_0=v(0.9, 0.4, 1.5),
            black_level_1=v(1.5, 0.8, 2.3),
            read_noise=v(0.3, 0.1, 0.6),
            field_coverage=v(0.7, 0.5, 0.85),
        )

"""Reading input stacks and label volumes, and normalising intensities."""

from __future__ import annotations

from segmentation.io.labels import read_labels
from segmentation.io.normalization import (
    NormalizedStack,
    normalize_percentile,
    percentile_scaling,
)
from segmentation.io.reader import Stack, parse_channels, read_stack
from segmentation.io.voxel_size import (
    ASSUMED_Z_STEP_IN_PIXELS,
    read_voxel_size,
    voxel_size_for_distances,
)
from segmentation.parameters import parse_voxel_size

__all__ = [
    "ASSUMED_Z_STEP_IN_PIXELS",
    "NormalizedStack",
    "Stack",
    "normalize_percentile",
    "parse_channels",
    "parse_voxel_size",
    "percentile_scaling",
    "read_labels",
    "read_stack",
    "read_voxel_size",
    "voxel_size_for_distances",
]

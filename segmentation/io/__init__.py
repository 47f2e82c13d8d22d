"""Reading input stacks and label volumes, and normalising intensities."""

from __future__ import annotations

from segmentation.io.labels import read_labels
from segmentation.io.normalization import normalize_percentile
from segmentation.io.reader import Stack, parse_channels, read_stack
from segmentation.io.voxel_size import read_voxel_size

__all__ = [
    "Stack",
    "normalize_percentile",
    "parse_channels",
    "read_labels",
    "read_stack",
    "read_voxel_size",
]

"""Distance-transform watershed: over-segment a boundary probability map into super-pixels."""

from __future__ import annotations

from segmentation.watershed.distance_transform import distance_transform_watershed

__all__ = ["distance_transform_watershed"]

"""Post-processing of cell label volumes: background removal, rim filling, fragment merging,
size filters, relabelling."""

from __future__ import annotations

from segmentation.postprocess.filters import filter_by_size, remove_background
from segmentation.postprocess.fragments import merge_fragments, segment_contacts
from segmentation.postprocess.relabel import relabel_sequential
from segmentation.postprocess.rims import grow_into_foreground

__all__ = [
    "filter_by_size",
    "grow_into_foreground",
    "merge_fragments",
    "relabel_sequential",
    "remove_background",
    "segment_contacts",
]

"""Segmentation of stacks larger than memory, block by block through on-disk Zarr arrays."""

from __future__ import annotations

from segmentation.blockwise.blocks import block_shape_for_budget, fits_in_memory, in_memory_bytes
from segmentation.blockwise.lazy_stack import LazyStack, open_lazy_stack, stack_header
from segmentation.blockwise.prediction import predict_blockwise
from segmentation.blockwise.segment import segment_file_blockwise, segment_probabilities_blockwise

__all__ = [
    "LazyStack",
    "block_shape_for_budget",
    "fits_in_memory",
    "in_memory_bytes",
    "open_lazy_stack",
    "predict_blockwise",
    "segment_file_blockwise",
    "segment_probabilities_blockwise",
    "stack_header",
]

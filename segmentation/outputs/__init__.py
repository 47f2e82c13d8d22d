"""Writers of the segmentation outputs: label and boundary TIFFs or OME-Zarr, GIF preview,
cell table."""

from __future__ import annotations

from segmentation.outputs.cell_table import cell_table, touching_neighbours, write_cell_table
from segmentation.outputs.ome_zarr_output import write_ome_zarr
from segmentation.outputs.paths import (
    check_output_format,
    output_paths,
    output_stems,
    stack_stem,
)
from segmentation.outputs.preview import render_preview_frames, write_preview_gif
from segmentation.outputs.tiff import (
    write_boundaries,
    write_boundary_planes,
    write_label_planes,
    write_labels,
)

__all__ = [
    "cell_table",
    "check_output_format",
    "output_paths",
    "output_stems",
    "render_preview_frames",
    "stack_stem",
    "touching_neighbours",
    "write_boundaries",
    "write_boundary_planes",
    "write_cell_table",
    "write_label_planes",
    "write_labels",
    "write_ome_zarr",
    "write_preview_gif",
]

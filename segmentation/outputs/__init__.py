"""Writers of the segmentation outputs: label TIFF, boundary TIFF, GIF preview, cell table."""

from __future__ import annotations

from segmentation.outputs.cell_table import cell_table, touching_neighbours, write_cell_table
from segmentation.outputs.paths import output_paths, output_stems
from segmentation.outputs.preview import render_preview_frames, write_preview_gif
from segmentation.outputs.tiff import write_boundaries, write_labels

__all__ = [
    "cell_table",
    "output_paths",
    "output_stems",
    "render_preview_frames",
    "touching_neighbours",
    "write_boundaries",
    "write_cell_table",
    "write_labels",
    "write_preview_gif",
]

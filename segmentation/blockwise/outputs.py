"""Outputs of a blockwise run, written without holding a whole volume: the OME-Zarr image
(through Dask, plane by plane) or the label and boundary TIFFs (plane by plane), the cell
table (per block, merged) and the preview (from a
strided subsample)."""

from __future__ import annotations

import math
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from segmentation.blockwise.blocks import Block
from segmentation.blockwise.lazy_stack import LazyStack
from segmentation.blockwise.postprocess import BlockwiseLabels
from segmentation.blockwise.prediction import BOUNDARY
from segmentation.outputs import (
    cell_table,
    write_boundary_planes,
    write_label_planes,
    write_ome_zarr,
    write_preview_gif,
)
from segmentation.outputs.cell_table import CELL_TABLE_COLUMNS
from segmentation.outputs.ome_zarr_output import _MAX_CHUNK_XY

#: Width of the preview GIF's label panel, as ``write_preview_gif``'s default.
PREVIEW_WIDTH = 800


def write_ome_zarr_blockwise(
    path: Path,
    labels: BlockwiseLabels,
    probabilities: zarr.Array,
    voxel_size: tuple[float, float, float] | None,
) -> Path:
    """:func:`~segmentation.outputs.write_ome_zarr` of on-disk labels and probabilities,
    one chunk (a plane, at most 1024 x 1024 pixels) at a time."""
    n_y, n_x = labels.cells.shape[1:]
    chunks = (1, min(n_y, _MAX_CHUNK_XY), min(n_x, _MAX_CHUNK_XY))
    lookup = labels.lookup
    cells = da.from_zarr(labels.cells, chunks=chunks).map_blocks(
        lookup.__getitem__, dtype=lookup.dtype
    )
    boundary = da.from_zarr(probabilities, chunks=(1, *chunks))[BOUNDARY].astype(np.float32)
    return write_ome_zarr(path, cells, boundary, voxel_size)


def write_tiffs_blockwise(
    labels_path: Path,
    boundaries_path: Path,
    labels: BlockwiseLabels,
    probabilities: zarr.Array,
    voxel_size: tuple[float, float, float] | None,
) -> None:
    """:func:`~segmentation.outputs.write_labels` and
    :func:`~segmentation.outputs.write_boundaries` of on-disk labels and probabilities, one
    plane at a time."""
    shape = labels.cells.shape
    lookup = labels.lookup
    write_label_planes(
        labels_path,
        (lookup[labels.cells[z]] for z in range(shape[0])),
        shape,
        int(lookup.max()),
        voxel_size,
    )
    write_boundary_planes(
        boundaries_path,
        (probabilities[BOUNDARY, z] for z in range(shape[0])),
        shape,
        voxel_size,
    )


def _merge_rows(parts: list[dict], voxel_size: tuple[float, float, float] | None) -> dict:
    """One cell-table row from the rows of a cell's pieces in several blocks."""
    voxels = sum(part["voxels"] for part in parts)
    row: dict[str, object] = {"label": parts[0]["label"], "voxels": voxels}
    volume = float(np.prod(voxel_size)) if voxel_size is not None else None
    row["volume_um3"] = round(voxels * volume, 4) if volume is not None else None
    for name in "zyx":
        weighted = sum(part[f"centroid_{name}"] * part["voxels"] for part in parts)
        row[f"centroid_{name}"] = round(weighted / voxels, 3)
    for name in "zyx":
        row[f"bbox_{name}0"] = min(part[f"bbox_{name}0"] for part in parts)
    for name in "zyx":
        row[f"bbox_{name}1"] = max(part[f"bbox_{name}1"] for part in parts)
    for name in ("mean_ch0", "mean_ch1"):
        weighted = sum(part[name] * part["voxels"] for part in parts)
        row[name] = round(weighted / voxels, 4)
    row["neighbours"] = parts[0]["neighbours"]
    return {column: row[column] for column in CELL_TABLE_COLUMNS}


def cell_table_blockwise(
    labels: BlockwiseLabels, stack: LazyStack, blocks: list[Block]
) -> list[dict]:
    """:func:`~segmentation.outputs.cell_table` of the whole stack, block by block.

    Centroids and mean intensities are averaged from each block's rounded values (within
    0.0005 pixel and 0.00005 of the whole-stack figures).
    """
    pieces: dict[int, list[dict]] = {}
    for block in blocks:
        block_labels = labels.read(block.inner)
        if not block_labels.any():
            continue
        offset = [s.start for s in block.inner]
        for row in cell_table(block_labels, stack.read(block.inner), None, labels.neighbours):
            for axis, name in enumerate("zyx"):
                row[f"centroid_{name}"] += offset[axis]
                row[f"bbox_{name}0"] += offset[axis]
                row[f"bbox_{name}1"] += offset[axis]
            pieces.setdefault(row["label"], []).append(row)
    return [_merge_rows(pieces[label], stack.voxel_size) for label in sorted(pieces)]


def write_preview_blockwise(
    path: Path, labels: BlockwiseLabels, probabilities: zarr.Array, stack: LazyStack
) -> Path:
    """The z-sweep preview from every ``k``-th pixel in Y and X (about 800 px wide)."""
    n_z, n_y, n_x = stack.shape
    step = max(1, math.floor(n_x / PREVIEW_WIDTH))
    index = (slice(0, n_z), slice(0, n_y, step), slice(0, n_x, step))
    membrane = stack.read(index)[1]
    return write_preview_gif(
        path,
        membrane,
        labels.read(index),
        probabilities[(BOUNDARY, *index)].astype(np.float32),
    )

"""Segment a stack larger than memory: every stage block by block through on-disk Zarr
arrays, with the in-memory pipeline's result up to block-border effects of the watershed.

Stages: scan (percentiles, tissue mask) → network (:mod:`.prediction`) → watershed
(:mod:`.watershed`) → region graph (:mod:`.graph`) and the existing partition of the whole
graph → post-processing (:mod:`.postprocess`) → outputs (:mod:`.outputs`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import zarr

from segmentation.blockwise.blocks import block_grid, block_shape_for_budget, halo_voxels
from segmentation.blockwise.graph import region_graph_blockwise
from segmentation.blockwise.lazy_stack import LazyStack, open_lazy_stack
from segmentation.blockwise.outputs import (
    cell_table_blockwise,
    write_ome_zarr_blockwise,
    write_preview_blockwise,
    write_tiffs_blockwise,
)
from segmentation.blockwise.postprocess import (
    BlockwiseLabels,
    final_lookup,
    fragment_targets,
    grow_rims_blockwise,
    label_contacts,
    remove_background_cells,
    rim_halo_pixels,
)
from segmentation.blockwise.prediction import predict_blockwise
from segmentation.blockwise.statistics import scan_stack
from segmentation.blockwise.watershed import WATERSHED_HALO_PIXELS, watershed_blockwise
from segmentation.graph import (
    EdgeClassifier,
    card_edge_classifier,
    cell_neighbours,
    partition_cells,
)
from segmentation.io import voxel_size_for_distances
from segmentation.model import LoadedModel
from segmentation.outputs import check_output_format, output_paths, stack_stem, write_cell_table
from segmentation.parameters import (
    DEFAULT_MEMORY_BUDGET_GB,
    DEFAULT_OUTPUT_FORMAT,
    InferenceParameters,
    SegmentationParameters,
    check_memory_budget,
)

logger = logging.getLogger(__name__)


def segment_probabilities_blockwise(
    probabilities: zarr.Array,
    work_dir: Path,
    block_shape: tuple[int, int, int],
    parameters: SegmentationParameters | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    edge_classifier: EdgeClassifier | None = None,
) -> BlockwiseLabels:
    """The post-network chain of :func:`segmentation.pipeline.segment_from_boundaries`,
    block by block.

    Parameters
    ----------
    probabilities : zarr.Array
        (K, Z, Y, X): boundary probability, then (optionally) foreground probability.
    work_dir : Path
        Folder for the on-disk super-pixels and cell labels.
    block_shape : (int, int, int)
        Inner size of the blocks (each stage adds its own halo).
    parameters : SegmentationParameters, optional
    voxel_size : (float, float, float), optional
        (z, y, x) in µm, as for ``segment_from_boundaries``.
    edge_classifier : EdgeClassifier, optional
        The network's learned edge weights (``BoundaryPrediction.edge_classifier``).

    Returns
    -------
    BlockwiseLabels
    """
    parameters = parameters or SegmentationParameters()
    shape = tuple(int(size) for size in probabilities.shape[1:])
    timings: dict[str, float] = {}
    start = time.perf_counter()
    watershed_halo = halo_voxels(WATERSHED_HALO_PIXELS, voxel_size)
    superpixels, pieces = watershed_blockwise(
        probabilities,
        block_grid(shape, block_shape, watershed_halo),
        work_dir,
        parameters,
        voxel_size,
    )
    timings["watershed"] = time.perf_counter() - start

    start = time.perf_counter()
    blocks = block_grid(shape, block_shape)
    graph = region_graph_blockwise(superpixels, probabilities, blocks, pieces)
    node_labels = partition_cells(
        graph,
        cutoff=parameters.cutoff,
        method=parameters.method,
        foreground_threshold=parameters.foreground_threshold,
        edge_classifier=edge_classifier if parameters.edge_weights == "learned" else None,
    )
    timings["graph"] = time.perf_counter() - start

    start = time.perf_counter()
    node_labels = remove_background_cells(graph, node_labels, parameters.foreground_threshold)
    rim_halo = halo_voxels(rim_halo_pixels(parameters.rim_distance), voxel_size)
    cells = grow_rims_blockwise(
        superpixels,
        probabilities,
        node_labels[pieces],
        block_grid(shape, block_shape, rim_halo),
        work_dir,
        parameters,
        voxel_size,
    )
    sizes, first, second, area = label_contacts(cells, blocks, int(node_labels.max()) + 1)
    target = fragment_targets(sizes, first, second, area, parameters.fragment_ratio)
    lookup = final_lookup(sizes, target, parameters, voxel_size)
    neighbours = cell_neighbours(graph, lookup[node_labels])
    timings["postprocess"] = time.perf_counter() - start
    logger.info(
        "blockwise: %d super-pixels -> %d cells in %d blocks of %s (%s)",
        graph.n_nodes - 1,
        int(lookup.max()),
        len(blocks),
        block_shape,
        ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()),
    )
    return BlockwiseLabels(cells, lookup, graph, neighbours, timings)


def _write_outputs(
    out_dir: Path,
    stem: str,
    stack: LazyStack,
    probabilities: zarr.Array,
    labels: BlockwiseLabels,
    blocks: list,
    gif: bool,
    format: str,
) -> dict[str, Path]:
    """Write the volumes (OME-Zarr or TIFFs), cell table and preview under partial names,
    then rename them."""
    from segmentation.pipeline import PARTIAL_SUFFIX, _remove_output, _replace_output

    paths = output_paths(out_dir, stem, format)
    if not gif:
        paths.pop("preview")
    partial = {kind: path.with_name(path.name + PARTIAL_SUFFIX) for kind, path in paths.items()}
    try:
        if format == "ome-zarr":
            write_ome_zarr_blockwise(partial["ome_zarr"], labels, probabilities, stack.voxel_size)
        else:
            write_tiffs_blockwise(
                partial["labels"], partial["boundaries"], labels, probabilities, stack.voxel_size
            )
        write_cell_table(partial["cells"], cell_table_blockwise(labels, stack, blocks))
        if gif:
            write_preview_blockwise(partial["preview"], labels, probabilities, stack)
        for kind, path in paths.items():
            _replace_output(partial[kind], path)
    finally:
        for path in partial.values():
            _remove_output(path)
    return paths


def segment_file_blockwise(
    path: str | Path,
    out_dir: str | Path,
    model: LoadedModel,
    *,
    segmentation_parameters: SegmentationParameters | None = None,
    inference_parameters: InferenceParameters | None = None,
    channels: tuple[int, int] | None = None,
    gif: bool = True,
    progress=None,
    stem: str | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    format: str = DEFAULT_OUTPUT_FORMAT,
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
    block_shape: tuple[int, int, int] | None = None,
    work_dir: str | Path | None = None,
):
    """Segment a TIFF or OME-Zarr stack block by block, within ``memory_budget_gb``.

    The arguments and outputs are those of :func:`segmentation.pipeline.segment_file`;
    the TIFFs or the OME-Zarr are written one plane at a time.

    Parameters
    ----------
    memory_budget_gb : float
        Peak memory the run aims to stay under; sets the block shape
        (:func:`~segmentation.blockwise.blocks.block_shape_for_budget`).
    block_shape : (int, int, int), optional
        Inner block size (Z, Y, X) instead of the budget's; Y and X multiples of 4.
    work_dir : path, optional
        Folder for the on-disk intermediate arrays (``probabilities.zarr``,
        ``superpixels.zarr``, ``cells.zarr``), kept after the run; by default a temporary
        folder in ``out_dir``, deleted after it.

    Returns
    -------
    segmentation.pipeline.FileResult

    Raises
    ------
    segmentation.errors.InputError
        For a bad budget or format, and as ``segment_file``.
    """
    from segmentation.pipeline import FileResult, check_voxel_size_for_volumes

    path, out_dir = Path(path), Path(out_dir)
    memory_budget_gb = check_memory_budget(memory_budget_gb)
    format = check_output_format(format)
    segmentation_parameters = segmentation_parameters or SegmentationParameters()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    stack = open_lazy_stack(path, channels=channels, voxel_size=voxel_size)
    check_voxel_size_for_volumes(stack.voxel_size, segmentation_parameters, path.name)
    distances = voxel_size_for_distances(stack.voxel_size)
    halo = halo_voxels(
        max(WATERSHED_HALO_PIXELS, rim_halo_pixels(segmentation_parameters.rim_distance)),
        distances,
    )
    block_shape = block_shape or block_shape_for_budget(stack.shape, memory_budget_gb, halo)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = (
        Path(work_dir)
        if work_dir is not None
        else Path(tempfile.mkdtemp(prefix=".blockwise-", dir=out_dir))
    )
    work.mkdir(parents=True, exist_ok=True)
    try:
        columns = block_grid(stack.shape, (stack.shape[0], *block_shape[1:]))
        statistics = scan_stack(
            stack, columns, mask_tissue=model.card.foreground_channel is not None
        )
        timings["read"] = time.perf_counter() - start
        start = time.perf_counter()
        probabilities = predict_blockwise(
            stack, model, statistics, work, block_shape[1:], inference_parameters, progress
        )
        timings["network"] = time.perf_counter() - start
        labels = segment_probabilities_blockwise(
            probabilities,
            work,
            block_shape,
            segmentation_parameters,
            distances,
            edge_classifier=card_edge_classifier(model.card),
        )
        timings.update(labels.timings)
        start = time.perf_counter()
        paths = _write_outputs(
            out_dir,
            stem or stack_stem(path),
            stack,
            probabilities,
            labels,
            columns,
            gif,
            format,
        )
        timings["outputs"] = time.perf_counter() - start
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    logger.info("%s: %d cells blockwise in blocks of %s", path.name, labels.n_cells, block_shape)
    return FileResult(path, paths, labels.n_cells, timings, str(model.device), stack.warnings)

"""The segmentation pipeline: one function per stage boundary, used by the CLI and the web app.

Data flow: ``read_stack`` → ``predict`` (network) → ``segment_from_boundaries`` (watershed,
region graph, partition, post-processing) → ``write_outputs``. ``segment_from_boundaries``
needs no network, so re-tuning the post-network parameters reuses a cached
:class:`BoundaryPrediction`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from segmentation.blockwise import fits_in_memory, segment_file_blockwise, stack_header
from segmentation.errors import InputError
from segmentation.graph import (
    EdgeClassifier,
    RegionGraph,
    card_edge_classifier,
    cell_neighbours,
    partition_cells,
    project_node_labels,
    region_graph,
)
from segmentation.inference import predict_probabilities, tissue_mask
from segmentation.inference.anisotropy import network_planes, resample_planes
from segmentation.inference.engines import (
    engine_precision,
    load_engine,
    release_engine_memory,
    resolve_engine,
)
from segmentation.io import (
    NormalizedStack,
    Stack,
    percentile_scaling,
    read_stack,
    voxel_size_for_distances,
)
from segmentation.model import LoadedModel
from segmentation.outputs import (
    cell_table,
    check_output_format,
    output_paths,
    stack_stem,
    write_boundaries,
    write_cell_table,
    write_labels,
    write_ome_zarr,
    write_preview_gif,
)
from segmentation.parameters import (
    DEFAULT_MAX_VOXELS,
    DEFAULT_MEMORY_BUDGET_GB,
    DEFAULT_OUTPUT_FORMAT,
    InferenceParameters,
    SegmentationParameters,
    check_memory_budget,
)
from segmentation.postprocess import (
    filter_by_size,
    grow_into_foreground,
    merge_fragments,
    relabel_sequential,
    remove_background,
)
from segmentation.watershed import distance_transform_watershed

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
#: Suffix of an output while it is being written.
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class BoundaryPrediction:
    """What the network predicts for one stack.

    Attributes
    ----------
    boundary_probability : ndarray of float32, shape (Z, Y, X)
        Probability that a voxel lies on a cell boundary.
    foreground_probability : ndarray of float32, shape (Z, Y, X), or None
        Probability that a voxel lies inside the gonad (any cell); None for models that
        predict boundaries only.
    device : str
        Device the network ran on.
    seconds : float
        Wall time of the prediction.
    edge_classifier : EdgeClassifier, optional
        The network's learned region-graph edge weights (from its model card), used with
        ``edge_weights="learned"``; None weights edges by their mean boundary.
    """

    boundary_probability: np.ndarray
    foreground_probability: np.ndarray | None
    device: str = "cpu"
    seconds: float = 0.0
    edge_classifier: EdgeClassifier | None = None


@dataclass(frozen=True)
class SegmentationResult:
    """The post-network stages' result for one stack.

    Attributes
    ----------
    labels : ndarray, shape (Z, Y, X)
        One label per cell, 0 = background; uint16, or uint32 beyond 65,535 cells.
    superpixels : ndarray, shape (Z, Y, X)
        The watershed over-segmentation.
    graph : RegionGraph
        Region adjacency graph of the super-pixels.
    neighbours : dict of int to list of int
        Touching neighbours of each final cell.
    timings : dict of str to float
        Seconds per stage.
    """

    labels: np.ndarray
    superpixels: np.ndarray
    graph: RegionGraph
    neighbours: dict[int, list[int]]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return int(self.labels.max())


def predict(
    stack: Stack,
    model: LoadedModel,
    parameters: InferenceParameters | None = None,
    progress: ProgressCallback | None = None,
) -> BoundaryPrediction:
    """Run the network over a stack in overlapping windows.

    Parameters
    ----------
    stack : Stack
        The stack as read by :func:`segmentation.io.read_stack`.
    model : LoadedModel
        Network, its model card and the device it lives on.
    parameters : InferenceParameters, optional
        Window size, overlap, batch size, autocast, engine, test-time flip, Z resampling.
        Defaults from ``segmentation.parameters``; an engine other than PyTorch is converted
        on first use (cached, :mod:`segmentation.inference.engines`).
    progress : callable(done, total), optional
        Called after each batch of windows.

    Returns
    -------
    BoundaryPrediction
        Probabilities on the stack's own grid. With ``resample_z`` a stack whose voxel size
        gives a Z step outside the model card's ``z_step_range`` is resampled along Z for
        the network (:mod:`segmentation.inference.anisotropy`) and the probabilities are
        interpolated back.
    """
    parameters = parameters or InferenceParameters()
    start = time.perf_counter()
    # normalised window by window as the network reads it (no float32 copy of the stack)
    image: np.ndarray | NormalizedStack = NormalizedStack(
        stack.image, *percentile_scaling(stack.image)
    )
    planes = image.shape[1]
    if parameters.resample_z:
        shown = network_planes(planes, stack.voxel_size, model.card.z_step_range)
        if shown != planes:
            logger.info(
                "network sees the %d planes resampled to %d (Z step %.2f XY pixels; the "
                "model was trained on %g-%g)",
                planes,
                shown,
                stack.voxel_size[0] / stack.voxel_size[2],
                *model.card.z_step_range,
            )
            image = resample_planes(np.asarray(image), shown)
    card = model.card
    # the tissue mask is the same in every plane: windows that hold none of it are skipped
    mask = tissue_mask(stack.image) if card.foreground_channel is not None else None
    needed = None
    if mask is not None:
        needed = np.broadcast_to(mask[:1], (image.shape[1], *mask.shape[1:]))
    engine = resolve_engine(parameters.engine, model.device, model.network)
    precision = engine_precision(engine, parameters.autocast, model.device)
    network = load_engine(model.network, engine, precision)
    try:
        probabilities = predict_probabilities(
            network,
            image,
            patch=parameters.patch,
            overlap=parameters.overlap,
            batch_size=parameters.batch_size,
            device=model.device,
            autocast=parameters.autocast,
            progress=progress,
            multiple_of=getattr(model.network, "downsampling_factor", 1),
            test_time_flip=parameters.test_time_flip,
            needed=needed,
        )
    finally:
        # the engine's activations (about 1 GB for a 32x288x288 window in float32) are not
        # kept while the watershed runs or the web app waits for the next stack
        release_engine_memory(network)
    probabilities = resample_planes(probabilities, planes)
    boundary = probabilities[card.boundary_channel]
    foreground = (
        probabilities[card.foreground_channel] if card.foreground_channel is not None else None
    )
    if foreground is not None and mask is not None:
        foreground *= mask
    seconds = time.perf_counter() - start
    logger.info("network: %.1f s on %s (%s, %s)", seconds, model.device, engine, precision)
    return BoundaryPrediction(
        boundary,
        foreground,
        device=str(model.device),
        seconds=seconds,
        edge_classifier=card_edge_classifier(model.card),
    )


def segment_from_boundaries(
    prediction: BoundaryPrediction,
    parameters: SegmentationParameters | None = None,
    voxel_size: tuple[float, float, float] | None = None,
) -> SegmentationResult:
    """Turn boundary (and foreground) probabilities into one label per cell.

    Runs the distance-transform watershed, then :func:`cells_from_superpixels`.

    Parameters
    ----------
    prediction : BoundaryPrediction
        Network output (or oracle boundaries).
    parameters : SegmentationParameters, optional
        Threshold, footprint, cutoff, method, size limits.
    voxel_size : tuple of float, optional
        (z, y, x) in µm; makes the distance transform anisotropic and enables µm³ limits.
        None treats voxels as isotropic; for a stack whose voxel size is unknown pass
        :func:`segmentation.io.voxel_size_for_distances` of it instead.

    Returns
    -------
    SegmentationResult
    """
    parameters = parameters or SegmentationParameters()
    start = time.perf_counter()
    superpixels = superpixels_from_boundaries(prediction, parameters, voxel_size)
    seconds = time.perf_counter() - start
    result = cells_from_superpixels(superpixels, prediction, parameters, voxel_size)
    return replace(result, timings={"watershed": seconds, **result.timings})


#: The parameters :func:`superpixels_from_boundaries` reads; the others only matter later.
WATERSHED_PARAMETERS = (
    "threshold",
    "footprint",
    "foreground_threshold",
    "foreground_seed_distance",
)


def superpixels_from_boundaries(
    prediction: BoundaryPrediction,
    parameters: SegmentationParameters | None = None,
    voxel_size: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """The distance-transform watershed's super-pixels (uint32) for ``prediction``.

    Uses only the parameters named in :data:`WATERSHED_PARAMETERS`, so a caller may keep
    the result and re-run :func:`cells_from_superpixels` when only the others change (the
    web app does, for a cutoff slider).
    """
    parameters = parameters or SegmentationParameters()
    return distance_transform_watershed(
        prediction.boundary_probability,
        threshold=parameters.threshold,
        footprint=parameters.footprint,
        voxel_size=voxel_size,
        foreground_probability=prediction.foreground_probability,
        foreground_threshold=parameters.foreground_threshold,
        foreground_seed_distance=parameters.foreground_seed_distance,
    )


def cells_from_superpixels(
    superpixels: np.ndarray,
    prediction: BoundaryPrediction,
    parameters: SegmentationParameters | None = None,
    voxel_size: tuple[float, float, float] | None = None,
) -> SegmentationResult:
    """Merge super-pixels into cells and post-process them.

    Builds the region adjacency graph; with a foreground probability, super-pixels whose
    mean foreground is below ``foreground_threshold`` are background and never merge with
    anything (:func:`~segmentation.graph.separate_background`). The rest is partitioned by
    ``method`` at ``cutoff``; then background segments are removed, cells take back the
    foreground rims of background super-pixels (``rim_distance``), fragments of large cells
    merged into them (``fragment_ratio``), size limits applied and
    labels made consecutive.

    Parameters
    ----------
    superpixels : ndarray of int, shape (Z, Y, X)
        Over-segmentation, e.g. from :func:`~segmentation.watershed.distance_transform_watershed`.
    prediction : BoundaryPrediction
        Network output (or oracle boundaries).
    parameters : SegmentationParameters, optional
        Cutoff, method, foreground threshold, size limits (threshold and footprint are not
        used here).
    voxel_size : tuple of float, optional
        (z, y, x) in µm, for µm³ size limits.

    Returns
    -------
    SegmentationResult
    """
    parameters = parameters or SegmentationParameters()
    timings: dict[str, float] = {}

    start = time.perf_counter()
    graph = region_graph(
        superpixels, prediction.boundary_probability, prediction.foreground_probability
    )
    node_labels = partition_cells(
        graph,
        cutoff=parameters.cutoff,
        method=parameters.method,
        foreground_threshold=parameters.foreground_threshold,
        edge_classifier=prediction.edge_classifier
        if parameters.edge_weights == "learned"
        else None,
    )
    labels = project_node_labels(superpixels, node_labels)
    timings["graph"] = time.perf_counter() - start

    start = time.perf_counter()
    if prediction.foreground_probability is not None:
        labels = remove_background(
            labels, prediction.foreground_probability, threshold=parameters.foreground_threshold
        )
        labels = grow_into_foreground(
            labels,
            prediction.boundary_probability,
            prediction.foreground_probability,
            max_distance=parameters.rim_distance,
            foreground_threshold=parameters.foreground_threshold,
            voxel_size=voxel_size,
        )
    labels = merge_fragments(labels, max_size_ratio=parameters.fragment_ratio)
    labels = filter_by_size(
        labels,
        min_size=parameters.min_size,
        max_size=parameters.max_size,
        voxel_size=voxel_size,
        min_volume_um3=parameters.min_volume_um3,
        max_volume_um3=parameters.max_volume_um3,
    )
    labels = relabel_sequential(labels)
    neighbours = _neighbours_after_postprocess(graph, superpixels, labels)
    timings["postprocess"] = time.perf_counter() - start
    logger.info(
        "%d super-pixels -> %d cells (%s)",
        graph.n_nodes,
        int(labels.max()),
        ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()),
    )
    return SegmentationResult(labels, superpixels, graph, neighbours, timings)


def _neighbours_after_postprocess(
    graph: RegionGraph, superpixels: np.ndarray, labels: np.ndarray
) -> dict[int, list[int]]:
    """Touching neighbours of the final cells, from the super-pixel graph."""
    final_label_of_node = np.zeros(graph.n_nodes, dtype=np.int64)
    # Every super-pixel lies inside exactly one final cell (or background), so sampling one
    # voxel per super-pixel gives its final label.
    flat_superpixels = superpixels.ravel()
    first_voxel = np.full(graph.n_nodes, -1, dtype=np.int64)
    order = np.arange(flat_superpixels.size - 1, -1, -1)
    first_voxel[flat_superpixels[order]] = order
    present = first_voxel >= 0
    final_label_of_node[present] = labels.ravel()[first_voxel[present]]
    return cell_neighbours(graph, final_label_of_node)


@dataclass(frozen=True)
class FileResult:
    """Everything the CLI and the web app report about one processed file."""

    source: Path
    paths: dict[str, Path]
    n_cells: int
    timings: dict[str, float]
    device: str
    warnings: tuple[str, ...] = ()


def check_voxel_size_for_volumes(
    voxel_size: tuple[float, float, float] | None,
    parameters: SegmentationParameters,
    source_name: str,
) -> None:
    """Refuse µm³ volume limits for a stack whose voxel size is unknown.

    Raises
    ------
    segmentation.errors.InputError
        When ``voxel_size`` is None and ``parameters`` has a µm³ limit.
    """
    if voxel_size is not None:
        return
    asked = [
        name
        for name in ("min_volume_um3", "max_volume_um3")
        if getattr(parameters, name) is not None
    ]
    if asked:
        verb = "need" if len(asked) > 1 else "needs"
        raise InputError(
            f"{' and '.join(asked)} {verb} the voxel size, but {source_name} records none; "
            "give it (voxel size Z,Y,X in µm), save the stack with it (e.g. ImageJ "
            "Properties) or use min_size/max_size in voxels"
        )


def write_outputs(
    out_dir: str | Path,
    stem: str,
    stack: Stack,
    prediction: BoundaryPrediction,
    result: SegmentationResult,
    *,
    gif: bool = True,
    format: str = DEFAULT_OUTPUT_FORMAT,
    boundaries_file: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``<stem>_labels.tif``, ``_boundaries.tif``, ``_preview.gif`` and ``_cells.csv``.

    With ``format="ome-zarr"`` the labels and boundaries go into one ``<stem>.ome.zarr``
    folder instead (:func:`~segmentation.outputs.write_ome_zarr`). Each output is written
    under its name plus :data:`PARTIAL_SUFFIX` and renamed when all are complete, so a
    half-written output never carries an output's name (a previous ``.ome.zarr`` is
    removed just before its replacement is renamed).

    ``boundaries_file``, for TIFF output, is a boundary TIFF written earlier from this very
    ``prediction`` and voxel size (a re-segmentation with other parameters): it is
    hard-linked (or, across file systems, copied) instead of encoded again, which is most of
    the time the outputs take. If it is gone, the boundaries are written as usual.

    Returns
    -------
    dict of str to Path
        Keys ``labels`` and ``boundaries`` (``ome_zarr`` for OME-Zarr), ``cells`` and, when
        ``gif``, ``preview`` (:func:`~segmentation.outputs.output_paths`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_dir, stem, format)
    if not gif:
        paths.pop("preview")
    partial = {kind: path.with_name(path.name + PARTIAL_SUFFIX) for kind, path in paths.items()}
    try:
        if format == "ome-zarr":
            write_ome_zarr(
                partial["ome_zarr"],
                result.labels,
                prediction.boundary_probability,
                stack.voxel_size,
            )
        else:
            write_labels(partial["labels"], result.labels, stack.voxel_size)
            if boundaries_file is None or not _link_or_copy(
                Path(boundaries_file), partial["boundaries"]
            ):
                write_boundaries(
                    partial["boundaries"], prediction.boundary_probability, stack.voxel_size
                )
        rows = cell_table(
            result.labels, stack.image, stack.voxel_size, neighbours=result.neighbours
        )
        write_cell_table(partial["cells"], rows)
        if gif:
            write_preview_gif(
                partial["preview"], stack.image[1], result.labels, prediction.boundary_probability
            )
        for kind, path in paths.items():
            _replace_output(partial[kind], path)
    finally:
        for path in partial.values():
            _remove_output(path)
    return paths


def _link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link ``source`` as ``target`` (copy it where links fail); False if it is gone."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            shutil.copyfile(source, target)
        except FileNotFoundError:
            return False
    return True


def _remove_output(path: Path) -> None:
    """Delete an output file, or folder (an OME-Zarr), if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _replace_output(source: Path, target: Path) -> None:
    """Rename a written output to its name; a folder replaces a previous one there."""
    if source.is_dir():
        _remove_output(target)
    os.replace(source, target)


def segment_file(
    path: str | Path,
    out_dir: str | Path,
    model: LoadedModel,
    *,
    segmentation_parameters: SegmentationParameters | None = None,
    inference_parameters: InferenceParameters | None = None,
    channels: tuple[int, int] | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    gif: bool = True,
    progress: ProgressCallback | None = None,
    stem: str | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    format: str = DEFAULT_OUTPUT_FORMAT,
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
    blockwise: bool = False,
) -> FileResult:
    """Read one TIFF, ND2 or OME-Zarr stack, segment it and write its outputs into ``out_dir``.

    A stack whose in-memory run would need more than ``memory_budget_gb``
    (:func:`segmentation.blockwise.fits_in_memory`), and any stack with ``blockwise``, is
    segmented block by block instead (:func:`segmentation.blockwise.segment_file_blockwise`:
    TIFF or OME-Zarr input, the same outputs written plane by plane; ``max_voxels`` does not
    apply).

    The outputs are named ``<stem>_labels.tif`` etc. (``<stem>.ome.zarr`` for the labels and
    boundaries with ``format="ome-zarr"``), ``stem`` being the file's name without its
    extension (:func:`segmentation.outputs.stack_stem`) unless given (see
    :func:`segmentation.outputs.output_stems` for several stacks whose names clash).
    ``voxel_size`` ((z, y, x) in µm) replaces the file's; without either, distances assume
    the usual germline Z step (:func:`segmentation.io.voxel_size_for_distances`) and µm³
    size limits are refused.

    Raises
    ------
    segmentation.errors.InputError
        When the file cannot be read as a stack or ``format`` is not one of
        :data:`segmentation.parameters.OUTPUT_FORMATS`; the message is one line for the user.
    """
    path = Path(path)
    check_output_format(format)
    memory_budget_gb = check_memory_budget(memory_budget_gb)
    header = stack_header(path, channels=channels, voxel_size=voxel_size)
    if blockwise or not fits_in_memory(header.image.shape[1:], memory_budget_gb):
        return segment_file_blockwise(
            path,
            out_dir,
            model,
            segmentation_parameters=segmentation_parameters,
            inference_parameters=inference_parameters,
            channels=channels,
            gif=gif,
            progress=progress,
            stem=stem,
            voxel_size=voxel_size,
            format=format,
            memory_budget_gb=memory_budget_gb,
        )
    timings: dict[str, float] = {}
    start = time.perf_counter()
    stack = read_stack(path, channels=channels, max_voxels=max_voxels, voxel_size=voxel_size)
    check_voxel_size_for_volumes(
        stack.voxel_size, segmentation_parameters or SegmentationParameters(), path.name
    )
    timings["read"] = time.perf_counter() - start
    prediction = predict(stack, model, inference_parameters, progress=progress)
    timings["network"] = prediction.seconds
    result = segment_from_boundaries(
        prediction, segmentation_parameters, voxel_size_for_distances(stack.voxel_size)
    )
    timings.update(result.timings)
    start = time.perf_counter()
    paths = write_outputs(
        out_dir, stem or stack_stem(path), stack, prediction, result, gif=gif, format=format
    )
    timings["outputs"] = time.perf_counter() - start
    return FileResult(path, paths, result.n_cells, timings, prediction.device, stack.warnings)

"""Blockwise segmentation of stacks larger than memory (``segmentation.blockwise``).

A phantom split into 2 x 2 x 2 blocks must give the in-memory pipeline's cells (oracle
probabilities, so that the test is fast); the network's on-disk prediction must equal the
in-memory one; the lazy reader must read blocks only; and the CLI must run blockwise.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import tifffile
import torch
import zarr
from test_oracle import oracle_probabilities

from segmentation.blockwise import (
    block_shape_for_budget,
    fits_in_memory,
    open_lazy_stack,
    segment_file_blockwise,
    segment_probabilities_blockwise,
)
from segmentation.blockwise.blocks import block_grid
from segmentation.blockwise.statistics import scan_stack
from segmentation.blockwise.storage import create_array
from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.evaluation import match_instances
from segmentation.inference import tissue_mask
from segmentation.io import normalize_percentile, read_stack
from segmentation.model import ModelCard, build_network, save_checkpoint
from segmentation.outputs import write_label_planes, write_labels
from segmentation.parameters import InferenceParameters, check_memory_budget
from segmentation.pipeline import BoundaryPrediction, predict, segment_from_boundaries
from segmentation.synthetic import make_phantom, write_phantom

SHAPE = (24, 256, 256)
BLOCK = (12, 128, 128)
PATCH = (8, 64, 64)


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    """In-memory and blockwise labels of one oracle phantom (float16 probabilities, as stored)."""
    phantom = make_phantom(SHAPE, 3, variation=0.0)
    boundary, foreground = oracle_probabilities(phantom.labels, phantom.voxel_size, 3)
    boundary = boundary.astype(np.float16)
    foreground = foreground.astype(np.float16)
    work = tmp_path_factory.mktemp("blockwise")
    probabilities = create_array(work / "probabilities.zarr", (2, *SHAPE), np.float16)
    probabilities[0], probabilities[1] = boundary, foreground
    in_memory = segment_from_boundaries(
        BoundaryPrediction(boundary.astype(np.float32), foreground.astype(np.float32)),
        None,
        phantom.voxel_size,
    ).labels
    result = segment_probabilities_blockwise(probabilities, work, BLOCK, None, phantom.voxel_size)
    blockwise = result.read(tuple(slice(0, n) for n in SHAPE))
    return phantom, in_memory, blockwise


def test_blockwise_labels_match_the_in_memory_result(oracle_run):
    _, in_memory, blockwise = oracle_run
    assert len(block_grid(SHAPE, BLOCK)) == 8
    assert in_memory.max() > 50
    match = match_instances(in_memory, blockwise, 0.9)
    assert match.f1 >= 0.98, match.counts()


def test_a_cell_crossing_block_borders_gets_one_label(oracle_run):
    phantom, in_memory, blockwise = oracle_run
    crossing = 0
    for cell in np.unique(in_memory[in_memory > 0]):
        inside = in_memory == cell
        zs, ys, xs = (np.nonzero(inside.any(axis=axes))[0] for axes in ((1, 2), (0, 2), (0, 1)))
        if not (zs[0] < BLOCK[0] <= zs[-1] and ys[0] < BLOCK[1] <= ys[-1]):
            continue
        crossing += 1
        labels, counts = np.unique(blockwise[inside], return_counts=True)
        assert labels[counts.argmax()] > 0
        assert counts.max() >= 0.95 * inside.sum(), (cell, labels, counts)
    assert crossing >= 3


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A randomly initialised small UNet3D (foreground everywhere) with its model card."""
    torch.manual_seed(0)
    card = ModelCard(name="tiny-random", f_maps=4, num_levels=2)
    network = build_network(card)
    with torch.no_grad():
        network.final_conv.bias[card.foreground_channel] = 4.0
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt", network, card, 0)


@pytest.fixture(scope="module")
def phantom_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    image, _ = write_phantom(out, shape=(12, 200, 168), seed=1)
    return image


def test_on_disk_prediction_matches_the_in_memory_one(tmp_path, tiny_weights, phantom_path):
    from segmentation.model import load_model

    model = load_model(tiny_weights, device="cpu")
    parameters = InferenceParameters(patch=PATCH, autocast="none", engine="torch")
    work = tmp_path / "work"
    result = segment_file_blockwise(
        phantom_path,
        tmp_path / "out",
        model,
        inference_parameters=parameters,
        block_shape=(12, 64, 64),
        work_dir=work,
        gif=False,
    )
    stored = zarr.open_array(str(work / "probabilities.zarr"), mode="r")
    assert stored.dtype == np.float16 and stored.shape == (2, 12, 200, 168)
    reference = predict(read_stack(phantom_path), model, parameters)
    np.testing.assert_allclose(stored[0], reference.boundary_probability, atol=5e-4)
    np.testing.assert_allclose(stored[1], reference.foreground_probability, atol=5e-4)
    # the default format, as segment_file's: TIFFs
    assert set(result.paths) == {"labels", "boundaries", "cells"}
    assert tifffile.imread(result.paths["labels"]).shape == (12, 200, 168)
    assert result.timings.keys() >= {"read", "network", "watershed", "graph", "postprocess"}


def test_lazy_reader_reads_blocks_only(phantom_path):
    stack = open_lazy_stack(phantom_path)
    assert isinstance(stack.data, zarr.Array)
    requested = []

    class Recording:
        shape, dtype = stack.data.shape, stack.data.dtype

        def __getitem__(self, index):
            requested.append(index)
            return stack.data[index]

    recorded = dataclasses.replace(stack, data=Recording())
    blocks = block_grid(stack.shape, (12, 64, 64))
    statistics = scan_stack(recorded, blocks, mask_tissue=True)
    assert len(requested) == 2 * len(blocks) > 2
    for index in requested:
        y, x = index[2], index[3]
        assert y.stop - y.start <= 64 and x.stop - x.start <= 64
    image = read_stack(phantom_path).image
    normalised = normalize_percentile(image)
    np.testing.assert_array_equal(statistics.normalise(image), normalised)
    expected = tissue_mask(image)
    if expected is None:
        assert statistics.tissue is None
    else:
        np.testing.assert_array_equal(statistics.tissue, expected[0])


def test_tissue_mask_gathered_blockwise_equals_the_whole_stacks(tmp_path):
    image_path, _ = write_phantom(tmp_path, shape=(8, 512, 512), seed=0)
    stack = open_lazy_stack(image_path)
    statistics = scan_stack(stack, block_grid(stack.shape, (8, 192, 256)), mask_tissue=True)
    expected = tissue_mask(read_stack(image_path).image)
    assert expected is not None and statistics.tissue is not None
    np.testing.assert_array_equal(statistics.tissue, expected[0])


def test_cli_blockwise_end_to_end(tmp_path, tiny_weights, phantom_path, capsys):
    out = tmp_path / "out"
    common = [
        "segment",
        str(phantom_path),
        "--out",
        str(out),
        "--weights",
        str(tiny_weights),
        "--patch",
        ",".join(map(str, PATCH)),
        "--min-size",
        "1",
        "--blockwise",
    ]
    assert main([*common, "--format", "ome-zarr"]) == 0
    labels = zarr.open_group(str(out / "image.ome.zarr"), mode="r")["labels/cells/s0"]
    assert labels.shape == (12, 200, 168) and labels[:].max() > 0
    assert (out / "image_cells.csv").read_text().startswith("label,voxels")
    assert (out / "image_preview.gif").is_file()
    assert not list(out.glob(".blockwise-*")) and not list(out.glob("*.partial"))
    assert main([*common, "--format", "tiff"]) == 0
    tiff_labels = tifffile.imread(out / "image_labels.tif")
    np.testing.assert_array_equal(tiff_labels, labels[:])
    boundaries = zarr.open_group(str(out / "image.ome.zarr"), mode="r")["s0"][:]
    np.testing.assert_array_equal(tifffile.imread(out / "image_boundaries.tif"), boundaries)
    assert not list(out.glob(".blockwise-*")) and not list(out.glob("*.partial"))


def test_label_planes_are_written_as_the_whole_volume(tmp_path):
    rng = np.random.default_rng(0)
    for largest in (300, 70_000):
        labels = rng.integers(0, largest + 1, size=(3, 20, 16)).astype(np.uint32)
        labels.flat[0] = largest
        write_labels(tmp_path / "whole.tif", labels, (0.5, 0.2, 0.2))
        write_label_planes(
            tmp_path / "planes.tif", iter(labels), labels.shape, largest, (0.5, 0.2, 0.2)
        )
        whole = tifffile.TiffFile(tmp_path / "whole.tif")
        planes = tifffile.TiffFile(tmp_path / "planes.tif")
        np.testing.assert_array_equal(planes.asarray(), whole.asarray())
        assert planes.series[0].dtype == whole.series[0].dtype
        assert planes.imagej_metadata == whole.imagej_metadata
        uuid = re.compile(r"urn:uuid:[0-9a-f-]+")
        assert uuid.sub("", planes.ome_metadata or "") == uuid.sub("", whole.ome_metadata or "")
    with pytest.raises(ValueError, match="planes given"):
        write_label_planes(tmp_path / "short.tif", iter(labels[:2]), labels.shape, largest)


@pytest.mark.parametrize("value", ["0", "nan", "1e9", "-4"])
def test_bad_memory_budget_is_one_line(tmp_path, phantom_path, value, capsys):
    code = main(["segment", str(phantom_path), "--out", str(tmp_path), "--memory-budget", value])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("error: memory budget must be")
    with pytest.raises(InputError, match="memory budget"):
        check_memory_budget(float(value))


def test_block_shape_follows_the_budget():
    large, standard = (25, 2048, 2048), (25, 1024, 1024)
    assert fits_in_memory(standard, 4.0) and not fits_in_memory(large, 4.0)
    halo = (8, 48, 48)
    shape = block_shape_for_budget(large, 4.0, halo)
    read = [min(n, b + 2 * h) for n, b, h in zip(large, shape, halo, strict=True)]
    assert shape[0] == 25 and math.prod(read) * 64 <= 3 * 1024**3
    assert len(block_grid(large, shape)) == 4
    assert len(block_grid(large, block_shape_for_budget(large, 2.0, halo))) > 4

"""File names of one stack's outputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from segmentation.errors import InputError
from segmentation.parameters import DEFAULT_OUTPUT_FORMAT, OUTPUT_FORMATS, check_choice


def check_output_format(format: object) -> str:
    """``format`` if it is one of :data:`~segmentation.parameters.OUTPUT_FORMATS`.

    Raises
    ------
    segmentation.errors.InputError
        For any other value, listing the formats.
    """
    return check_choice("format", format, OUTPUT_FORMATS)


def output_paths(
    out_dir: str | Path, stem: str, format: str = DEFAULT_OUTPUT_FORMAT
) -> dict[str, Path]:
    """Paths of the outputs of the stack named ``stem`` in ``out_dir``.

    Returns
    -------
    dict
        For ``format`` ``"tiff"``: ``labels``, ``boundaries``, ``preview`` and ``cells``
        mapped to ``<stem>_labels.tif``, ``<stem>_boundaries.tif``, ``<stem>_preview.gif``
        and ``<stem>_cells.csv`` in ``out_dir``. For ``"ome-zarr"``: ``ome_zarr``
        (``<stem>.ome.zarr``, labels and boundaries together), ``preview`` and ``cells``.

    Raises
    ------
    segmentation.errors.InputError
        For an unknown ``format``.
    """
    out_dir = Path(out_dir)
    if check_output_format(format) == "ome-zarr":
        volumes = {"ome_zarr": out_dir / f"{stem}.ome.zarr"}
    else:
        volumes = {
            "labels": out_dir / f"{stem}_labels.tif",
            "boundaries": out_dir / f"{stem}_boundaries.tif",
        }
    return {
        **volumes,
        "preview": out_dir / f"{stem}_preview.gif",
        "cells": out_dir / f"{stem}_cells.csv",
    }


def stack_stem(path: str | Path) -> str:
    """A stack's name without its suffix; ``a.ome.zarr`` gives ``a`` (not ``a.ome``)."""
    path = Path(path)
    stem = path.stem
    if path.suffix.lower() == ".zarr" and stem.lower().endswith(".ome"):
        return stem[: -len(".ome")]
    return stem


def output_stems(inputs: Sequence[str | Path]) -> list[str]:
    """Output stems of several input stacks, distinct so that no outputs overwrite others.

    Each stack's stem is its file name without the extension (:func:`stack_stem`). Inputs
    that share a stem (``a/stack.tif`` and ``b/stack.tif``) are named by their path below the
    folder the clashing inputs have in common, joined with ``_`` (``a_stack`` and
    ``b_stack``).

    Parameters
    ----------
    inputs : sequence of path
        Input files, each at most once.

    Returns
    -------
    list of str
        One stem per input, in order, no two equal.

    Raises
    ------
    segmentation.errors.InputError
        When the same file is given twice.
    """
    paths = [Path(path) for path in inputs]
    resolved = [path.resolve() for path in paths]
    seen: dict[Path, Path] = {}
    for path, absolute in zip(paths, resolved, strict=True):
        if absolute in seen:
            raise InputError(
                f"{path} is given twice (as {seen[absolute]} too): list each stack once"
            )
        seen[absolute] = path
    names = [stack_stem(path) for path in paths]
    stems = list(names)
    for name in sorted(set(names)):
        clashing = [index for index, other in enumerate(names) if other == name]
        if len(clashing) < 2:
            continue
        common = Path(os.path.commonpath([resolved[index].parent for index in clashing]))
        for index in clashing:
            relative = resolved[index].relative_to(common)
            stems[index] = "_".join((*relative.parent.parts, stack_stem(relative)))
    if len(set(stems)) < len(stems):
        duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
        raise InputError(
            f"inputs would write outputs of the same name ({', '.join(duplicates)}): "
            "segment them into separate --out folders"
        )
    return stems

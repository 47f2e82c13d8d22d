"""The stacks of a batch: explicit files, every stack in a folder, or the rows of a CSV."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segmentation.errors import InputError
from segmentation.io.formats import STACK_SUFFIXES, is_stack_path
from segmentation.outputs import output_stems

#: Column of a stack list CSV that holds the stacks' paths (as in a training CSV).
STACK_COLUMN = "image"


@dataclass(frozen=True)
class StackJob:
    """One stack of a batch and the stem its outputs are named by.

    Attributes
    ----------
    path : Path
        The stack: a TIFF or ND2 file or an OME-Zarr folder.
    stem : str
        Its outputs are ``<stem>_labels.tif`` etc. (:func:`segmentation.outputs.output_paths`).
    """

    path: Path
    stem: str


def stacks_in_folder(folder: Path) -> list[Path]:
    """The stacks directly in ``folder`` (not in sub-folders), sorted by name.

    Raises
    ------
    segmentation.errors.InputError
        When it holds none.
    """
    stacks = sorted(path for path in folder.iterdir() if is_stack_path(path))
    if not stacks:
        raise InputError(
            f"folder {folder} holds no stack ({', '.join(STACK_SUFFIXES)}): give stack files, "
            "a folder of them or --csv LIST.csv"
        )
    return stacks


def read_stack_list(path: Path) -> list[Path]:
    """The stacks listed in the column :data:`STACK_COLUMN` of a CSV file.

    Paths are relative to the CSV's folder unless absolute; empty rows are left out.

    Raises
    ------
    segmentation.errors.InputError
        When the file cannot be read, has no such column or lists no stack.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or ()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read the stack list {path}: {error}") from error
    if STACK_COLUMN not in columns:
        raise InputError(
            f"{path} needs a header with a column {STACK_COLUMN!r} and one stack path per row"
        )
    entries = [(row[STACK_COLUMN] or "").strip() for row in rows]
    stacks = [path.parent / entry for entry in entries if entry]
    if not stacks:
        raise InputError(f"{path} lists no stack in its column {STACK_COLUMN!r}")
    return stacks


def list_stacks(inputs: Sequence[Path], stack_list: Path | None, out_dir: Path) -> list[Path]:
    """Every stack of a batch, in order: the inputs (a folder gives the stacks in it), then
    the stacks of ``stack_list``.

    An input that is neither a folder nor a stack is kept, so that reading it reports why.

    Raises
    ------
    segmentation.errors.InputError
        When there is no input at all, a folder holds no stack, the CSV cannot be used, or
        a folder is ``out_dir`` (its outputs would be taken for stacks on a rerun).
    """
    stacks: list[Path] = []
    for path in inputs:
        if path.is_dir() and not is_stack_path(path):
            if path.resolve() == out_dir.resolve():
                raise InputError(
                    f"--out {out_dir} is the input folder {path}: write the outputs elsewhere"
                )
            stacks.extend(stacks_in_folder(path))
        else:
            stacks.append(path)
    if stack_list is not None:
        stacks.extend(read_stack_list(stack_list))
    if not stacks:
        raise InputError("give stack files, a folder of stacks or --csv LIST.csv")
    return stacks


def stack_jobs(stacks: Sequence[Path]) -> list[StackJob]:
    """One job per stack, each with distinct output stems (:func:`output_stems`).

    Raises
    ------
    segmentation.errors.InputError
        When a stack is listed twice.
    """
    return [
        StackJob(path, stem) for path, stem in zip(stacks, output_stems(stacks), strict=True)
    ]

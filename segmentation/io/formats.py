"""The stack formats germseg reads, told apart by their suffix: TIFF, ND2 and OME-Zarr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segmentation.io.nd2_file import ND2_SUFFIX, read_nd2
from segmentation.io.ome_zarr_stack import ZARR_SUFFIX, read_ome_zarr
from segmentation.io.reader import TIFF_SUFFIXES, Stack

#: Suffixes of the stacks germseg reads: TIFF and ND2 files, OME-Zarr folders
#: (``.zarr``, which ``.ome.zarr`` ends with).
STACK_SUFFIXES = (*TIFF_SUFFIXES, ND2_SUFFIX, ZARR_SUFFIX)

StackReader = Callable[..., Stack]


def is_stack_path(path: str | Path) -> bool:
    """Whether ``path`` is an existing stack germseg reads: a TIFF/ND2 file or a .zarr folder."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ZARR_SUFFIX:
        return path.is_dir()
    return suffix in STACK_SUFFIXES and path.is_file()


def non_tiff_reader(path: str | Path) -> StackReader | None:
    """The reader of an ND2 file or OME-Zarr folder, by suffix; None for other paths.

    The readers take ``(path, *, channels, max_voxels, decode)`` and return a
    :class:`~segmentation.io.reader.Stack`.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ND2_SUFFIX:
        return read_nd2
    if suffix == ZARR_SUFFIX:
        return read_ome_zarr
    return None

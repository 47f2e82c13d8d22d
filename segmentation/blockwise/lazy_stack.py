"""Stacks read block by block: a TIFF (through tifffile's Zarr view of its pages, never
decoded whole) or an OME-Zarr image, with the same axes, channels and voxel size as
:func:`segmentation.io.read_stack` finds."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import zarr

from segmentation.errors import InputError
from segmentation.io import Stack, read_stack
from segmentation.io.named_axes import IndexableArray, reader_errors
from segmentation.io.ome_zarr_stack import _axis_letters, _image_group
from segmentation.io.reader import (
    TIFF_SUFFIXES,
    _axes_are_named,
    _roles_from_named_axes,
    _roles_from_shape,
    _select_channels,
)
from segmentation.parameters import MAX_STACK_VOXELS, VoxelSize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LazyStack:
    """A stack whose voxels stay in its file until a block of them is read.

    Attributes
    ----------
    name : str
        File name, for messages.
    data : array-like
        The file's array (a Zarr array), indexed one block and channel at a time.
    roles : tuple of str or None
        C, Z, Y or X per axis of ``data``; None for singleton axes.
    channels : (int, int)
        The file's channels used as model inputs 0 and 1 (a single channel twice).
    shape : (int, int, int)
        (Z, Y, X).
    voxel_size : (float, float, float) or None
        (z, y, x) in µm, the given one or the file's.
    warnings : tuple of str
        Notes for the user, as in :class:`segmentation.io.Stack`.
    """

    name: str
    data: IndexableArray
    roles: tuple[str | None, ...]
    channels: tuple[int, int]
    shape: tuple[int, int, int]
    voxel_size: VoxelSize | None
    warnings: tuple[str, ...] = ()

    def read(self, index: tuple[slice, slice, slice]) -> np.ndarray:
        """The raw (2, z, y, x) float32 intensities of a block (slices may have steps)."""
        by_role = dict(zip("ZYX", index, strict=True))
        kept = [role for role in self.roles if role in by_role]
        order = [kept.index(axis) for axis in "ZYX"]
        planes = []
        for channel in self.channels:
            selection = tuple(
                channel if role == "C" else by_role.get(role, 0) for role in self.roles
            )
            planes.append(np.transpose(np.asarray(self.data[selection]), order))
        return np.stack(planes).astype(np.float32, copy=False)


def _tiff_array(path: Path) -> tuple[IndexableArray, list[str | None]]:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.get_axes(False)
        shape = tuple(int(size) for size in series.get_shape(False))
        named = _axes_are_named(tif, series)
    roles = (_roles_from_named_axes if named else _roles_from_shape)(path.name, axes, shape)
    store = tifffile.imread(path, aszarr=True, series=0, level=0, squeeze=False)
    return zarr.open_array(store, mode="r"), roles


def _ome_zarr_array(path: Path) -> tuple[IndexableArray, list[str | None]]:
    root = zarr.open_group(path, mode="r")
    group, multiscale = _image_group(path.name, root)
    data = group[multiscale["datasets"][0]["path"]]
    axes = _axis_letters(path.name, multiscale.get("axes"), data.ndim)
    shape = tuple(int(size) for size in data.shape)
    return data, _roles_from_named_axes(path.name, axes, shape)


def stack_header(
    path: str | Path,
    *,
    channels: tuple[int, int] | None = None,
    voxel_size: VoxelSize | None = None,
) -> Stack:
    """What :func:`segmentation.io.read_stack` tells from a stack's header (no values are
    decoded; ``image`` is a read-only all-zero view), without its size limits."""
    return read_stack(
        path,
        channels=channels,
        max_voxels=MAX_STACK_VOXELS,
        voxel_size=voxel_size,
        max_decoded_bytes=sys.maxsize,
        decode=False,
    )


def open_lazy_stack(
    path: str | Path,
    *,
    channels: tuple[int, int] | None = None,
    voxel_size: VoxelSize | None = None,
) -> LazyStack:
    """Open a TIFF or OME-Zarr stack for blockwise reading; no voxel values are read.

    The header checks of :func:`segmentation.io.read_stack` apply (axes, channels, voxel
    size, a truncated file), but neither its voxel limit nor its decoded-size limit: a
    blockwise run holds one block at a time.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff`` file or an OME-Zarr folder.
    channels : (int, int), optional
        Source channels to use as model inputs 0 and 1.
    voxel_size : (float, float, float), optional
        (z, y, x) in µm, instead of the file's.

    Returns
    -------
    LazyStack

    Raises
    ------
    InputError
        For an ND2 file (convert it to OME-Zarr or TIFF), and as ``read_stack``.
    """
    path = Path(path)
    header = stack_header(path, channels=channels, voxel_size=voxel_size)
    with reader_errors(path.name, "cannot be read block by block"):
        if path.is_dir():
            data, roles = _ome_zarr_array(path)
        elif path.suffix.lower() in TIFF_SUFFIXES:
            data, roles = _tiff_array(path)
        else:
            raise InputError(
                f"{path.name}: stacks larger than the memory budget are read block by block "
                "from TIFF or OME-Zarr only; convert it (e.g. with bioformats2raw) or raise "
                "the memory budget"
            )
    n_channels = data.shape[roles.index("C")] if "C" in roles else 1
    selected, _ = _select_channels(path.name, n_channels, channels)
    shape = tuple(int(size) for size in header.image.shape[1:])
    logger.info("%s: read blockwise, %s voxels, channels %s", path.name, shape, selected)
    return LazyStack(
        path.name, data, tuple(roles), selected, shape, header.voxel_size, header.warnings
    )

"""A :class:`~segmentation.io.reader.Stack` from an array whose file names its axes.

Shared by the formats that record their axes in metadata (ND2, OME-Zarr): the array may be
lazy (a Dask or Zarr array) and is read one channel at a time into the float32 result, with
the same checks and messages as a TIFF stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from segmentation.errors import InputError
from segmentation.io.reader import (
    Stack,
    _check_voxel_limit,
    _roles_from_named_axes,
    _select_channels,
    _validate_values,
)
from segmentation.parameters import VoxelSize


class IndexableArray(Protocol):
    """What is used of an array: its shape, data type and NumPy-style basic indexing."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __getitem__(self, index: tuple[int | slice, ...]) -> object: ...


def _read_channel(
    data: IndexableArray, roles: list[str | None], channel: int, out: np.ndarray
) -> None:
    """Copy one channel of ``data`` into ``out`` (Z, Y, X), reading only that channel."""
    index = tuple(
        channel if role == "C" else (slice(None) if role in ("Z", "Y", "X") else 0)
        for role in roles
    )
    kept = [role for role in roles if role in ("Z", "Y", "X")]
    out[...] = np.transpose(np.asarray(data[index]), [kept.index(axis) for axis in "ZYX"])


def stack_from_named_axes(
    name: str,
    data: IndexableArray,
    axes: str,
    *,
    voxel_size: VoxelSize | None,
    channels: tuple[int, int] | None,
    max_voxels: int,
    decode: bool = True,
) -> Stack:
    """Check and read a stack whose axes the file names, as for a TIFF stack.

    Parameters
    ----------
    name : str
        File name used in messages.
    data : array-like
        The stored array (NumPy, Dask or Zarr), indexed channel by channel.
    axes : str
        One upper-case letter per dimension of ``data`` (C, Z, Y, X, T, S; singleton axes
        of any other letter are ignored).
    voxel_size : (float, float, float) or None
        (z, y, x) in µm from the file's metadata.
    channels : (int, int), optional
        Source channels to use as model inputs 0 and 1.
    max_voxels : int
        Largest accepted Z * Y * X.
    decode : bool
        False checks everything the metadata tells (no values are read) and returns a
        read-only all-zero ``image`` of the right shape that takes no memory.

    Returns
    -------
    Stack
        The (2, Z, Y, X) float32 image and what the file records.

    Raises
    ------
    InputError
        If the axes do not match the array, the data type is not numeric, the array is
        empty, 2-D, a time series or too large, the channels are ambiguous or out of
        range, or a channel holds NaN/inf values or is constant.
    """
    shape = tuple(int(size) for size in data.shape)
    if len(axes) != len(shape):
        raise InputError(
            f"{name}: its metadata names {len(axes)} axes ({axes}) but its array has "
            f"{len(shape)} dimensions {shape}; copy or export the file again"
        )
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "uif":
        raise InputError(
            f"{name}: unsupported data type {dtype}; save the stack as uint8, uint16 or float32"
        )
    if 0 in shape:
        raise InputError(f"{name} is empty (shape {shape}); check the file")
    roles = _roles_from_named_axes(name, axes, shape)
    if not {"Z", "Y", "X"} <= set(roles):
        raise InputError(
            f"{name} is a 2-D image (axes {axes}, shape {shape}); germseg needs a 3-D stack "
            "(Z, Y, X)"
        )
    size = {role: shape[i] for i, role in enumerate(roles) if role is not None}
    _check_voxel_limit(name, size, max_voxels)
    selected, warnings = _select_channels(name, size.get("C", 1), channels)
    source_axes = "".join(role for role in roles if role is not None)
    if not decode:
        image = np.broadcast_to(np.float32(0), (2, size["Z"], size["Y"], size["X"]))
        return Stack(image, voxel_size, source_axes, str(dtype), warnings)
    image = np.empty((2, size["Z"], size["Y"], size["X"]), dtype=np.float32)
    for out_index, channel in enumerate(selected):
        _read_channel(data, roles, channel, image[out_index])
    _validate_values(name, image, selected)
    return Stack(image, voxel_size, source_axes, str(dtype), warnings)


@contextmanager
def reader_errors(name: str, unreadable: str) -> Iterator[None]:
    """Turn a format library's failures while reading ``name`` into one-line InputErrors.

    An :class:`InputError` passes unchanged; running out of memory says so; anything else
    becomes ``"<name> <unreadable> (<first line of the error>); copy or export it again"``,
    e.g. ``unreadable="is not a readable ND2 file or is truncated"``.
    """
    try:
        yield
    except InputError:
        raise
    except MemoryError as error:
        raise InputError(
            f"{name}: not enough memory to read the stack; crop it or use a larger machine"
        ) from error
    except Exception as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{name} {unreadable} ({detail}); copy or export it again") from error

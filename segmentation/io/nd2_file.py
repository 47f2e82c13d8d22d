"""Read a Nikon NIS-Elements ``.nd2`` stack with the ``nd2`` package.

Axes come from the file's experiment loops and frame layout (``ND2File.sizes``: T, P, Z, C,
Y, X, S; singleton axes left out), the voxel size from the first channel's volume
calibration. Planes are read lazily (``ND2File.to_dask``), one channel at a time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import nd2

from segmentation.errors import InputError
from segmentation.io.named_axes import IndexableArray, reader_errors, stack_from_named_axes
from segmentation.io.reader import Stack
from segmentation.parameters import VoxelSize

logger = logging.getLogger(__name__)

ND2_SUFFIX = ".nd2"


class ND2Like(Protocol):
    """The part of :class:`nd2.ND2File` that germseg uses."""

    @property
    def sizes(self) -> Mapping[str, int]: ...

    @property
    def metadata(self) -> object: ...

    def voxel_size(self) -> tuple[float, float, float]: ...

    def to_dask(self) -> IndexableArray: ...


def nd2_voxel_size(nd2_file: ND2Like) -> VoxelSize | None:
    """(z, y, x) voxel size in µm of an open ND2 file; None unless all three are calibrated.

    NIS-Elements marks each axis of a channel's volume as calibrated or not; the Z step is
    calibrated only in a Z series with a known step.
    """
    channels = getattr(nd2_file.metadata, "channels", None)
    if not channels:
        return None
    if not all(channels[0].volume.axesCalibrated):
        return None
    x, y, z = (float(size) for size in nd2_file.voxel_size())
    voxel_size = (z, y, x)
    if not all(size > 0 and math.isfinite(size) for size in voxel_size):
        return None
    return voxel_size


def stack_from_nd2(
    name: str,
    nd2_file: ND2Like,
    *,
    channels: tuple[int, int] | None,
    max_voxels: int,
    decode: bool = True,
) -> Stack:
    """Read the stack of an open ND2 file.

    Parameters
    ----------
    name : str
        File name used in messages.
    nd2_file : nd2.ND2File
        The open file (or an object with the same ``sizes``, ``metadata``, ``voxel_size``
        and ``to_dask``).
    channels : (int, int), optional
        Source channels to use as model inputs 0 and 1.
    max_voxels : int
        Largest accepted Z * Y * X.
    decode : bool
        False reads no values and returns an all-zero ``image`` (see
        :func:`~segmentation.io.named_axes.stack_from_named_axes`).

    Returns
    -------
    Stack

    Raises
    ------
    InputError
        For several XY positions or time points, and as
        :func:`~segmentation.io.named_axes.stack_from_named_axes`.
    """
    sizes = dict(nd2_file.sizes)
    positions = sizes.get("P", 1)
    if positions > 1:
        raise InputError(
            f"{name} holds {positions} XY positions; export each position as its own stack"
        )
    voxel_size = nd2_voxel_size(nd2_file)
    logger.info("%s: ND2 axes %s, voxel size %s µm", name, sizes, voxel_size)
    return stack_from_named_axes(
        name,
        nd2_file.to_dask(),
        "".join(sizes),
        voxel_size=voxel_size,
        channels=channels,
        max_voxels=max_voxels,
        decode=decode,
    )


def read_nd2(
    path: Path, *, channels: tuple[int, int] | None, max_voxels: int, decode: bool = True
) -> Stack:
    """Read a stack from an ``.nd2`` file.

    Parameters
    ----------
    path : Path
        The ``.nd2`` file.
    channels : (int, int), optional
        Source channels to use as model inputs 0 and 1.
    max_voxels : int
        Largest accepted Z * Y * X.
    decode : bool
        False reads no values and returns an all-zero ``image``.

    Returns
    -------
    Stack
        ``voxel_size`` is None when the file is not fully calibrated.

    Raises
    ------
    InputError
        If the file is missing, not a readable ND2 file, or not a single 3-D stack with
        valid channels (see :func:`stack_from_nd2`).
    """
    if not path.exists():
        raise InputError(f"file not found: {path}; check the path")
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the path of an .nd2 stack")
    name = path.name
    with (
        reader_errors(name, "is not a readable ND2 file or is truncated"),
        nd2.ND2File(path) as nd2_file,
    ):
        return stack_from_nd2(
            name, nd2_file, channels=channels, max_voxels=max_voxels, decode=decode
        )

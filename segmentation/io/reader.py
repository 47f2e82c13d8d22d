"""Read a two-channel 3D stack from a TIFF file into a (2, Z, Y, X) float32 array.

Axis order is taken from the file's metadata (ImageJ hyperstack, OME-XML, or the ``axes`` of
tifffile's shaped metadata), never guessed from the sizes when metadata names the axes.
Only when a file names no axes (a plain TIFF) is its array order assumed to be (Z, Y, X) for
3 dimensions and (C, Z, Y, X) for 4 dimensions with at most 4 channels first.

Integer and floating-point data of any width are accepted and converted to float32 (exact for
8- and 16-bit integers); boolean and complex data are rejected. Data are read one channel at
a time straight into the float32 result, so the peak memory is close to the result's size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tifffile

from segmentation.errors import InputError
from segmentation.io.decoded_size import DEFAULT_MAX_DECODED_BYTES, check_decoded_size
from segmentation.io.tifffile_log import first_problem, tifffile_messages
from segmentation.io.voxel_size import ASSUMED_Z_STEP_IN_PIXELS, voxel_size_from_tiff
from segmentation.parameters import (
    DEFAULT_MAX_VOXELS,
    MAX_VOXEL_SIZE_UM,
    MIN_VOXEL_SIZE_UM,
    check_max_voxels,
    check_voxel_size,
)

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
#: Largest number of channels first in a 4-D array without axes metadata.
MAX_UNLABELLED_CHANNELS = 4
_AXES_HINT = "save it as an ImageJ hyperstack or OME-TIFF with (C, Z, Y, X) or (Z, C, Y, X) axes"
_EXPORT_AGAIN = "copy or export the file again"


@dataclass(frozen=True)
class Stack:
    """A stack read from a file.

    Attributes
    ----------
    image : np.ndarray
        (2, Z, Y, X) float32 raw intensities (not normalised).
    voxel_size : tuple of float or None
        (z, y, x) in micrometres from ImageJ or OME metadata; None when unknown.
    source_axes : str
        Axes in the order stored in the file, singleton axes removed, using C, Z, Y, X
        (e.g. ``"CZYX"`` or ``"ZCYX"``; a plain 4-D TIFF reads as ``"CZYX"``).
    source_dtype : str
        The file's data type, e.g. ``"uint16"``.
    warnings : tuple of str
        Notes for the user, e.g. that a single channel was duplicated.
    """

    image: np.ndarray
    voxel_size: tuple[float, float, float] | None
    source_axes: str
    source_dtype: str
    warnings: tuple[str, ...] = ()


def parse_channels(text: str) -> tuple[int, int]:
    """Parse a channel pair such as ``"0,1"`` into ``(0, 1)``.

    Raises
    ------
    InputError
        If the text is not two non-negative integers separated by a comma.
    """
    parts = [part.strip() for part in str(text).split(",")]
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise InputError(
            f"invalid channels {text!r}: give two channel indices separated by a comma, e.g. 0,1"
        )
    return int(parts[0]), int(parts[1])


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"file not found: {path}; check the path")
    if not path.is_file():
        raise InputError(
            f"{path} is not a file; give the path of a .tif, .tiff or .nd2 stack or of an "
            "OME-Zarr (.zarr) folder"
        )
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(
            f"{path.name}: unsupported file type {path.suffix!r}; "
            "germseg reads .tif/.tiff and .nd2 stacks and OME-Zarr (.zarr) folders "
            "(convert the file to TIFF first)"
        )


def _axes_are_named(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> bool:
    if series.kind in ("imagej", "ome"):
        return True
    if series.kind == "shaped":
        metadata = tif.shaped_metadata or ()
        return any("axes" in item for item in metadata)
    return False


def _roles_from_named_axes(name: str, axes: str, shape: tuple[int, ...]) -> list[str | None]:
    """C/Z/Y/X role of each axis (None: singleton axis to drop) from the file's axis letters."""
    roles: list[str | None] = [None] * len(axes)
    for index, (letter, size) in enumerate(zip(axes, shape, strict=True)):
        if letter in "YX":
            roles[index] = letter
        elif letter == "T" and size > 1:
            raise InputError(
                f"{name} is a time series ({size} time points); "
                "save each time point as its own stack"
            )
        elif size == 1:
            continue
        elif letter in "ZC":
            roles[index] = letter
        elif letter == "S":
            roles[index] = "C"
        elif letter not in "IQ":
            raise InputError(
                f"{name} has an unsupported axis {letter!r} of size {size}; "
                "give a single 3-D stack with axes C, Z, Y, X"
            )
    for index, letter in enumerate(axes):
        if letter in "IQ" and shape[index] > 1:
            if "Z" in roles:
                raise InputError(
                    f"{name} has an unknown axis of size {shape[index]} besides Z; {_AXES_HINT}"
                )
            roles[index] = "Z"
    if roles.count("C") > 1:
        raise InputError(f"{name} has two channel axes; {_AXES_HINT}")
    return roles


def _roles_from_shape(name: str, axes: str, shape: tuple[int, ...]) -> list[str | None]:
    """Roles for a file without axes metadata: (Z, Y, X), (C, Z, Y, X) or (Z, Y, X, samples)."""
    roles: list[str | None] = [None] * len(axes)
    roles[axes.index("Y")] = "Y"
    roles[axes.index("X")] = "X"
    others = [i for i, size in enumerate(shape) if roles[i] is None and size > 1]
    if len(others) == 1:
        # the samples of an RGB image are its channels, never planes
        roles[others[0]] = "C" if axes[others[0]] == "S" else "Z"
    elif len(others) == 2:
        if axes.endswith("YXS"):
            channel_axis, z_axis = others[1], others[0]
        elif shape[others[0]] <= MAX_UNLABELLED_CHANNELS:
            channel_axis, z_axis = others
        else:
            raise InputError(
                f"{name}: cannot tell the channel axis of shape {shape} "
                f"(no axes metadata, first axis > {MAX_UNLABELLED_CHANNELS}); {_AXES_HINT}"
            )
        roles[channel_axis], roles[z_axis] = "C", "Z"
    elif len(others) > 2:
        raise InputError(
            f"{name}: cannot tell the axes of shape {shape} without axes metadata; {_AXES_HINT}"
        )
    return roles


def _check_voxel_limit(name: str, size: dict[str, int], max_voxels: int) -> None:
    """Refuse a stack of more than ``max_voxels`` voxels Z * Y * X (``size`` by axis role)."""
    n_voxels = size["Z"] * size["Y"] * size["X"]
    if n_voxels > max_voxels:
        raise InputError(
            f"{name} has {n_voxels:,} voxels (Z*Y*X = {size['Z']}*{size['Y']}*{size['X']}), "
            f"more than the limit of {max_voxels:,}; crop the stack or raise the limit "
            "(--max-voxels)"
        )


def _select_channels(
    name: str, n_channels: int, channels: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[str, ...]]:
    if channels is not None:
        bad = [index for index in channels if not 0 <= index < n_channels]
        if bad:
            raise InputError(
                f"{name}: channel index {bad[0]} out of range, the stack has {n_channels} "
                f"channel(s) (0 to {n_channels - 1}); pass valid --channels I,J"
            )
        return (int(channels[0]), int(channels[1])), ()
    if n_channels == 2:
        return (0, 1), ()
    if n_channels == 1:
        message = (
            f"{name} has a single channel; it is used for both model inputs, which works for "
            "a membrane marker but not for a cytoplasm marker alone"
        )
        # returned in Stack.warnings, which the CLI, the REST API and the web app show
        logger.info(message)
        return (0, 0), (message,)
    raise InputError(
        f"{name} has {n_channels} channels; pass --channels I,J to choose the two to use"
    )


def _check_complete(name: str, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> None:
    if tif.is_imagej and series.kind != "imagej":
        raise InputError(f"{name}: the ImageJ stack is truncated or corrupted; export it again")
    expected = (tif.imagej_metadata or {}).get("images") if series.kind == "imagej" else None
    if expected is None:
        return
    planes = int(np.prod(series.shape)) // max(1, int(np.prod(series.keyframe.shape)))
    wrong_planes = series.keyframe.axes == "YX" and planes != int(expected)
    # A complete ImageJ file has one IFD per plane, or a single IFD (tifffile's "truncate").
    missing_ifds = 1 < len(tif.pages) < int(expected)
    tif.pages[len(tif.pages) - 1]  # parsing the last IFD raises if it was cut
    if wrong_planes or missing_ifds:
        raise InputError(f"{name}: the ImageJ stack is truncated or corrupted; export it again")


class _TruncatedError(InputError):
    """The file is cut short or its structure is damaged."""


def _truncated(name: str, detail: str) -> _TruncatedError:
    return _TruncatedError(f"{name} is truncated or corrupted ({detail}); {_EXPORT_AGAIN}")


def _check_data_in_file(name: str, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> None:
    """Refuse a series whose image data reach past the end of the file (a cut-off copy)."""
    size = int(tif.filehandle.size)
    end = 0
    for page in series.pages:
        if page is None:
            continue
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            end = max(end, int(offset) + int(count))
    if end > size:
        raise _truncated(name, f"its image data run to byte {end:,} but the file has {size:,}")


def _read_channel_planes(
    tif: tifffile.TiffFile,
    series: tifffile.TiffPageSeries,
    shape: tuple[int, ...],
    roles: list[str | None],
    channel: int,
    out: np.ndarray,
) -> bool:
    """Read one channel plane by plane into ``out`` (Z, Y, X); False if pages are not planes."""
    keyframe = series.keyframe
    n_lead = len(shape) - 2
    if keyframe.axes != "YX" or roles[n_lead:] != ["Y", "X"]:
        return False
    lead_shape = shape[:n_lead]
    if int(np.prod(lead_shape)) != len(series.pages) or any(p is None for p in series.pages):
        return False
    index_grid = [np.zeros(1, dtype=np.intp)] * n_lead
    for axis, role in enumerate(roles[:n_lead]):
        if role == "Z":
            index_grid[axis] = np.arange(lead_shape[axis])
        elif role == "C":
            index_grid[axis] = np.array([channel])
    grids = np.meshgrid(*index_grid, indexing="ij")
    z_axis = roles.index("Z")
    order = np.moveaxis(np.ravel_multi_index(grids, lead_shape), z_axis, 0).ravel()
    for z, page_index in enumerate(order):
        out[z] = tif.asarray(key=int(page_index), series=0)
    return True


def _read_channel_whole(
    tif: tifffile.TiffFile,
    series: tifffile.TiffPageSeries,
    shape: tuple[int, ...],
    roles: list[str | None],
    channel: int,
    cache: dict[str, np.ndarray],
    out: np.ndarray,
) -> None:
    """Copy one channel into ``out`` from the whole series, memory-mapped when contiguous.

    A compressed series is decoded once in memory and kept in ``cache`` for the next channel.
    """
    if "data" not in cache:
        if series.dataoffset is not None:
            cache["data"] = np.memmap(
                tif.filehandle.path,
                dtype=series.dtype.newbyteorder(tif.byteorder),
                mode="r",
                offset=series.dataoffset,
                shape=shape,
            )
        else:
            cache["data"] = series.asarray().reshape(shape)
    index = tuple(
        channel if role == "C" else (slice(None) if role in ("Z", "Y", "X") else 0)
        for role in roles
    )
    kept = [role for role in roles if role in ("Z", "Y", "X")]
    out[...] = np.transpose(cache["data"][index], [kept.index(axis) for axis in "ZYX"])


def _validate_values(name: str, image: np.ndarray, channels: tuple[int, int]) -> None:
    for out_index, channel in enumerate(channels):
        values = image[out_index]
        if image.dtype.kind == "f" and not np.isfinite(values).all():
            raise InputError(
                f"{name}: channel {channel} contains NaN or infinite values; "
                "replace them (e.g. with 0) before segmenting"
            )
        if values.min() == values.max():
            raise InputError(
                f"{name}: channel {channel} is constant ({values.flat[0]:g} everywhere); "
                "check the file or pick other channels with --channels I,J"
            )


def read_stack(
    path: str | Path,
    *,
    channels: tuple[int, int] | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    voxel_size: tuple[float, float, float] | None = None,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    decode: bool = True,
) -> Stack:
    """Read a 3D stack with one or two channels (or pick two) from a TIFF, ND2 or OME-Zarr.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff`` file: (C, Z, Y, X), an ImageJ (Z, C, Y, X) hyperstack, OME-TIFF,
        or single-channel (Z, Y, X). Singleton axes (e.g. T or S of size 1) are ignored.
        Also an ``.nd2`` file or an OME-Zarr ``.zarr`` folder, whose metadata name the axes
        (:func:`~segmentation.io.formats.non_tiff_reader`).
    channels : (int, int), optional
        Source channels to use as model inputs 0 and 1. Required when the stack has more
        than two channels; with two channels it may reorder them.
    max_voxels : int
        Largest accepted Z * Y * X.
    voxel_size : (float, float, float), optional
        (z, y, x) in µm, used instead of the file's metadata. When neither gives one, the
        stack's ``voxel_size`` is None and a warning says which Z step distances assume
        (:func:`~segmentation.io.voxel_size.voxel_size_for_distances`).
    max_decoded_bytes : int
        Largest accepted size of the file's decoded data, checked from its header before
        decoding (:func:`~segmentation.io.decoded_size.check_decoded_size`). TIFF only: an
        ND2 or OME-Zarr stack decodes only the two channels read, which ``max_voxels`` bounds.
    decode : bool
        False checks everything the header tells (no values are decoded) and returns a
        read-only all-zero ``image`` of the right shape that takes no memory.

    Returns
    -------
    Stack
        The (2, Z, Y, X) float32 image, raw intensities, and what was found in the file.
        A single-channel stack is duplicated, with a note in ``warnings``.

    Raises
    ------
    InputError
        If the file is missing, not a (complete) TIFF, not a 3D stack, too large, has an
        unsupported data type, NaN/inf values, or a constant channel, or if the channels
        are ambiguous or out of range.
    """
    path = Path(path)
    max_voxels = check_max_voxels(max_voxels)
    given_voxel_size = None if voxel_size is None else check_voxel_size(voxel_size)
    from segmentation.io.formats import non_tiff_reader  # it imports this module

    read_other_format = non_tiff_reader(path)
    if read_other_format is not None:
        stack = read_other_format(path, channels=channels, max_voxels=max_voxels, decode=decode)
        return _with_voxel_size(path.name, stack, given_voxel_size)
    _check_path(path)
    name = path.name
    with tifffile_messages() as messages:
        try:
            with tifffile.TiffFile(path) as tif:
                check_decoded_size(name, tif, max_decoded_bytes)
                stack = _read_open_tiff(name, tif, channels, max_voxels, decode)
        except MemoryError as error:
            message = (
                f"{name}: not enough memory to read the stack; crop it or use a larger machine"
            )
            raise InputError(message) from error
        except Exception as error:
            # what tifffile logged about the file's structure is the real problem; a
            # reading failure or an odd shape (a "2-D image") only follows from it
            problem = first_problem(messages)
            if isinstance(error, _TruncatedError):
                raise
            if problem is not None:
                raise _truncated(name, problem) from error
            if isinstance(error, InputError):
                raise
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(
                f"{name} is not a readable TIFF file or is truncated ({detail}); "
                f"{_EXPORT_AGAIN}"
            ) from error
        problem = first_problem(messages)
    if problem is not None:
        raise _truncated(name, problem)
    return _with_voxel_size(name, stack, given_voxel_size)


def _with_voxel_size(
    name: str, stack: Stack, given_voxel_size: tuple[float, float, float] | None
) -> Stack:
    """The stack with the given voxel size, or a warning when neither it nor the file has one.

    Raises
    ------
    InputError
        When the file's voxel size (and none is given) lies outside the voxel-size limits.
    """
    if given_voxel_size is not None:
        return replace(stack, voxel_size=given_voxel_size)
    if stack.voxel_size is None:
        message = (
            f"{name} records no voxel size: distances assume a Z step of "
            f"{ASSUMED_Z_STEP_IN_PIXELS:g} XY pixels and volumes stay in voxels; give the voxel "
            "size (Z,Y,X in µm) if it differs"
        )
        logger.info(message)
        return replace(stack, warnings=(*stack.warnings, message))
    if not all(MIN_VOXEL_SIZE_UM <= size <= MAX_VOXEL_SIZE_UM for size in stack.voxel_size):
        recorded = ",".join(f"{size:g}" for size in stack.voxel_size)
        raise InputError(
            f"{name} records a voxel size of {recorded} µm, outside {MIN_VOXEL_SIZE_UM:g} to "
            f"{MAX_VOXEL_SIZE_UM:g} µm per axis; give the voxel size (Z,Y,X in µm) instead"
        )
    return stack


def _read_open_tiff(
    name: str,
    tif: tifffile.TiffFile,
    channels: tuple[int, int] | None,
    max_voxels: int,
    decode: bool = True,
) -> Stack:
    if not tif.pages:
        size = int(tif.filehandle.size)
        raise _truncated(name, f"no image directory in its {size:,} bytes")
    if not tif.series:
        raise InputError(f"{name} contains no image; check the file")
    series = tif.series[0]
    _check_data_in_file(name, tif, series)
    _check_complete(name, tif, series)
    axes = series.get_axes(False)
    shape = tuple(int(size) for size in series.get_shape(False))
    dtype = np.dtype(series.dtype)
    if dtype.kind not in "uif":
        raise InputError(
            f"{name}: unsupported data type {dtype}; save the stack as uint8, uint16 or float32"
        )
    if 0 in shape:
        raise InputError(f"{name} is empty (shape {shape}); check the file")
    if _axes_are_named(tif, series):
        roles = _roles_from_named_axes(name, axes, shape)
    else:
        roles = _roles_from_shape(name, axes, shape)
    if "Z" not in roles:
        raise InputError(
            f"{name} is a 2-D image (axes {series.axes}); germseg needs a 3-D stack (Z, Y, X)"
        )
    size = {role: shape[i] for i, role in enumerate(roles) if role is not None}
    _check_voxel_limit(name, size, max_voxels)
    selected, warnings = _select_channels(name, size.get("C", 1), channels)
    source_axes = "".join(role for role in roles if role is not None)
    if not decode:
        image = np.broadcast_to(np.float32(0), (2, size["Z"], size["Y"], size["X"]))
        return Stack(image, voxel_size_from_tiff(tif), source_axes, str(dtype), warnings)
    image = np.empty((2, size["Z"], size["Y"], size["X"]), dtype=np.float32)
    cache: dict[str, np.ndarray] = {}
    for out_index, channel in enumerate(selected):
        if not _read_channel_planes(tif, series, shape, roles, channel, image[out_index]):
            _read_channel_whole(tif, series, shape, roles, channel, cache, image[out_index])
    _validate_values(name, image, selected)
    return Stack(
        image=image,
        voxel_size=voxel_size_from_tiff(tif),
        source_axes=source_axes,
        source_dtype=str(dtype),
        warnings=warnings,
    )

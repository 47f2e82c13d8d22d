"""Read a stack from an OME-Zarr image (a ``.zarr`` or ``.ome.zarr`` folder), OME-NGFF 0.4 or 0.5.

The full-resolution array of the image's first multiscales entry is read lazily, one channel
at a time. Axes come from the multiscales ``axes`` (their names, or their types for channel
and time axes), the voxel size from the ``scale`` transformations of that array and of the
multiscales entry, in the axes' units. A ``bioformats2raw`` layout (the image in series
group ``0``) is read too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import zarr

from segmentation.errors import InputError
from segmentation.io.named_axes import reader_errors, stack_from_named_axes
from segmentation.io.reader import Stack
from segmentation.parameters import VoxelSize

logger = logging.getLogger(__name__)

ZARR_SUFFIX = ".zarr"
#: Micrometres per unit, for the OME-NGFF (UDUNITS-2) names of length units.
MICROMETRES_PER_NGFF_UNIT = {
    "angstrom": 1e-4,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "micron": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
}
_AXIS_LETTERS = {"c": "C", "z": "Z", "y": "Y", "x": "X", "t": "T"}
_AXIS_TYPE_LETTERS = {"channel": "C", "time": "T"}


def _multiscales(attributes: Mapping) -> list | None:
    """The ``multiscales`` list of a group's attributes (NGFF 0.5 keeps it under ``ome``)."""
    ome = attributes.get("ome")
    if isinstance(ome, Mapping) and "multiscales" in ome:
        return ome["multiscales"]
    return attributes.get("multiscales")


def _image_group(name: str, root: zarr.Group) -> tuple[zarr.Group, dict]:
    """The image group and its first multiscales entry (a bioformats2raw root: series 0)."""
    multiscales = _multiscales(root.attrs)
    group = root
    if not multiscales and "0" in root and isinstance(root["0"], zarr.Group):
        group = root["0"]
        multiscales = _multiscales(group.attrs)
    if not multiscales:
        raise InputError(
            f"{name} is a Zarr folder without OME-NGFF image metadata (no 'multiscales'); "
            "give an OME-Zarr image, e.g. one written by bioformats2raw or ome-zarr"
        )
    return group, multiscales[0]


def _axis_letters(name: str, axes: list, ndim: int) -> str:
    """One letter per axis from NGFF axes (dicts in 0.4+, names in 0.3, absent before)."""
    if not axes:
        if ndim == 5:
            return "TCZYX"
        raise InputError(
            f"{name}: its OME-Zarr metadata names no axes for a {ndim}-D array; "
            "export it again with OME-NGFF 0.4 or later"
        )
    letters = []
    for axis in axes:
        axis_name = str(axis.get("name", "") if isinstance(axis, Mapping) else axis)
        axis_type = axis.get("type") if isinstance(axis, Mapping) else None
        letter = _AXIS_LETTERS.get(axis_name.lower()) or _AXIS_TYPE_LETTERS.get(axis_type)
        if letter is None:
            raise InputError(
                f"{name} has an unsupported axis {axis_name!r}; "
                "give a single 3-D stack with axes c, z, y, x"
            )
        letters.append(letter)
    return "".join(letters)


def _scale(transformations: list | None, ndim: int) -> list[float]:
    """The product of the ``scale`` transformations in a list (ones when there is none)."""
    scale = [1.0] * ndim
    for transformation in transformations or ():
        if transformation.get("type") == "scale" and len(transformation.get("scale", ())) == ndim:
            scale = [a * float(b) for a, b in zip(scale, transformation["scale"], strict=True)]
    return scale


def ngff_voxel_size(multiscale: Mapping, dataset: Mapping, axes: str) -> VoxelSize | None:
    """(z, y, x) voxel size in µm of a multiscales dataset; None without length units.

    Parameters
    ----------
    multiscale : mapping
        One entry of the ``multiscales`` metadata.
    dataset : mapping
        The entry of ``multiscale["datasets"]`` that is read.
    axes : str
        The axis letters, as from ``_axis_letters``.

    Returns
    -------
    (float, float, float) or None
        None when Z, Y or X is missing, has no (known) length unit or has a scale that is
        not positive and finite.
    """
    ndim = len(axes)
    if not set("ZYX") <= set(axes):
        return None
    scale = _scale(dataset.get("coordinateTransformations"), ndim)
    overall = _scale(multiscale.get("coordinateTransformations"), ndim)
    units = [
        axis.get("unit") if isinstance(axis, Mapping) else None
        for axis in multiscale.get("axes") or [None] * ndim
    ]
    sizes = []
    for letter in "ZYX":
        index = axes.index(letter)
        factor = MICROMETRES_PER_NGFF_UNIT.get(str(units[index]).lower())
        size = scale[index] * overall[index] * factor if factor is not None else math.nan
        if not (size > 0 and math.isfinite(size)):
            return None
        sizes.append(size)
    return (sizes[0], sizes[1], sizes[2])


def read_ome_zarr(
    path: Path, *, channels: tuple[int, int] | None, max_voxels: int, decode: bool = True
) -> Stack:
    """Read a stack from an OME-Zarr image folder.

    Parameters
    ----------
    path : Path
        The ``.zarr``/``.ome.zarr`` folder (the image group, or a bioformats2raw root).
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
        ``voxel_size`` is None when the axes carry no length units.

    Raises
    ------
    InputError
        If the folder is missing, not a Zarr group with OME-NGFF image metadata, or not a
        single 3-D stack with valid channels (see
        :func:`~segmentation.io.named_axes.stack_from_named_axes`).
    """
    if not path.exists():
        raise InputError(f"file not found: {path}; check the path")
    if not path.is_dir():
        raise InputError(
            f"{path} is not a folder; an OME-Zarr image is a .zarr folder (unzip it first)"
        )
    name = path.name
    with reader_errors(name, "is not a readable OME-Zarr image or is incomplete"):
        root = zarr.open_group(path, mode="r")
        group, multiscale = _image_group(name, root)
        dataset = multiscale["datasets"][0]
        data = group[dataset["path"]]
        axes = _axis_letters(name, multiscale.get("axes"), data.ndim)
        voxel_size = ngff_voxel_size(multiscale, dataset, axes)
        logger.info("%s: OME-Zarr axes %s, voxel size %s µm", name, axes, voxel_size)
        return stack_from_named_axes(
            name,
            data,
            axes,
            voxel_size=voxel_size,
            channels=channels,
            max_voxels=max_voxels,
            decode=decode,
        )

"""Labels and boundary probabilities as one OME-Zarr image that napari and Fiji open.

Layout (OME-NGFF 0.4, Zarr format 2, which current napari, Fiji and ome-zarr read):

- the image group holds the boundary probability, float32 (z, y, x);
- ``labels/cells`` holds the labels with ``image-label`` metadata (its source image
  ``../../``), so that napari's OME-Zarr reader opens them as a labels layer over the image.

Both carry the voxel size as ``scale`` coordinate transformations with the axes' unit
``micrometer``; without a voxel size the scale is 1 and the axes have no unit. One
resolution level is written, chunked by z-plane (at most 1024 x 1024 pixels a chunk).
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from ome_zarr.format import FormatV04
from ome_zarr.writer import write_image, write_labels

VoxelSize = tuple[float, float, float]

#: Name of the label image below ``labels/``.
LABELS_NAME = "cells"
#: Name of the image (the boundary probability) in its multiscales metadata.
IMAGE_NAME = "boundary_probability"
_AXES = ["z", "y", "x"]
_LENGTH_UNIT = "micrometer"
_MAX_CHUNK_XY = 1024


def ngff_scale(voxel_size: VoxelSize | None) -> tuple[dict[str, float], dict[str, str] | None]:
    """The ``scale`` and ``axes_units`` arguments of ome-zarr's writers for a voxel size."""
    if voxel_size is None:
        return dict.fromkeys(_AXES, 1.0), None
    scale = {axis: float(size) for axis, size in zip(_AXES, voxel_size, strict=True)}
    return scale, dict.fromkeys(_AXES, _LENGTH_UNIT)


def write_ome_zarr(
    path: str | Path,
    labels: np.ndarray,
    boundary_probability: np.ndarray,
    voxel_size: VoxelSize | None,
) -> Path:
    """Write the boundary probability as an OME-Zarr image with the labels in ``labels/cells``.

    Parameters
    ----------
    path : str or Path
        The folder to write (conventionally ``<stem>.ome.zarr``); anything there is replaced.
    labels : np.ndarray or dask.array.Array
        (Z, Y, X) non-negative integer labels, 0 = background.
    boundary_probability : np.ndarray or dask.array.Array
        (Z, Y, X) values in [0, 1], written as float32. Dask arrays are written chunk by
        chunk (chunked as the output, one plane of at most 1024 x 1024 pixels).
    voxel_size : (float, float, float) or None
        (z, y, x) in µm.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If the volumes are not 3-D of one shape or the labels are not integers.
    """
    # Dask arrays (a blockwise run's on-disk volumes) are written chunk by chunk
    if not isinstance(labels, da.Array):
        labels = np.asarray(labels)
    if isinstance(boundary_probability, da.Array):
        boundary_probability = boundary_probability.astype(np.float32)
    else:
        boundary_probability = np.asarray(boundary_probability, dtype=np.float32)
    if labels.ndim != 3 or labels.shape != boundary_probability.shape:
        raise ValueError(
            f"labels {labels.shape} and boundary_probability {boundary_probability.shape} "
            "must be (Z, Y, X) volumes of one shape"
        )
    if labels.dtype.kind not in "ui":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    path = Path(path)
    n_y, n_x = labels.shape[1:]
    storage = {"chunks": (1, min(n_y, _MAX_CHUNK_XY), min(n_x, _MAX_CHUNK_XY))}
    scale, units = ngff_scale(voxel_size)
    common = {
        "axes": _AXES,
        "scale": scale,
        "axes_units": units,
        "scale_factors": (),
        "fmt": FormatV04(),
        "storage_options": storage,
    }
    root = zarr.open_group(path, mode="w", zarr_format=2)
    write_image(boundary_probability, root, name=IMAGE_NAME, **common)
    write_labels(
        labels,
        root,
        name=LABELS_NAME,
        scaler=None,
        label_metadata={"source": {"image": "../../"}},
        **common,
    )
    return path

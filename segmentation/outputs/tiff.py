"""Label and boundary-probability volumes as compressed, ImageJ-compatible TIFF files.

Labels are written as uint16 ImageJ hyperstacks (axes ZYX) when the largest label fits, else
as uint32 OME-TIFF (ImageJ's own TIFF format has no 32-bit integer type; Fiji opens OME-TIFF
through Bio-Formats). The voxel size goes into the ImageJ ``spacing``/``unit`` and X/Y
resolution, or into OME ``PhysicalSizeZ/Y/X`` in µm. Data are deflate (zlib) compressed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

VoxelSize = tuple[float, float, float]
COMPRESSION = "zlib"
COMPRESSION_LEVEL = 6


def _check_volume(name: str, volume: np.ndarray) -> None:
    if volume.ndim != 3:
        raise ValueError(f"{name} must be a (Z, Y, X) volume, got shape {volume.shape}")


def _write_imagej(path: Path, volume: np.ndarray, voxel_size: VoxelSize | None) -> None:
    metadata: dict[str, object] = {"axes": "ZYX"}
    resolution = None
    if voxel_size is not None:
        size_z, size_y, size_x = (float(size) for size in voxel_size)
        metadata.update(spacing=size_z, unit="um")
        resolution = (1.0 / size_x, 1.0 / size_y)
    tifffile.imwrite(
        path,
        volume,
        imagej=True,
        metadata=metadata,
        resolution=resolution,
        compression=COMPRESSION,
        compressionargs={"level": COMPRESSION_LEVEL},
    )


def _write_ome(path: Path, volume: np.ndarray, voxel_size: VoxelSize | None) -> None:
    metadata: dict[str, object] = {"axes": "ZYX"}
    if voxel_size is not None:
        size_z, size_y, size_x = (float(size) for size in voxel_size)
        metadata.update(
            PhysicalSizeZ=size_z,
            PhysicalSizeY=size_y,
            PhysicalSizeX=size_x,
            PhysicalSizeZUnit="µm",
            PhysicalSizeYUnit="µm",
            PhysicalSizeXUnit="µm",
        )
    tifffile.imwrite(
        path,
        volume,
        ome=True,
        metadata=metadata,
        compression=COMPRESSION,
        compressionargs={"level": COMPRESSION_LEVEL},
    )


def write_labels(path: str | Path, labels: np.ndarray, voxel_size: VoxelSize | None = None) -> Path:
    """Write a (Z, Y, X) label volume (0 = background) as a compressed TIFF.

    uint16 ImageJ hyperstack when ``labels.max() <= 65535``, else uint32 OME-TIFF.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    labels = np.asarray(labels)
    _check_volume("labels", labels)
    if labels.dtype.kind not in "ui":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be >= 0")
    largest = int(labels.max()) if labels.size else 0
    if largest <= np.iinfo(np.uint16).max:
        _write_imagej(path, labels.astype(np.uint16, copy=False), voxel_size)
    elif largest <= np.iinfo(np.uint32).max:
        _write_ome(path, labels.astype(np.uint32, copy=False), voxel_size)
    else:
        raise ValueError(f"largest label {largest} does not fit in uint32; relabel first")
    return path


def write_boundaries(
    path: str | Path, boundary_probability: np.ndarray, voxel_size: VoxelSize | None = None
) -> Path:
    """Write a (Z, Y, X) boundary-probability volume as a compressed float32 ImageJ TIFF.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    boundary_probability = np.asarray(boundary_probability)
    _check_volume("boundary_probability", boundary_probability)
    _write_imagej(path, boundary_probability.astype(np.float32, copy=False), voxel_size)
    return path

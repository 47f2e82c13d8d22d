"""On-disk Zarr arrays for the intermediate volumes of a blockwise run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

#: Chunk edge in Y and X, and planes per chunk (one: outputs are written plane by plane).
CHUNK_XY = 512
CHUNK_Z = 1


def create_array(path: Path, shape: tuple[int, ...], dtype: type | np.dtype) -> zarr.Array:
    """A new zero-filled Zarr array at ``path`` (replacing one there), chunked for blocks:
    at most :data:`CHUNK_Z` planes and :data:`CHUNK_XY` pixels square, one channel each."""
    spatial = (min(shape[-3], CHUNK_Z), min(shape[-2], CHUNK_XY), min(shape[-1], CHUNK_XY))
    chunks = (1,) * (len(shape) - 3) + spatial
    return zarr.create_array(
        store=str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True
    )

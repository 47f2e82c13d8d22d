"""How many bytes a TIFF stack takes once decoded, read from its header before any decoding.

A compressed file can decode to far more than its own size (a 1 MB deflate file of zeros
holds a 1 GB float64 stack). The pages of a TIFF record their shape and data type, so the
decoded size is known from the header alone and a stack over the budget is refused at once.
"""

from __future__ import annotations

import math

import numpy as np
import tifffile

from segmentation.errors import InputError
from segmentation.parameters import DEFAULT_MAX_VOXELS

#: Default budget: two channels of the largest accepted stack in float32, the reader's output.
DEFAULT_MAX_DECODED_BYTES = 2 * DEFAULT_MAX_VOXELS * np.dtype(np.float32).itemsize


def decoded_bytes(tif: tifffile.TiffFile) -> int:
    """Bytes of the first image series of an open TIFF once decoded, from its header.

    Parameters
    ----------
    tif : tifffile.TiffFile
        An open file; nothing is decoded.

    Returns
    -------
    int
        Product of the series' shape times its item size; 0 for a file without a series.
    """
    if not tif.series:
        return 0
    series = tif.series[0]
    return math.prod(int(size) for size in series.shape) * np.dtype(series.dtype).itemsize


def check_decoded_size(name: str, tif: tifffile.TiffFile, max_bytes: int) -> int:
    """Refuse a stack that would take more than ``max_bytes`` once decoded.

    Parameters
    ----------
    name : str
        The file's name, for the message.
    tif : tifffile.TiffFile
        The open file; only its header is read.
    max_bytes : int
        Budget for the decoded stack, in bytes.

    Returns
    -------
    int
        The decoded size in bytes.

    Raises
    ------
    InputError
        When the decoded stack is larger than the budget.
    """
    size = decoded_bytes(tif)
    if size > max_bytes:
        series = tif.series[0]
        shape = "x".join(str(int(axis)) for axis in series.shape)
        raise InputError(
            f"{name} decodes to {size / 2**20:,.0f} MiB ({shape} {np.dtype(series.dtype)}), "
            f"more than the limit of {max_bytes / 2**20:,.0f} MiB; crop the stack, keep only "
            "the channels you need or save it as uint16"
        )
    return size

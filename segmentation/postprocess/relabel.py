"""Consecutive relabelling of a label volume in the smallest sufficient dtype."""

from __future__ import annotations

import bioimage_cpp.segmentation
import numpy as np

from segmentation.errors import InputError

#: Above this largest label value a lookup table indexed by label is too large: sort instead.
_LOOKUP_TABLE_LIMIT = 1 << 26


def _smallest_dtype(count: int) -> type[np.unsignedinteger]:
    return np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Map the non-zero labels to 1..N in increasing order; 0 stays 0.

    Parameters
    ----------
    labels : ndarray of int
        Label volume, 0 = background.

    Returns
    -------
    ndarray of uint16, or uint32 when there are more than 65,535 labels
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be an integer array, got {labels.dtype}")
    if labels.size == 0:
        return labels.astype(np.uint16)
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise InputError("labels must not contain negative values")
    largest = int(labels.max())
    if largest < _LOOKUP_TABLE_LIMIT:
        if labels.dtype.type not in (np.uint32, np.int32, np.uint64, np.int64):
            labels = labels.astype(np.uint32)
        relabelled, _, inverse_map = bioimage_cpp.segmentation.relabel_sequential(labels)
        return relabelled.astype(_smallest_dtype(inverse_map.size - 1))
    values, inverse = np.unique(labels, return_inverse=True)
    has_background = values[0] == 0
    offset = 0 if has_background else 1
    dtype = _smallest_dtype(values.size - int(has_background))
    return (inverse.reshape(labels.shape) + offset).astype(dtype)

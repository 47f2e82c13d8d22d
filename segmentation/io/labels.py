"""Reading label volumes (ground truth and predictions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from segmentation.errors import InputError


def read_labels(path: str | Path) -> np.ndarray:
    """Read a (Z, Y, X) integer label volume, 0 = background.

    Singleton axes (e.g. a channel axis of size 1) are dropped.

    Raises
    ------
    InputError
        When the file is missing, not a TIFF, not 3D, or not integer-valued.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} not found: give the path of a label TIFF")
    try:
        labels = np.squeeze(tifffile.imread(path))
    except Exception as error:  # tifffile raises several types for bad files
        raise InputError(f"{path} is not a readable TIFF ({error}): give a label TIFF") from error
    if labels.ndim != 3:
        raise InputError(f"{path} has shape {labels.shape}: a label volume must be 3D (Z, Y, X)")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise InputError(f"{path} holds non-integer values: a label volume must be integer")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iub":
        raise InputError(f"{path} has dtype {labels.dtype}: a label volume must be integer")
    if labels.dtype.kind == "i" and labels.min() < 0:
        raise InputError(f"{path} holds negative labels: use 0 for background and 1..N for cells")
    return labels

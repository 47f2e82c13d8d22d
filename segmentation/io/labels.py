"""Reading label volumes (ground truth and predictions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from segmentation.errors import InputError
from segmentation.io.tifffile_log import first_problem, tifffile_messages


def _truncated(path: Path, problem: str) -> InputError:
    return InputError(f"{path} is truncated or corrupted ({problem}): copy or export it again")


def read_labels(path: str | Path) -> np.ndarray:
    """Read a (Z, Y, X) integer label volume, 0 = background.

    Singleton axes (e.g. a channel axis of size 1) are dropped.

    Raises
    ------
    InputError
        When the file is missing, not a (complete) TIFF, not 3D, or not integer-valued.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} not found: give the path of a label TIFF")
    with tifffile_messages() as messages:
        try:
            labels = np.squeeze(tifffile.imread(path))
        except Exception as error:  # tifffile raises several types for bad files
            problem = first_problem(messages)
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            if problem is None:
                message = f"{path} is not a readable TIFF ({detail}): give a label TIFF"
                raise InputError(message) from error
            raise _truncated(path, problem) from error
        problem = first_problem(messages)
    if problem is not None:
        raise _truncated(path, problem)
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

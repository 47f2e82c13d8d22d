"""Whether a stack's outputs are complete, so that a rerun of a batch can skip it."""

from __future__ import annotations

from pathlib import Path

from segmentation.outputs import output_paths
from segmentation.pipeline import PARTIAL_SUFFIX


def expected_outputs(out_dir: Path, stem: str, format: str, gif: bool) -> list[Path]:
    """The outputs a run writes for the stack named ``stem``: labels and boundaries (two
    TIFFs or one OME-Zarr folder), the cell table and, when ``gif``, the preview."""
    paths = output_paths(out_dir, stem, format)
    if not gif:
        paths.pop("preview")
    return list(paths.values())


def outputs_complete(out_dir: Path, stem: str, format: str, gif: bool) -> bool:
    """Whether every output of :func:`expected_outputs` exists and none is being written.

    Outputs are written under their name plus :data:`~segmentation.pipeline.PARTIAL_SUFFIX`
    and renamed when all are done, so an output left with that suffix (a run that was
    stopped while writing) makes the stack incomplete.
    """
    paths = expected_outputs(out_dir, stem, format, gif)
    return all(path.exists() for path in paths) and not any(
        path.with_name(path.name + PARTIAL_SUFFIX).exists() for path in paths
    )

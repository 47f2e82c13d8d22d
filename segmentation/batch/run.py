"""A batch in this process, one stack after another (the default, without Dask)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from segmentation.batch.completeness import outputs_complete
from segmentation.batch.stacks import StackJob
from segmentation.batch.task import BatchOptions, StackOutcome, segment_stack
from segmentation.model import LoadedModel
from segmentation.pipeline import ProgressCallback

#: Makes the network-window progress callback of one stack.
WindowProgress = Callable[[StackJob], ProgressCallback]


def split_complete(
    jobs: Sequence[StackJob], out_dir: Path, options: BatchOptions
) -> tuple[list[StackJob], list[StackOutcome]]:
    """The jobs still to run, and a ``"skipped"`` outcome for each job whose outputs are
    complete (:func:`~segmentation.batch.completeness.outputs_complete`)."""
    pending: list[StackJob] = []
    skipped: list[StackOutcome] = []
    for job in jobs:
        if outputs_complete(out_dir, job.stem, options.format, options.gif):
            skipped.append(StackOutcome(job, "skipped"))
        else:
            pending.append(job)
    return pending, skipped


def run_in_process(
    jobs: Sequence[StackJob],
    out_dir: Path,
    model: LoadedModel,
    options: BatchOptions,
    window_progress: WindowProgress | None = None,
) -> Iterator[StackOutcome]:
    """Segment ``jobs`` one after another with ``model``, yielding each stack's outcome as
    it finishes (its outputs are written by then).

    ``window_progress(job)``, when given, makes the progress callback of the stack's
    network windows.
    """
    for job in jobs:
        progress = window_progress(job) if window_progress is not None else None
        yield segment_stack(job, out_dir, model, options, progress)

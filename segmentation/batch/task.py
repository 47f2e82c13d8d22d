"""One stack of a batch as one task: segment it, write its outputs, report how it went."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from segmentation import pipeline
from segmentation.batch.stacks import StackJob
from segmentation.errors import GermsegError
from segmentation.model import LoadedModel
from segmentation.parameters import (
    DEFAULT_MAX_VOXELS,
    DEFAULT_MEMORY_BUDGET_GB,
    DEFAULT_OUTPUT_FORMAT,
    InferenceParameters,
    SegmentationParameters,
)
from segmentation.pipeline import FileResult, ProgressCallback

logger = logging.getLogger(__name__)

#: How a stack of a batch ended: segmented, skipped (its outputs were complete) or failed.
OUTCOMES = ("done", "skipped", "failed")


@dataclass(frozen=True)
class BatchOptions:
    """What every stack of a batch is segmented with (the arguments of
    :func:`segmentation.pipeline.segment_file` besides the stack and the model)."""

    segmentation_parameters: SegmentationParameters = field(
        default_factory=SegmentationParameters
    )
    inference_parameters: InferenceParameters = field(default_factory=InferenceParameters)
    channels: tuple[int, int] | None = None
    max_voxels: int = DEFAULT_MAX_VOXELS
    gif: bool = True
    voxel_size: tuple[float, float, float] | None = None
    format: str = DEFAULT_OUTPUT_FORMAT
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB
    blockwise: bool = False


@dataclass(frozen=True)
class StackOutcome:
    """How one stack of a batch ended.

    Attributes
    ----------
    job : StackJob
        The stack and its output stem.
    status : str
        One of :data:`OUTCOMES`.
    result : FileResult or None
        What was written, for a stack that is ``"done"``.
    error : str or None
        One line saying why, for a stack that ``"failed"``.
    """

    job: StackJob
    status: str
    result: FileResult | None = None
    error: str | None = None


def failure_message(error: BaseException) -> str:
    """One line for a stack that failed: germseg's own message, else the exception's type
    and first line (the traceback goes to the debug log)."""
    if isinstance(error, GermsegError):
        return str(error)
    logger.debug("stack failed", exc_info=error)
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def segment_stack(
    job: StackJob,
    out_dir: Path,
    model: LoadedModel,
    options: BatchOptions,
    progress: ProgressCallback | None = None,
) -> StackOutcome:
    """Segment one stack and write its outputs into ``out_dir``; never raises for the stack.

    Parameters
    ----------
    job : StackJob
        The stack and the stem of its outputs.
    out_dir : Path
        Folder of the outputs.
    model : LoadedModel
        The network to run.
    options : BatchOptions
        Parameters shared by the batch.
    progress : callable(done, total), optional
        Called after each batch of network windows.

    Returns
    -------
    StackOutcome
        ``"done"`` with the written files, or ``"failed"`` with a one-line reason.
    """
    try:
        # looked up at call time, so that the pipeline's own function is what runs
        result = pipeline.segment_file(
            job.path,
            out_dir,
            model,
            segmentation_parameters=options.segmentation_parameters,
            inference_parameters=options.inference_parameters,
            channels=options.channels,
            max_voxels=options.max_voxels,
            gif=options.gif,
            progress=progress,
            stem=job.stem,
            voxel_size=options.voxel_size,
            format=options.format,
            memory_budget_gb=options.memory_budget_gb,
            blockwise=options.blockwise,
        )
    except Exception as error:  # one failed stack of a batch must not stop the others
        return StackOutcome(job, "failed", error=failure_message(error))
    return StackOutcome(job, "done", result=result)

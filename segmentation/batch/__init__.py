"""Many stacks at once: in this process or on a Dask cluster (:mod:`segmentation.batch.cluster`,
which needs ``distributed``), skipping stacks whose outputs are complete, and the cell
tables gathered into one CSV."""

from __future__ import annotations

from segmentation.batch.completeness import expected_outputs, outputs_complete
from segmentation.batch.gather import GATHERED_TABLE, STACK_FIELD, gather_cell_tables
from segmentation.batch.run import run_in_process, split_complete
from segmentation.batch.stacks import (
    STACK_COLUMN,
    StackJob,
    list_stacks,
    read_stack_list,
    stack_jobs,
    stacks_in_folder,
)
from segmentation.batch.task import OUTCOMES, BatchOptions, StackOutcome, segment_stack

__all__ = [
    "GATHERED_TABLE",
    "OUTCOMES",
    "STACK_COLUMN",
    "STACK_FIELD",
    "BatchOptions",
    "StackJob",
    "StackOutcome",
    "expected_outputs",
    "gather_cell_tables",
    "list_stacks",
    "outputs_complete",
    "read_stack_list",
    "run_in_process",
    "segment_stack",
    "split_complete",
    "stack_jobs",
    "stacks_in_folder",
]

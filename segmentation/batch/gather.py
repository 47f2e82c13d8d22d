"""The cell tables of a batch gathered into one CSV, with the stack each cell belongs to."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from segmentation.outputs import output_paths
from segmentation.pipeline import PARTIAL_SUFFIX

#: Name of the gathered table in a batch's output folder.
GATHERED_TABLE = "cells.csv"
#: First column of the gathered table: the output stem of the cell's stack.
STACK_FIELD = "stack"


def gather_cell_tables(out_dir: Path, stems: Sequence[str]) -> Path:
    """Write ``<out_dir>/cells.csv``: every row of each stack's ``<stem>_cells.csv``, in the
    order of ``stems``, after a first column ``stack`` holding the stem.

    The columns are those of the stacks' tables in the order first seen (a stack without
    a column leaves it empty). The file is written under a ``.partial`` name and renamed.

    Parameters
    ----------
    out_dir : Path
        The batch's output folder, where the stacks' tables are.
    stems : sequence of str
        Output stems of the stacks whose tables are gathered; each table must exist.

    Returns
    -------
    Path
        The gathered table.
    """
    columns: dict[str, None] = {STACK_FIELD: None}
    rows: list[dict[str, str]] = []
    for stem in stems:
        with output_paths(out_dir, stem)["cells"].open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns.update(dict.fromkeys(reader.fieldnames or ()))
            rows.extend({STACK_FIELD: stem, **row} for row in reader)
    path = out_dir / GATHERED_TABLE
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
    return path

"""Reports of one or more evaluated stacks: a CSV table and an F1-vs-IoU figure.

``results`` is a list of ``(name, metrics)`` pairs, ``metrics`` being the dict returned by
:func:`segmentation.evaluation.summary.evaluate_segmentation`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from segmentation.errors import InputError

#: Columns of the evaluation CSV, one row per (stack, IoU threshold).
CSV_COLUMNS: tuple[str, ...] = (
    "name",
    "iou_threshold",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "f1",
    "n_gt",
    "n_pred",
    "merges",
    "splits",
    "adapted_rand_error",
    "voi_split",
    "voi_merge",
)
_STACK_COLUMNS = CSV_COLUMNS[8:]


def _check_results(results: Sequence[tuple[str, dict]]) -> None:
    if not results:
        raise InputError("No evaluation results to report; evaluate at least one stack.")


def write_evaluation_csv(path: str | Path, results: Sequence[tuple[str, dict]]) -> Path:
    """Write evaluation results as a long ("tidy") CSV table.

    One row per (stack, IoU threshold), with columns :data:`CSV_COLUMNS`: the matching
    counts and scores at that threshold, followed by the stack's threshold-independent
    metrics (repeated on each of its rows), so that the file filters and plots directly
    (e.g. ``f1`` against ``iou_threshold`` grouped by ``name``). The per-size F1 is only in
    the JSON output.

    Parameters
    ----------
    path : str or Path
        CSV file to write; its folder is created if needed.
    results : sequence of (name, metrics)
        Stack name and the dict of ``evaluate_segmentation``.

    Returns
    -------
    Path
        The written file.
    """
    _check_results(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for name, metrics in results:
            stack = {column: metrics[column] for column in _STACK_COLUMNS}
            for row in metrics["per_threshold"]:
                writer.writerow({"name": name, **row, **stack})
    return path


def plot_f1_vs_iou(path: str | Path, results: Sequence[tuple[str, dict]]) -> Path:
    """Plot F1, precision and recall against the IoU threshold, one line per stack.

    Drawn on a standalone matplotlib ``Figure`` rendered by Agg (no display, no pyplot
    state) and saved as a 1500 x 450 pixel PNG.

    Parameters
    ----------
    path : str or Path
        PNG file to write; its folder is created if needed.
    results : sequence of (name, metrics)
        Stack name and the dict of ``evaluate_segmentation``.

    Returns
    -------
    Path
        The written file.
    """
    _check_results(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(15, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    for axis, score in zip(axes, ("f1", "precision", "recall"), strict=True):
        for name, metrics in results:
            rows = metrics["per_threshold"]
            axis.plot(
                [row["iou_threshold"] for row in rows],
                [row[score] for row in rows],
                marker="o",
                label=name,
            )
        axis.set_title(score.capitalize() if score != "f1" else "F1")
        axis.set_xlabel("IoU threshold")
        axis.set_xlim(0.0, 1.0)
        axis.set_ylim(0.0, 1.02)
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("score")
    axes[0].legend(fontsize="small", loc="lower left")
    figure.savefig(path, format="png")
    return path

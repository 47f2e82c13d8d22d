"""File names of one stack's outputs."""

from __future__ import annotations

from pathlib import Path


def output_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Paths of the outputs of the stack named ``stem`` in ``out_dir``.

    Returns
    -------
    dict
        ``labels``, ``boundaries``, ``preview`` and ``cells`` mapped to
        ``<stem>_labels.tif``, ``<stem>_boundaries.tif``, ``<stem>_preview.gif`` and
        ``<stem>_cells.csv`` in ``out_dir``.
    """
    out_dir = Path(out_dir)
    return {
        "labels": out_dir / f"{stem}_labels.tif",
        "boundaries": out_dir / f"{stem}_boundaries.tif",
        "preview": out_dir / f"{stem}_preview.gif",
        "cells": out_dir / f"{stem}_cells.csv",
    }

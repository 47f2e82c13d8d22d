"""Per-cell measurements (size, position, extent, mean intensities, neighbours) as a table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage

VoxelSize = tuple[float, float, float]

#: Columns of the cell table, in order (mean_ch<i> has one column per image channel).
CELL_TABLE_COLUMNS = (
    "label",
    "voxels",
    "volume_um3",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
    "mean_ch0",
    "mean_ch1",
    "neighbours",
)


def touching_neighbours(labels: np.ndarray) -> dict[int, list[int]]:
    """Labels that share a face (6-connectivity) with each label; background excluded.

    Returns
    -------
    dict
        Label id -> sorted list of touching label ids, for labels with at least one.
    """
    labels = np.asarray(labels)
    pair_codes = []
    largest = int(labels.max()) if labels.size else 0
    for axis in range(labels.ndim):
        before = np.take(labels, np.arange(labels.shape[axis] - 1), axis=axis)
        after = np.take(labels, np.arange(1, labels.shape[axis]), axis=axis)
        touching = (before != after) & (before > 0) & (after > 0)
        first = before[touching].astype(np.int64)
        second = after[touching].astype(np.int64)
        low, high = np.minimum(first, second), np.maximum(first, second)
        pair_codes.append(np.unique(low * (largest + 1) + high))
    codes = np.unique(np.concatenate(pair_codes))
    if codes.size == 0:
        return {}
    low, high = codes // (largest + 1), codes % (largest + 1)
    owners = np.concatenate([low, high])
    others = np.concatenate([high, low])
    order = np.lexsort((others, owners))
    owners, others = owners[order], others[order]
    starts = np.flatnonzero(np.diff(owners, prepend=-1))
    groups = np.split(others, starts[1:])
    return {int(owners[start]): group.tolist() for start, group in zip(starts, groups, strict=True)}


def _per_label_sums(
    labels: np.ndarray, n_bins: int, image: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel counts, coordinate sums (3, n) and intensity sums (C, n) per label id.

    Accumulated one z-plane at a time with ``np.bincount`` to keep memory small.
    """
    n_z, n_y, n_x = labels.shape
    rows = np.broadcast_to(np.arange(n_y, dtype=np.float64)[:, None], (n_y, n_x)).ravel()
    columns = np.broadcast_to(np.arange(n_x, dtype=np.float64)[None, :], (n_y, n_x)).ravel()
    n_channels = 0 if image is None else image.shape[0]
    counts = np.zeros(n_bins, dtype=np.int64)
    coordinate_sums = np.zeros((3, n_bins))
    intensity_sums = np.zeros((n_channels, n_bins))
    for z in range(n_z):
        plane = labels[z].ravel().astype(np.intp, copy=False)
        plane_counts = np.bincount(plane, minlength=n_bins)
        counts += plane_counts
        coordinate_sums[0] += plane_counts * z
        coordinate_sums[1] += np.bincount(plane, weights=rows, minlength=n_bins)
        coordinate_sums[2] += np.bincount(plane, weights=columns, minlength=n_bins)
        for channel in range(n_channels):
            weights = image[channel, z].ravel().astype(np.float64, copy=False)
            intensity_sums[channel] += np.bincount(plane, weights=weights, minlength=n_bins)
    return counts, coordinate_sums, intensity_sums


def cell_table(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    voxel_size: VoxelSize | None = None,
    neighbours: dict[int, list[int]] | None = None,
) -> list[dict]:
    """One row of measurements per cell of a (Z, Y, X) label volume.

    Parameters
    ----------
    labels : np.ndarray
        (Z, Y, X) non-negative integer labels, 0 = background.
    image : np.ndarray, optional
        (C, Z, Y, X) raw intensities; gives ``mean_ch<i>`` per channel (else empty).
    voxel_size : (float, float, float), optional
        (z, y, x) in µm; gives ``volume_um3`` (else empty).
    neighbours : dict, optional
        Label -> touching labels (e.g. from the region adjacency graph); computed from the
        label volume (shared faces) when None.

    Returns
    -------
    list of dict
        Keys as in ``CELL_TABLE_COLUMNS``: centroids in voxel coordinates, bounding boxes as
        [z0, z1) etc. (end exclusive), neighbours as ``"3;7;12"``. Empty fields are None.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a (Z, Y, X) volume, got shape {labels.shape}")
    if image is not None and image.shape[1:] != labels.shape:
        raise ValueError(f"image shape {image.shape} does not match labels {labels.shape}")
    if labels.size == 0 or labels.max() == 0:
        return []
    ids = None
    dense = labels
    if labels.max() > labels.size:
        ids = np.union1d(0, np.unique(labels))
        dense = np.searchsorted(ids, labels)
    n_bins = int(dense.max()) + 1
    counts, coordinate_sums, intensity_sums = _per_label_sums(dense, n_bins, image)
    boxes = ndimage.find_objects(dense)
    if neighbours is None:
        neighbours = touching_neighbours(labels)
    voxel_volume = float(np.prod(voxel_size)) if voxel_size is not None else None
    n_channels = max(2, intensity_sums.shape[0])
    rows = []
    for dense_id in np.flatnonzero(counts[1:]) + 1:
        label = int(ids[dense_id]) if ids is not None else int(dense_id)
        count = int(counts[dense_id])
        box = boxes[dense_id - 1]
        row: dict[str, object] = {
            "label": label,
            "voxels": count,
            "volume_um3": round(count * voxel_volume, 4) if voxel_volume is not None else None,
        }
        for axis, name in enumerate("zyx"):
            row[f"centroid_{name}"] = round(float(coordinate_sums[axis, dense_id]) / count, 3)
        for axis, name in enumerate("zyx"):
            row[f"bbox_{name}0"] = box[axis].start
        for axis, name in enumerate("zyx"):
            row[f"bbox_{name}1"] = box[axis].stop
        for channel in range(n_channels):
            mean = None
            if channel < intensity_sums.shape[0]:
                mean = round(float(intensity_sums[channel, dense_id]) / count, 4)
            row[f"mean_ch{channel}"] = mean
        row["neighbours"] = ";".join(str(other) for other in neighbours.get(label, []))
        rows.append(row)
    return rows


def write_cell_table(path: str | Path, rows: list[dict]) -> Path:
    """Write cell-table rows as CSV with a header (None written as an empty field)."""
    path = Path(path)
    fieldnames = list(rows[0]) if rows else list(CELL_TABLE_COLUMNS)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path

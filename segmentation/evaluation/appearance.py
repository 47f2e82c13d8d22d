"""Appearance statistics of a labelled stack, for comparing phantoms with real stacks.

The figures are those of ``shared/tools/stack_statistics.py`` (the workplace's measuring
tool, whose definitions are reproduced here exactly so that the suite can check phantoms
without it) plus a depth profile. Each channel is normalised by its 1st and 99.8th
percentiles, as germseg normalises its input. Regions come from the labels: cell interiors
(eroded 3 px in XY, away from faces), faces between two cells and faces between a cell and
the background (in-plane label changes, widened to 3 px) and the background (eroded 3 px).

:data:`REAL_STACK_STATISTICS` holds the figures measured on a real two-channel germline
stack with hand-made labels (``shared/docs/real-stack-statistics.md``), and
:func:`compare_with_real` says which figures of a phantom lie outside a tolerance of them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage as ndi

#: Real-stack figures per channel (``real-stack-statistics.md``). The depth profile is
#: given for channel 0 only (390 -> 620 -> 300 counts over 24 planes, peak at plane 4-7);
#: the same shape is used as the target for channel 1.
REAL_STACK_STATISTICS: dict[str, dict[str, float]] = {
    "channel_0": {
        "interior_mean": 0.34,
        "background_mean": 0.13,
        "cell_cell_face_over_interior": 1.22,
        "cell_background_face_over_interior": 0.97,
        "cell_cell_face_contrast_to_noise": 0.50,
        "interior_cv": 0.44,
        "pixel_noise_over_interior": 0.34,
        "neighbour_correlation_x": 0.42,
        "neighbour_correlation_z": 0.36,
        "high_pass_correlation_x_lag1": 0.10,
        "raw_noise_variance_over_mean": 57.0,
        "raw_fraction_zero": 0.10,
        "depth_first_over_peak": 0.63,
        "depth_peak_position": 0.24,
        "depth_last_over_peak": 0.48,
    },
    "channel_1": {
        "interior_mean": 0.20,
        "background_mean": 0.065,
        "cell_cell_face_over_interior": 1.38,
        "cell_background_face_over_interior": 1.06,
        "cell_cell_face_contrast_to_noise": 0.72,
        "interior_cv": 0.53,
        "pixel_noise_over_interior": 0.28,
        "neighbour_correlation_x": 0.71,
        "neighbour_correlation_z": 0.63,
        "high_pass_correlation_x_lag1": 0.26,
        "raw_noise_variance_over_mean": 24.0,
        "raw_fraction_zero": 0.25,
        "depth_first_over_peak": 0.63,
        "depth_peak_position": 0.24,
        "depth_last_over_peak": 0.48,
    },
}

#: Figures that are correlations: compared with an absolute tolerance (0.15), not a relative one.
CORRELATION_FIGURES = frozenset(
    {"neighbour_correlation_x", "neighbour_correlation_z", "high_pass_correlation_x_lag1"}
)

#: Figures the real-stacks issue asks phantoms to match (the others are reported only).
MATCHED_FIGURES = (
    "cell_cell_face_contrast_to_noise",
    "pixel_noise_over_interior",
    "high_pass_correlation_x_lag1",
    "raw_noise_variance_over_mean",
    "raw_fraction_zero",
    "cell_cell_face_over_interior",
    "cell_background_face_over_interior",
    "interior_mean",
    "background_mean",
    "depth_first_over_peak",
    "depth_peak_position",
    "depth_last_over_peak",
)


def _normalise(channel: np.ndarray) -> np.ndarray:
    low, high = np.percentile(channel, [1, 99.8])
    return np.clip((channel - low) / max(high - low, 1e-6), 0, 1)


def label_regions(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Interior, cell-cell face, cell-background face and background masks of a label volume."""
    foreground = labels > 0
    cell_cell = np.zeros_like(foreground)
    cell_background = np.zeros_like(foreground)
    for axis in (1, 2):
        shifted = np.roll(labels, 1, axis=axis)
        change = labels != shifted
        first = [slice(None)] * 3
        first[axis] = slice(0, 1)
        change[tuple(first)] = False
        cell_cell |= change & (labels > 0) & (shifted > 0)
        cell_background |= change & ((labels > 0) ^ (shifted > 0))
    widen = np.ones((1, 3, 3), bool)
    cell_cell = ndi.binary_dilation(cell_cell, structure=widen) & foreground
    cell_background = ndi.binary_dilation(cell_background, structure=widen) & foreground
    erode = np.ones((1, 7, 7), bool)
    interior = ndi.binary_erosion(foreground, structure=erode) & ~cell_cell
    background = ndi.binary_erosion(~foreground, structure=erode)
    return interior, cell_cell, cell_background, background


def _neighbour_correlation(values: np.ndarray, mask: np.ndarray, axis: int) -> float:
    ahead = [slice(None)] * 3
    behind = [slice(None)] * 3
    ahead[axis] = slice(1, None)
    behind[axis] = slice(None, -1)
    both = mask[tuple(ahead)] & mask[tuple(behind)]
    if both.sum() < 100:
        return float("nan")
    return float(np.corrcoef(values[tuple(ahead)][both], values[tuple(behind)][both])[0, 1])


def depth_profile(raw: np.ndarray, interior: np.ndarray) -> dict[str, float]:
    """Shape of the interior mean along Z: first and last plane over the peak, peak position.

    The per-plane means are smoothed over three planes (planes with fewer than 100 interior
    voxels are skipped); the peak position is the peak plane's index over ``Z - 1``.
    """
    counts = interior.sum(axis=(1, 2))
    sums = np.where(interior, raw, 0).sum(axis=(1, 2), dtype=np.float64)
    planes = np.flatnonzero(counts >= 100)
    if len(planes) < 3:
        return dict.fromkeys(
            ("depth_first_over_peak", "depth_peak_position", "depth_last_over_peak"), float("nan")
        )
    means = sums[planes] / counts[planes]
    smoothed = np.convolve(np.pad(means, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    peak = int(np.argmax(smoothed))
    return {
        "depth_first_over_peak": float(means[0] / smoothed[peak]),
        "depth_peak_position": float(planes[peak] / max(raw.shape[0] - 1, 1)),
        "depth_last_over_peak": float(means[-1] / smoothed[peak]),
    }


def channel_statistics(
    raw: np.ndarray,
    interior: np.ndarray,
    cell_cell: np.ndarray,
    cell_background: np.ndarray,
    background: np.ndarray,
    *,
    raw_counts: bool = True,
) -> dict[str, float]:
    """Statistics of one channel, normalised and (for raw camera counts) raw.

    ``raw_counts=False`` (an already normalised training patch) leaves out the figures that
    only mean something in camera counts (noise variance over mean, depth profile).
    """
    raw = raw.astype(np.float64)
    x = _normalise(raw)
    inside = x[interior].mean()
    spread = x[interior].std()
    steps = np.diff(x, axis=2)
    pairs = interior[:, :, 1:] & interior[:, :, :-1]
    raw_steps = np.diff(raw, axis=2)
    raw_noise_variance = (raw_steps[pairs].std() / np.sqrt(2)) ** 2
    high_pass = raw - ndi.uniform_filter(raw, (1, 15, 15))
    nan = float("nan")
    out = {
        "interior_mean": inside,
        "background_mean": x[background].mean() if background.any() else nan,
        "cell_cell_face_over_interior": x[cell_cell].mean() / inside if cell_cell.any() else nan,
        "cell_background_face_over_interior": (
            x[cell_background].mean() / inside if cell_background.any() else nan
        ),
        "cell_cell_face_contrast_to_noise": (
            (x[cell_cell].mean() - inside) / spread if cell_cell.any() else nan
        ),
        "interior_cv": spread / inside,
        "pixel_noise_over_interior": steps[pairs].std() / np.sqrt(2) / inside,
        "neighbour_correlation_x": _neighbour_correlation(x, interior, 2),
        "neighbour_correlation_z": _neighbour_correlation(x, interior, 0),
        "high_pass_correlation_x_lag1": _neighbour_correlation(high_pass, interior, 2),
        "raw_fraction_zero": float(np.mean(raw == raw.min())),
    }
    if raw_counts:
        out["raw_noise_variance_over_mean"] = raw_noise_variance / max(raw[interior].mean(), 1e-6)
        out.update(depth_profile(raw, interior))
    return {key: round(float(value), 3) for key, value in out.items()}


def stack_statistics(
    image: np.ndarray, labels: np.ndarray, *, raw_counts: bool = True
) -> dict[str, dict[str, float]]:
    """Per-channel appearance statistics and label statistics of a labelled stack.

    Parameters
    ----------
    image : ndarray, shape (C, Z, Y, X) or (Z, Y, X)
        Camera counts (or a normalised patch with ``raw_counts=False``).
    labels : ndarray, shape (Z, Y, X)
        0 = background, one id per cell.
    raw_counts : bool
        Whether ``image`` holds camera counts.

    Returns
    -------
    dict
        ``{"channel_0": {...}, "channel_1": {...}, "labels": {...}}``.
    """
    if image.ndim == 3:
        image = image[None]
    labels = np.asarray(labels).astype(np.int64)
    regions = label_regions(labels)
    result = {
        f"channel_{c}": channel_statistics(image[c], *regions, raw_counts=raw_counts)
        for c in range(image.shape[0])
    }
    _, sizes = np.unique(labels[labels > 0], return_counts=True)
    result["labels"] = {
        "cells": int(len(sizes)),
        "median_cell_voxels": int(np.median(sizes)) if len(sizes) else 0,
        "background_fraction": round(float((labels == 0).mean()), 3),
    }
    return result


def within_tolerance(
    figure: str,
    value: float,
    real: float,
    *,
    relative: float = 0.3,
    correlation: float = 0.15,
) -> bool:
    """Whether ``value`` lies within the tolerance of the real ``figure``."""
    if not np.isfinite(value):
        return False
    if figure in CORRELATION_FIGURES:
        return abs(value - real) <= correlation
    return abs(value - real) <= relative * abs(real)


def compare_with_real(
    statistics: Mapping[str, Mapping[str, float]],
    *,
    figures: tuple[str, ...] = MATCHED_FIGURES,
    relative: float = 0.3,
    correlation: float = 0.15,
) -> list[str]:
    """Figures of ``statistics`` (e.g. per-figure medians over phantoms) out of tolerance.

    Returns
    -------
    list of str
        One ``"channel_0 interior_mean: 0.61 (real 0.34)"`` line per figure out of range;
        empty when all match.
    """
    problems = []
    for channel, real_figures in REAL_STACK_STATISTICS.items():
        for figure in figures:
            value = float(statistics.get(channel, {}).get(figure, float("nan")))
            real = real_figures[figure]
            if not within_tolerance(
                figure, value, real, relative=relative, correlation=correlation
            ):
                problems.append(f"{channel} {figure}: {value:.3f} (real {real})")
    return problems

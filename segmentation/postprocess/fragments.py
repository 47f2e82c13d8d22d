"""Merge fragments of large cells (cut out by nucleus edges or thick membranes) into them."""

from __future__ import annotations

import logging

import numpy as np

from segmentation.errors import InputError
from segmentation.parameters import DEFAULT_FRAGMENT_CONTACT, DEFAULT_FRAGMENT_RATIO
from segmentation.postprocess.filters import _check_labels

logger = logging.getLogger(__name__)

#: Label used for the stack's Y and X faces when counting contacts.
_OUTSIDE = -1


def segment_contacts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contact areas (in voxel faces) between touching labels, background included.

    Faces on the stack's Y and X borders count as contact with an outside label ``-1``
    (a cell cut by the field's edge is not enclosed); faces on the Z borders are not
    counted, because cells and nuclei routinely reach the first and last plane.

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X)

    Returns
    -------
    first, second : ndarray of int64
        Each unordered pair of touching labels once, ``first < second``.
    area : ndarray of int64
        Number of voxel faces the pair shares.
    """
    labels = _check_labels(labels)
    if labels.ndim != 3:
        raise InputError(f"labels must be (Z, Y, X), got shape {labels.shape}")
    firsts, seconds = [], []
    for axis in range(3):
        low = np.moveaxis(labels, axis, 0)[:-1]
        high = np.moveaxis(labels, axis, 0)[1:]
        differ = low != high
        a, b = low[differ].astype(np.int64), high[differ].astype(np.int64)
        firsts.append(np.minimum(a, b))
        seconds.append(np.maximum(a, b))
    for axis in (1, 2):
        for index in (0, -1):
            face = np.take(labels, index, axis=axis).ravel().astype(np.int64)
            firsts.append(np.full(face.shape, _OUTSIDE, np.int64))
            seconds.append(face)
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    if first.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    offset = int(second.max()) + 2
    keys, area = np.unique((first + 1) * offset + second, return_counts=True)
    return keys // offset - 1, keys % offset, area.astype(np.int64)


def merge_fragments(
    labels: np.ndarray,
    max_size_ratio: float = DEFAULT_FRAGMENT_RATIO,
    min_contact: float = DEFAULT_FRAGMENT_CONTACT,
) -> np.ndarray:
    """Merge small segments that lie mostly against one much larger cell into that cell.

    The dark nucleus of an oocyte, or a thick, uneven stretch of its membrane, has edges
    that the network can mistake for cell borders, and the watershed then cuts fragments
    out of a large cell. A segment is merged into the cell ``n`` with which it shares the
    largest part of its surface when that part is at least ``min_contact`` of its surface
    (background and the stack's Y/X borders count as surface, the Z borders do not) and
    the segment is at most ``max_size_ratio`` times as large as ``n``. Contacts are
    computed once; chains (a fragment against a fragment against a cell) end at the cell.

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X)
        Cell labels, 0 = background.
    max_size_ratio : float
        Largest size of a fragment relative to the cell it joins; 0 disables merging.
    min_contact : float
        Smallest fraction of a fragment's surface shared with the cell it joins, in (0, 1].

    Returns
    -------
    ndarray
        Labels of the same dtype; merged fragments take their cell's label.
    """
    labels = _check_labels(labels)
    if not 0.0 < min_contact <= 1.0:
        raise InputError(f"min_contact must lie in (0, 1], got {min_contact}")
    if max_size_ratio < 0:
        raise InputError(f"fragment size ratio must be >= 0, got {max_size_ratio}")
    if max_size_ratio == 0:
        return labels.copy()
    first, second, area = segment_contacts(labels)
    if area.size == 0:
        return labels.copy()
    n_labels = int(labels.max()) + 1
    sizes = np.bincount(labels.ravel(), minlength=n_labels)
    # every contact once from each side; the outside (-1) and background (0) only count
    # towards the surface of the cells they touch
    owner = np.concatenate([first, second])
    other = np.concatenate([second, first])
    shared = np.concatenate([area, area])
    is_cell = owner > 0
    owner, other, shared = owner[is_cell], other[is_cell], shared[is_cell]
    surface = np.bincount(owner, weights=shared, minlength=n_labels)
    order = np.lexsort((-shared, owner))
    owner, other, shared = owner[order], other[order], shared[order]
    first_of_owner = np.ones(owner.size, bool)
    first_of_owner[1:] = owner[1:] != owner[:-1]
    best_owner, best_other, best_area = (
        owner[first_of_owner],
        other[first_of_owner],
        shared[first_of_owner],
    )
    target = np.arange(n_labels, dtype=np.int64)
    enclosed = (
        (best_other > 0)
        & (best_area >= min_contact * surface[best_owner])
        & (sizes[best_owner] <= max_size_ratio * sizes[np.maximum(best_other, 0)])
    )
    for segment, host in sorted(
        zip(best_owner[enclosed], best_other[enclosed], strict=True), key=lambda p: sizes[p[0]]
    ):
        target[segment] = host
    # follow chains (a fragment inside a nucleus inside an oocyte) to their final host
    for _ in range(n_labels):
        following = target[target]
        if np.array_equal(following, target):
            break
        target = following
    merged = int(np.count_nonzero(target != np.arange(n_labels)))
    if merged == 0:
        return labels.copy()
    logger.info("merged %d fragments into the cells they lie against", merged)
    return target[labels].astype(labels.dtype)

"""A bounded in-memory cache of network predictions (and of the super-pixels computed from
them), so re-tuning skips the network (and, when only later parameters change, the
watershed)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from segmentation.pipeline import BoundaryPrediction

_CHUNK_BYTES = 1 << 20


def prediction_bytes(prediction: BoundaryPrediction) -> int:
    """Memory held by a prediction's arrays."""
    size = prediction.boundary_probability.nbytes
    if prediction.foreground_probability is not None:
        size += prediction.foreground_probability.nbytes
    return size


def cached_bytes(value: BoundaryPrediction | np.ndarray) -> int:
    """Memory held by a cached prediction or array."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    return prediction_bytes(value)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class PredictionCache:
    """Least-recently-used map from a key to a :class:`BoundaryPrediction` (or an array, such
    as super-pixels), bounded by bytes.

    Parameters
    ----------
    max_bytes : int
        Total size of the cached arrays; the least recently used entries are dropped to stay
        under it. A prediction larger than this is not cached. 0 disables the cache.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple, BoundaryPrediction | np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> BoundaryPrediction | np.ndarray | None:
        """The cached value for ``key`` (now the most recently used), or None."""
        with self._lock:
            prediction = self._entries.get(key)
            if prediction is not None:
                self._entries.move_to_end(key)
            return prediction

    def put(self, key: tuple, prediction: BoundaryPrediction | np.ndarray) -> None:
        """Store a value, dropping the least recently used ones to fit the budget."""
        size = cached_bytes(prediction)
        if size > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= cached_bytes(previous)
            while self._entries and self._bytes + size > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= cached_bytes(dropped)
            self._entries[key] = prediction
            self._bytes += size

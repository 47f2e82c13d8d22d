"""A bounded in-memory cache of network predictions, so re-tuning skips the network."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

from segmentation.pipeline import BoundaryPrediction

_CHUNK_BYTES = 1 << 20


def prediction_bytes(prediction: BoundaryPrediction) -> int:
    """Memory held by a prediction's arrays."""
    size = prediction.boundary_probability.nbytes
    if prediction.foreground_probability is not None:
        size += prediction.foreground_probability.nbytes
    return size


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class PredictionCache:
    """Least-recently-used map from a key to a :class:`BoundaryPrediction`, bounded by bytes.

    Parameters
    ----------
    max_bytes : int
        Total size of the cached arrays; the least recently used entries are dropped to stay
        under it. A prediction larger than this is not cached. 0 disables the cache.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple, BoundaryPrediction] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> BoundaryPrediction | None:
        """The cached prediction for ``key`` (now the most recently used), or None."""
        with self._lock:
            prediction = self._entries.get(key)
            if prediction is not None:
                self._entries.move_to_end(key)
            return prediction

    def put(self, key: tuple, prediction: BoundaryPrediction) -> None:
        """Store a prediction, dropping the least recently used ones to fit the budget."""
        size = prediction_bytes(prediction)
        if size > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= prediction_bytes(previous)
            while self._entries and self._bytes + size > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= prediction_bytes(dropped)
            self._entries[key] = prediction
            self._bytes += size

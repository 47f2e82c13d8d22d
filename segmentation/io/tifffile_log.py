"""Keep tifffile's own log lines away from the user while germseg reads a file.

tifffile logs what it finds wrong in a file (``ERROR tifffile: ... invalid page offset``)
on its logger ``"tifffile"`` and carries on. While :func:`tifffile_messages` is active in a
thread, the records tifffile emits in that thread are collected for the reader, which turns
them into its own one-line message, and passed to germseg's debug log instead of being shown.
Records from other threads, and all records outside the context, pass unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_TIFFFILE_LOGGER = logging.getLogger("tifffile")
#: tifffile names the objects it complains about in angle brackets, possibly nested:
#: ``<TiffTag.fromfile> raised TiffFileError('<tifffile.TiffTag 270 @70> invalid value
#: offset 182')``; the problem is the text after the last one.
_PROBLEM = re.compile(r"(?:.*>)?\s*(?P<problem>[^<>]*?)['\")\s]*$")


class _Collector(logging.Filter):
    """Takes the records of threads that are reading into their own lists and drops them."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def open(self) -> list[logging.LogRecord]:
        """Start collecting this thread's records; returns the list they go into."""
        stack = self._stack()
        stack.append([])
        return stack[-1]

    def close(self) -> None:
        """Stop collecting into the list of the innermost :meth:`open` of this thread."""
        self._stack().pop()

    def filter(self, record: logging.LogRecord) -> bool:
        stack = self._stack()
        if not stack:
            return True
        stack[-1].append(record)
        logger.debug("tifffile %s: %s", record.levelname, record.getMessage())
        return False

    def _stack(self) -> list[list[logging.LogRecord]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack


_COLLECTOR = _Collector()
_TIFFFILE_LOGGER.addFilter(_COLLECTOR)


@contextlib.contextmanager
def tifffile_messages() -> Iterator[list[logging.LogRecord]]:
    """Collect, instead of showing, what tifffile logs in this thread inside the block.

    Yields
    ------
    list of logging.LogRecord
        Filled with tifffile's records as they are emitted; each also goes to the debug
        log of ``segmentation.io.tifffile_log``.
    """
    records = _COLLECTOR.open()
    try:
        yield records
    finally:
        _COLLECTOR.close()


def first_problem(records: list[logging.LogRecord], level: int = logging.ERROR) -> str | None:
    """What the first record at ``level`` or above says is wrong, in a few words; or None.

    Examples
    --------
    >>> record = logging.makeLogRecord(
    ...     {"levelno": logging.ERROR, "msg": "<tifffile.TiffPages @8> invalid page offset 96"}
    ... )
    >>> first_problem([record])
    'invalid page offset 96'
    """
    for record in records:
        if record.levelno >= level:
            lines = record.getMessage().splitlines() or [""]
            match = _PROBLEM.match(lines[0])
            return (match.group("problem") if match else "") or lines[0]
    return None

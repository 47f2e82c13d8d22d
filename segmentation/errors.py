"""Exceptions raised by germseg.

Every exception carries a one-line message that names the problem and what to do, so that
the CLI, the REST API and the web UI can show it to the user unchanged.
"""

from __future__ import annotations


class GermsegError(Exception):
    """Base class of all errors that germseg reports to a user."""


class InputError(GermsegError, ValueError):
    """The input stack (or a parameter describing it) cannot be processed."""


class WeightsError(GermsegError):
    """Model weights are missing, unreadable or do not match the model card."""

"""The command line's own error (its other errors are the layers' :class:`~dass.errors.DassError` s)."""

from __future__ import annotations

from ..errors import DassError

__all__ = ["CLIError"]


class CLIError(DassError, status=400):
    """A user-facing command-line error: printed without a traceback, exit status 2."""

"""Errors of the still-image part of :mod:`dass.stm` (Nanonis, MATRIX, logbooks).

One root, :class:`StmFileError`: a file (or one of its fields) cannot be used. ``str(err)``
names the file and says what is wrong and what to do; ``err.path`` and ``err.problem`` keep the
two parts apart for a user-facing message.
"""

from __future__ import annotations

import os

from ..errors import DassError

__all__ = ["StmFileError", "NanonisFileError", "MatrixFileError", "LogbookError", "StepError"]


class StmFileError(DassError, ValueError, status=422):
    """A file of the STM stack is unreadable, truncated, of the wrong kind, or lacks a field.

    Parameters
    ----------
    path : str or path-like
        The file (or URL) as the caller gave it.
    problem : str
        What is wrong, and where useful what to fix, in words for a person.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NanonisFileError(StmFileError):
    """A Nanonis ``.sxm`` image or ``.dat`` spectrum that nanonispy2 cannot read as such."""


class MatrixFileError(StmFileError):
    """An Omicron MATRIX data file (``*.Z_mtrx``, …) or its ``*_0001.mtrx`` result file is
    missing or unreadable."""


class LogbookError(StmFileError):
    """A sample-preparation logbook (CSV or YAML) with a malformed row or field."""


class StepError(DassError, ValueError, status=422):
    """An invalid processing step list for :func:`dass.stm.still.apply` (unknown step, unknown
    or ill-typed parameter); the message names the step by its position."""

"""Exceptions of :mod:`dass.data`.

Every error raised on purpose by the data layer derives from :class:`DassDataError`, so a
caller (the hub, the service, the CLI) can catch one class and show ``str(err)`` to a person:
the messages say what is wrong and how to fix it, never a backend traceback.
"""

from __future__ import annotations

from ..errors import DassError

__all__ = ["DassDataError", "StorageError", "MetadataError", "AccountError"]


class DassDataError(DassError, status=503):
    """Root of all errors raised by :mod:`dass.data`.

    An API caller is told that the catalogue is unavailable (503); the message itself, which
    names the database or the storage location, goes to the log and to the operator.
    """

    public_message = "the dataset catalogue is unavailable right now; try again later or see the service log"


class StorageError(DassDataError):
    """The repository storage cannot be reached, read, or is not set up as configured.

    Backend exceptions (botocore, aiohttp, ``OSError``) are translated into this class; the
    original exception is kept as ``__cause__`` for the logs.
    """

    public_message = "the repository storage is unavailable right now; try again later or see the service log"


class MetadataError(DassDataError, status=422):
    """A metadata file (``dataset.json``, ``proposal.json``) is invalid.

    Parameters
    ----------
    path : str
        URL or path of the offending file.
    field : str
        Dotted name of the offending field (e.g. ``access.embargo_until``,
        ``creators[0].name``), or ``""`` when the whole file is at fault (bad JSON, too large,
        missing).
    message : str
        What is wrong, written for the person who maintains the file.

    Examples
    --------
    >>> str(MetadataError("file:///repo/p1/d1/dataset.json", "title", "is required"))
    'file:///repo/p1/d1/dataset.json: title: is required'
    >>> str(MetadataError("file:///repo/p1/d1/dataset.json", "", "missing dataset.json"))
    'file:///repo/p1/d1/dataset.json: missing dataset.json'
    """

    def __init__(self, path: str, field: str, message: str) -> None:
        self.path = str(path)
        self.field = field
        self.message = message
        super().__init__(path, field, message)

    def __str__(self) -> str:
        if self.field:
            return f"{self.path}: {self.field}: {self.message}"
        return f"{self.path}: {self.message}"

    @property
    def user_message(self) -> str:
        """The problem and its field, without the file's location inside the repository."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def __reduce__(self):  # keep pickling (multiprocessing, logging handlers) working
        return (type(self), (self.path, self.field, self.message))

    def to_json(self) -> dict[str, str]:
        """The error as a JSON-able dict ``{"path", "field", "message"}`` for REST answers."""
        return {"path": self.path, "field": self.field, "message": self.message}


class AccountError(DassDataError, status=500):
    """A user's Unix account cannot be found, created or used (see :mod:`dass.data.accounts`).

    The message names the setting to change (``c.UserAccounts.*``) for the administrator; a
    user is told only that their account could not be set up.
    """

    public_message = "your account on this machine could not be set up; the administrator finds why in the log"

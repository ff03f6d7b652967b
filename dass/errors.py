"""The root of every error dass raises on purpose: :class:`DassError`.

Each package keeps its own exception classes (``DassDataError``, ``KmapInputError``,
``JobRequestError``…), and each of them derives from :class:`DassError`, next to the builtin
it already was (``ValueError``, ``RuntimeError``), so existing ``except ValueError`` clauses
still catch it. A :class:`DassError` carries what the two front doors need, apart from its
log text, in the manner of JupyterHub's ``SpawnException`` (``jupyterhub_message``) and
papermill's ``PapermillException``:

- ``status``: the HTTP status the dass service answers with (a class default, which an
  instance may override);
- ``user_message``: the text a caller of the API sees. Every dass message is written for the
  person who must fix the problem, so it defaults to ``str(err)``; classes whose text names
  internals (database URLs, storage locations) set ``public_message`` instead, and a raiser
  may pass ``user_message=``;
- ``log_message``: ``str(err)``, the full text for the log and for the operator at the CLI;
- ``exit_code``: the exit status of the ``dass`` command line (2, as for a usage error).

The mapping is done once per front door: :meth:`dass.service.handlers.BaseHandler.write_error`
answers ``{"status": err.status, "message": err.user_message}``, and :func:`dass.cli.main`
prints ``dass: error: <log_message>`` and exits with ``err.exit_code`` (no traceback).

Examples
--------
>>> class TooLarge(DassError, status=413):
...     pass
>>> err = TooLarge("upload.zip is 3 GB; the limit is 1 GB")
>>> err.status, err.user_message, err.exit_code
(413, 'upload.zip is 3 GB; the limit is 1 GB', 2)
>>> DassError("database sqlite:////srv/x.db is locked", status=503,
...           user_message="the catalogue is busy; try again").user_message
'the catalogue is busy; try again'
>>> class Input(DassError, ValueError):
...     status = 422  # the same as ``status=422`` in the class line
>>> isinstance(Input("bad"), ValueError)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = ["DassError", "INTERNAL_ERROR", "json_kind"]

#: What a caller sees for an error that is not a :class:`DassError` (the traceback is logged).
INTERNAL_ERROR = "internal error; see the service log"


class DassError(Exception):
    """Root of every error dass raises on purpose.

    Parameters
    ----------
    *args
        As for :class:`Exception`; ``str(err)`` is the log message.
    status : int, optional
        HTTP status for this instance (default: the class's ``status``).
    user_message : str, optional
        Text answered to an API caller instead of ``str(err)``.
    """

    #: HTTP status the dass service answers with.
    status: int = 500
    #: Exit status of the ``dass`` command line.
    exit_code: int = 2
    #: A fixed text answered to API callers instead of ``str(err)``, for classes whose
    #: messages name internals (``None``: ``str(err)``).
    public_message: ClassVar[str | None] = None

    def __init_subclass__(cls, *, status: int | None = None, **kwargs: object) -> None:
        # ``class SemReadError(DassError, ValueError, status=422)``: the status on one line
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status

    def __init__(self, *args: object, status: int | None = None, user_message: str | None = None) -> None:
        super().__init__(*args)
        if status is not None:
            self.status = status
        self._user_message = user_message

    @property
    def user_message(self) -> str:
        """What the caller of the API is told (never a traceback, never internals)."""
        explicit = getattr(self, "_user_message", None)  # a builtin first base skips __init__
        if explicit:
            return explicit
        if self.public_message is not None:
            return self.public_message
        return str(self)

    @property
    def log_message(self) -> str:
        """The full text, for the log and for the operator at the command line."""
        return str(self)


def json_kind(value: Any) -> str:
    """What a JSON value is, in words, for error messages ("must be a list, not a string").

    Examples
    --------
    >>> [json_kind(v) for v in (None, True, 3, "x", [1], {"a": 1})]
    ['null', 'a boolean', 'a number', 'a string', 'a list', 'an object']
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__

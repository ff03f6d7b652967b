"""What a request to the dass service may hold: the bounds (:class:`RequestLimits`, set from
``c.DassService``) and the pure checks of JSON bodies and names that every handler uses
(:meth:`dass.service.handlers.BaseHandler.parse_json` and ``check_name`` call them).

A refused input raises :class:`RequestRefused`, a :class:`~dass.errors.DassError` with status
400 whose message says what to fix; the handlers' ``write_error`` answers it as JSON.

Examples
--------
>>> parse_json(b'{"a": [1, 2]}', RequestLimits())
{'a': [1, 2]}
>>> parse_json(b"[" * 100 + b"]" * 100, RequestLimits(max_json_depth=64))
Traceback (most recent call last):
...
dass.service.limits.RequestRefused: the request body nests arrays or objects deeper than 64 levels (c.DassService.max_json_depth)
>>> check_name("sem/service/a.ipynb", "notebook", RequestLimits(), path=True)
'sem/service/a.ipynb'
>>> check_name("a\\x00b", "notebook", RequestLimits())
Traceback (most recent call last):
...
dass.service.limits.RequestRefused: notebook contains a NUL, a control character or an invalid unicode character; send plain text
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import DassError

__all__ = ["MAX_INTEGER", "RequestLimits", "RequestRefused", "check_json", "check_name", "parse_json"]


class RequestRefused(DassError, ValueError, status=400):
    """A request input no handler may use (the message names the field and the fix)."""


#: Largest integer a query parameter (``offset``…) or a JSON body may hold: SQLite's and a
#: file offset's range (a signed 64-bit integer); larger ones answer 400 instead of overflowing.
MAX_INTEGER = 2**63 - 1
#: Longest path (characters) a request may name, the operating system's ``PATH_MAX``.
MAX_PATH_LENGTH = 4096
#: Characters never accepted in names, paths or JSON strings: NUL (it ends a C string, so
#: every file and database call refuses it) and lone UTF-16 surrogates (not encodable).
BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class RequestLimits:
    """The bounds every request is checked against (set from ``c.DassService``).

    Parameters
    ----------
    max_body_bytes : int
        Largest request body of a route that does not set its own (``body_limit``).
    max_json_depth : int
        Deepest nesting of arrays and objects in a JSON body.
    max_name_length : int
        Longest name, and longest component of a path, in characters.
    discard_body_bytes : int
        How much of a refused request's body is read and thrown away before the refusal is
        answered, so that a proxy in front passes the answer on (see :meth:`BaseHandler.send_error`).
    spool_bytes : int
        How much of a request body is kept in memory; the rest goes to a temporary file.
    spool_dir : str
        Folder of those temporary files (and of the files taken out of uploads); empty: the
        system's temporary folder.
    """

    max_body_bytes: int = 16 * 1024**2
    max_json_depth: int = 64
    max_name_length: int = 255
    discard_body_bytes: int = 1024**3
    spool_bytes: int = 1024**2
    spool_dir: str = ""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def check_json(doc: Any, max_depth: int) -> None:
    """Refuse (400) a parsed JSON document nesting deeper than ``max_depth``, holding an
    integer beyond 64 bits or a string (or key) with a NUL or a lone surrogate. Iterative, so
    no document can exhaust the stack."""
    stack: list[tuple[Any, int, str]] = [(doc, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= max_depth:
                raise RequestRefused(f"the request body nests arrays or objects deeper than {max_depth} levels "
                                    "(c.DassService.max_json_depth)")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and BAD_CHARACTERS.search(key):
                    raise RequestRefused(f"a key in the request body{where} contains a NUL or an invalid unicode "
                                        "character")
                stack.append((item, depth + 1, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"))
        elif isinstance(value, str):
            if BAD_CHARACTERS.search(value):
                raise RequestRefused(f"the request body{' at ' + where.lstrip('.') if where else ''} contains a NUL "
                                    "or an invalid unicode character; send plain text")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            raise RequestRefused(f"the number at {where.lstrip('.') or 'the top'} of the request body is out of range "
                                f"(at most {MAX_INTEGER} in magnitude)")


def parse_json(body: bytes, limits: RequestLimits, empty: bytes = b"null") -> Any:
    """A request body as JSON (``empty`` stands for an empty body).

    Raises
    ------
    RequestRefused
        When it is not JSON, nests deeper than ``limits.max_json_depth``, holds an integer
        beyond 64 bits, a number that is not finite, or a string with a NUL or a lone surrogate.
    """
    depth = limits.max_json_depth
    try:
        doc = json.loads(body or empty, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise RequestRefused(f"the request body nests arrays or objects deeper than {depth} levels "
                             "(c.DassService.max_json_depth)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestRefused(f"the request body is not valid JSON: {e}") from None
    check_json(doc, depth)
    return doc


def check_name(value: Any, field: str, limits: RequestLimits, *, path: bool = False) -> str:
    """A name (or with ``path``, a ``/``-separated path) from a request, returned as it is.

    Raises
    ------
    RequestRefused
        When it is not a string, holds a NUL, a control character or a lone surrogate, or is
        longer than ``limits.max_name_length`` characters (each part of a path; a whole path
        at most 4096).
    """
    limit = limits.max_name_length
    if not isinstance(value, str):
        raise RequestRefused(f"{field} must be a string, not {type(value).__name__}")
    if BAD_CHARACTERS.search(value) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise RequestRefused(f"{field} contains a NUL, a control character or an invalid unicode character; "
                             "send plain text")
    parts = value.split("/") if path else [value]
    if len(value) > MAX_PATH_LENGTH or any(len(p) > limit for p in parts):
        what = "each part of a path" if path else "a name"
        raise RequestRefused(f"{field} is too long ({len(value)} characters): {what} may have at most {limit} "
                             "characters (c.DassService.max_name_length)")
    return value

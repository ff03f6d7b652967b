"""Same-machine file handoff of the data gateway, for ``file://`` repositories.

A process on the service's machine (a session, a job, a notebook) may ask the dass service
for a read-only **file descriptor** of one repository file instead of its bytes over HTTP: it
sends its token and the ``dass://`` path over a Unix socket, the service checks them with the
same rule as every gateway request (:mod:`dass.service.gateway`), opens the file itself
(read-only, never following a link) and passes the open descriptor back (``SCM_RIGHTS``). The
reader then reads at the speed of the page cache, and still cannot reach anything else: the
repository folder stays closed to it (0700); the descriptor grants that one file, read-only.
Every handoff is one audit row (``data.open``, with the file's size).

The socket lives in the abstract namespace of Linux (no file, no permission bits to manage):
its name is derived from the state folder (:func:`socket_name`), so the hub (for sessions),
the job service (for jobs) and the service agree on it; sessions and jobs find it in
``$DASS_GATEWAY_SOCKET``. Where there is none (another machine, S3 storage), ``dass://``
reads over HTTP as before.

Examples
--------
>>> socket_name(state="/srv/dass/state", repository="file:///srv/dass/repository").startswith("@dass-gateway-")
True
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import DassError

__all__ = ["SOCKET_ENV", "socket_name", "open_remote", "HandoffRefused"]

#: the variable naming the socket in sessions and jobs (``@name``: the abstract namespace)
SOCKET_ENV = "DASS_GATEWAY_SOCKET"
#: the most bytes of one request or answer line
MAX_LINE = 64 * 1024


def socket_name(config: Any = None, *, state: str | os.PathLike | None = None,
                repository: str | None = None) -> str:
    """``@dass-gateway-<hash>``: one name per platform on a machine, from its state folder and
    its repository (``c.Storage.url``), which the hub, the job service and the service share."""
    if state is None:
        from .paths import state_dir

        state = state_dir(config)
    if repository is None:
        from .storage import Storage

        repository = Storage(config=config).url
    key = f"{Path(state).resolve()}\n{repository}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"@dass-gateway-{digest}"


def _address(name: str) -> str:
    return "\0" + name[1:] if name.startswith("@") else name


class HandoffRefused(DassError):
    """The service refused the handoff (``status`` is the HTTP status it would answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def open_remote(name: str, token: str, path: str, timeout: float = 30.0) -> tuple[int, int]:
    """Ask the service behind socket ``name`` for a read-only descriptor of ``dass://path``.

    Returns ``(fd, size)``. Raises :class:`HandoffRefused` when the service refuses (401, 403,
    404, 400), ``ConnectionError`` when there is no such socket (the caller reads over HTTP).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(_address(name))
        except OSError as e:
            raise ConnectionError(f"no dass gateway socket {name}: {e}") from e
        sock.sendall(json.dumps({"token": token, "path": path}).encode() + b"\n")
        fds = array.array("i")
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_LINE:
            msg, ancdata, _flags, _addr = sock.recvmsg(MAX_LINE, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            if not msg:
                break
            data += msg
    try:
        answer = json.loads(data)
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"the dass gateway socket {name} answered {data[:200]!r}") from None
    if answer.get("status", 200) >= 400 or not fds:
        for fd in fds:
            os.close(fd)
        raise HandoffRefused(int(answer.get("status") or 500), str(answer.get("message") or "refused"))
    for extra in fds[1:]:
        os.close(extra)
    return fds[0], int(answer["size"])

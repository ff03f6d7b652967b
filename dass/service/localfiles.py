"""The service's end of the same-machine file handoff (:mod:`dass.data.localfiles`).

A Unix socket in the abstract namespace, served while the repository is ``file://``: each
connection carries one line ``{"token", "path"}``; the token is checked as a gateway request
checks it (a job's token by its grant; a hub token with the hub, its scopes, and a session's
grant), the path with :func:`~dass.service.gateway.clean_path` and the same read rule
(:meth:`~dass.service.gateway.DataGateway.may_read`); then the file is opened read-only without
following links, checked to lie inside its dataset, and its descriptor sent back with
``{"size": n}``. A refusal answers ``{"status": 401|403|404|400, "message": …}`` and passes
nothing. Every request leaves one audit row (``data.open``), denied ones included.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from typing import Any

from ..data.access import Identity
from ..data.audit import AuditRecord
from ..data.grants import JOB, JOB_TOKEN_PREFIX, SESSION
from ..data.localfiles import MAX_LINE, _address
from ..errors import DassError
from .gateway import clean_path
from .handlers import ApiError, dataset_id_of

__all__ = ["LocalFileServer"]


class LocalFileServer:
    """Hands out read-only descriptors of repository files (see the module docstring).

    Parameters
    ----------
    app : DassService
        Gives the hub authentication, identities, grants, catalogue, storage, gateway settings
        and audit log.
    name : str
        The socket (``@name`` for the abstract namespace).
    """

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.name = name
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=_address(self.name), limit=MAX_LINE)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = AuditRecord(user="anonymous", action="data.open", allowed=False, remote="local")
        fd = None
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), 30)
                request = json.loads(line)
                token, path = str(request["token"]), str(request["path"])
            except (ValueError, KeyError, TypeError, asyncio.TimeoutError, asyncio.LimitOverrunError):
                raise ApiError(400, 'send one line {"token": "...", "path": "<proposal>/<dataset>/<path>"}') from None
            fd, size = await self._open(token, path, record)
            answer = {"status": 200, "size": size}
            record.allowed, record.status, record.bytes = True, 200, size
        except ApiError as e:
            answer = {"status": e.status_code, "message": e.message}
            record.status = e.status_code
        except DassError as e:
            answer = {"status": getattr(e, "status", 503) or 503, "message": e.user_message}
            record.status = answer["status"]
        except Exception:  # noqa: BLE001 - never a traceback to the caller; logged here
            self.app.log.exception("gateway socket: a handoff failed")
            answer = {"status": 500, "message": "internal error; the service's log has its traceback"}
            record.status = 500
        try:
            data = json.dumps(answer).encode() + b"\n"
            sock = writer.get_extra_info("socket")
            if fd is not None:
                await asyncio.get_running_loop().run_in_executor(None, _send_fd, sock, data, fd)
            else:
                writer.write(data)
                await writer.drain()
        except OSError:
            pass  # the reader went away; its row says what was asked
        finally:
            if fd is not None:
                os.close(fd)
            writer.close()
            try:
                await asyncio.to_thread(self.app.audit_log.record, [record])
            except DassError as e:
                self.app.log.error("audit: a data.open row was not recorded: %s", e)

    async def _identity(self, token: str, record: AuditRecord) -> tuple[Identity, Any]:
        grants = self.app.grants
        if token.startswith(JOB_TOKEN_PREFIX):
            grant = await asyncio.to_thread(grants.get, token)
            if grant is None or grant.kind != JOB or not (grant.read or grant.write):
                raise ApiError(401, "this job token is no longer valid: the job has ended or its time is up")
            record.user, record.job = grant.owner, grant.ref
            return Identity(name=grant.owner, groups=frozenset(), admin=False), grant
        auth = self.app.hub_auth
        model = await auth.user_for_token(token, sync=False)
        if not model:
            raise ApiError(401, "this token is not valid (revoked, expired or never made)")
        record.user = str(model.get("name") or "anonymous")
        scopes = auth.access_scopes
        if scopes and not auth.check_scopes(scopes, model):
            raise ApiError(403, f"{model.get('name')} is not allowed to use the dass service")
        identity = await self.app.identity_resolver.identity(model)
        grant = await asyncio.to_thread(grants.get, token)
        if grant is not None and grant.kind == SESSION:
            record.session = f"server {grant.owner}/{grant.ref}"
            return identity, grant
        return identity, None

    async def _open(self, token: str, path: str, record: AuditRecord) -> tuple[int, int]:
        identity, grant = await self._identity(token, record)
        parts = path.strip("/").split("/", 2)
        if len(parts) < 3 or not parts[2]:
            raise ApiError(400, f"{path!r}: name a file, <proposal>/<dataset>/<path>")
        proposal, dataset, rel = parts[0], parts[1], clean_path(parts[2])
        dataset_id = dataset_id_of(proposal, dataset)
        record.dataset, record.path = dataset_id, rel
        gateway, storage = self.app.data_gateway, self.app.storage
        allowed = await asyncio.to_thread(gateway.may_read, self.app.catalog, identity, dataset_id, grant)
        if not allowed:
            raise ApiError(404, f"dataset {dataset_id} not found")
        folder = os.path.realpath(storage.dataset_path(proposal, dataset))
        full = os.path.join(folder, rel)
        if os.path.realpath(full) != full:  # a link somewhere on the way: never followed
            raise ApiError(404, f"{dataset_id}/{rel} not found")
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ApiError(404, f"{dataset_id}/{rel} not found") from None
        except OSError as e:
            raise ApiError(404, f"{dataset_id}/{rel} cannot be opened ({e.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ApiError(400, f"{dataset_id}/{rel} is a folder; list it with ?op=ls")
        return fd, st.st_size


def _send_fd(sock: socket.socket, data: bytes, fd: int) -> None:
    dup = sock.dup()  # a blocking twin of the loop's socket, for the one send with the descriptor
    try:
        dup.setblocking(True)
        socket.send_fds(dup, [data], [fd])
    finally:
        dup.close()

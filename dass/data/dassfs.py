"""``dass://<proposal>/<dataset>/<path>``: repository files through the dass service's data gateway.

An fsspec filesystem: ``fsspec.open("dass://p-2026-001/sem-grains/image.tif")``, ``ls``,
``info``, ``cat`` and ranged reads (``open(...).seek(n)``, ``cat_file(start=, end=)``) go to
``api/data/…`` of the dass service (:mod:`dass.service.gateway`) with the caller's own hub
token, so no storage credential is needed where it runs. The service checks every request
with the catalogue's access rule (a dataset the caller may not see is ``FileNotFoundError``,
exactly like a missing one) and writes it to the audit log.

Writes (``pipe_file``, ``put_file``, ``open(..., "wb")``) go to ``PUT api/data/…`` and succeed
only where the service lets the token write: a job's own results dataset (with the job's
token) and a person's own upload datasets. Everything else -- a session's datasets, a job's
inputs -- answers ``PermissionError``. ``dass://_repository/models/…`` is the SEM model registry
(read-only, for every signed-in caller).

Where it finds the service and the token: the ``url`` and ``token`` arguments (also as
``storage_options``), else ``$DASS_SERVICE_URL`` (set in sessions and jobs) or ``$DASS_URL``,
and ``$JUPYTERHUB_API_TOKEN`` (the session's token) or ``$DASS_TOKEN``.

Registered with fsspec under the protocol ``dass`` through the entry point group
``fsspec.specs`` (``pyproject.toml``), and also when this module is imported (installs made
before the entry point existed; :mod:`dass.data.session` imports it).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import fsspec
import requests
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

__all__ = ["DassFileSystem", "DassFile"]

DEFAULT_URL = "http://127.0.0.1:8000/services/dass/"
#: ``dass://`` path of the SEM model registry (``api/models/…``): ``models/`` of the repository
#: root ``_repository`` (no proposal can have that name)
REPOSITORY = "_repository"
MODELS = REPOSITORY + "/models"


class DassFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem over the dass service's data gateway.

    Parameters
    ----------
    url : str, optional
        The dass service, e.g. ``http://127.0.0.1:8000/services/dass/``. Default
        ``$DASS_SERVICE_URL``, else ``$DASS_URL``.
    token : str, optional
        A hub API token. Default ``$JUPYTERHUB_API_TOKEN``, else ``$DASS_TOKEN``.
    timeout : float
        Seconds to wait for the service on each request.
    block_size : int
        Bytes fetched at a time by files opened for reading.
    local_socket : str, optional
        The service's same-machine file handoff (:mod:`dass.data.localfiles`); default
        ``$DASS_GATEWAY_SOCKET``; ``""`` reads over HTTP only.

    Examples
    --------
    >>> import fsspec                                             # doctest: +SKIP
    >>> with fsspec.open("dass://p-2026-001/sem-grains/image.tif") as f:   # doctest: +SKIP
    ...     head = f.read(16)
    """

    protocol = "dass"
    root_marker = ""
    #: never reuse an instance across calls: the token (and so what may be read) comes from
    #: the environment, which fsspec's instance cache would not see change
    cachable = False

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0,
                 block_size: int = 4 * 1024 * 1024, local_socket: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        url = url or os.environ.get("DASS_SERVICE_URL") or os.environ.get("DASS_URL")
        if not url:
            raise ValueError("dass:// needs the dass service's URL: pass url= (storage_options={'url': ...}) "
                             "or set $DASS_SERVICE_URL, e.g. http://127.0.0.1:8000/services/dass/")
        self.url = url.rstrip("/") + "/"
        token = token or os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("DASS_TOKEN")
        if not token:
            raise PermissionError("dass:// needs a hub API token: pass token=, or set $JUPYTERHUB_API_TOKEN "
                                  "(set in sessions) or $DASS_TOKEN (create one on the hub's token page)")
        self.timeout = float(timeout)
        self.blocksize = int(block_size)
        self._token = token
        # same machine: file descriptors handed over by the service (dass.data.localfiles)
        from .localfiles import SOCKET_ENV

        self.local_socket = os.environ.get(SOCKET_ENV, "") if local_socket is None else local_socket
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    # -- paths -------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("dass://"):
            path = path[len("dass://"):]
        return path.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return "dass://" + name.lstrip("/")

    # -- HTTP --------------------------------------------------------------------------------

    def _get(self, route: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
             path: str = "") -> requests.Response:
        return self._request("GET", route, params=params, headers=headers, path=path)

    def _read(self, route: str, headers: dict[str, str] | None = None, path: str = "") -> bytes:
        """The body of a GET, read in one go (``requests``' ``content`` reads 10 KiB at a time,
        which makes large reads several times slower)."""
        r = self._request("GET", route, headers=headers, path=path, stream=True)
        try:
            return r.raw.read(decode_content=True)
        except Exception as e:  # noqa: BLE001 - urllib3's errors, named for the reader
            raise ConnectionError(f"reading dass://{path} from the dass service failed: {e.__class__.__name__}: {e}") from e
        finally:
            r.close()

    def _request(self, method: str, route: str, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, path: str = "", data: Any = None,
                 stream: bool = False) -> requests.Response:
        try:
            r = self.session.request(method, self.url + route, params=params, headers=headers, data=data,
                                     timeout=self.timeout, stream=stream)
        except requests.RequestException as e:
            raise ConnectionError(f"cannot reach the dass service at {self.url}: {e.__class__.__name__}: {e}") from e
        if r.status_code < 400:
            return r
        try:
            message = r.json().get("message") or r.text
        except ValueError:
            message = r.text[:300]
        where = f"dass://{path}" if path else self.url + route
        if r.status_code == 404:
            raise FileNotFoundError(f"{where}: {message}")
        if r.status_code in (401, 403):
            raise PermissionError(f"{where}: {message}")
        if r.status_code in (400, 416, 422):
            raise ValueError(f"{where}: {message}")
        raise OSError(f"{where}: the dass service answered HTTP {r.status_code}: {message}")

    @staticmethod
    def _route(path: str) -> str:
        if path == MODELS or path.startswith(MODELS + "/"):
            return "api/models" + quote(path[len(MODELS):], safe="/")
        return "api/data/" + quote(path, safe="/")

    def _datasets(self, proposal: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"limit": 500, "offset": offset}
            if proposal:
                params["proposal"] = proposal
            page = self._get("api/datasets", params=params).json()
            out += page["datasets"]
            offset += len(page["datasets"])
            if not page["datasets"] or offset >= page["total"]:
                return out

    # -- fsspec ------------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        parts = [p for p in path.split("/") if p]
        if parts == [REPOSITORY]:
            entries = [{"name": MODELS, "size": 0, "type": "directory"}]
        elif len(parts) < 2:
            # the proposals, or the datasets of one, that the caller may see
            found = self._datasets(parts[0] if parts else None)
            if parts:
                names = sorted({d["id"] for d in found})
                if not names:
                    raise FileNotFoundError(f"dass://{path}: no proposal {parts[0]} among the datasets you may see")
            else:
                names = sorted({d["proposal"] for d in found})
            entries = [{"name": n, "size": 0, "type": "directory"} for n in names]
        else:
            entries = self._get(self._route(path), params={"op": "ls"}, path=path).json()["entries"]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2:
            if parts and parts != [REPOSITORY]:
                self.ls(path)  # FileNotFoundError when not visible
            return {"name": path, "size": 0, "type": "directory"}
        return self._get(self._route(path), params={"op": "info"}, path=path).json()

    def _handoff(self, path: str) -> tuple[int, int] | None:
        """``(fd, size)`` of a file handed over by the service on this machine; None when
        there is no handoff here (the caller reads over HTTP)."""
        if not self.local_socket or path.startswith(REPOSITORY):
            return None
        from .localfiles import HandoffRefused, open_remote

        try:
            return open_remote(self.local_socket, self._token, path, timeout=self.timeout)
        except ConnectionError:
            self.local_socket = ""  # none on this machine: HTTP from now on
            return None
        except HandoffRefused as e:
            if e.status == 404:
                raise FileNotFoundError(f"dass://{path}: {e}") from None
            if e.status in (401, 403):
                raise PermissionError(f"dass://{path}: {e}") from None
            return None  # a folder, a bad path: the HTTP answer says it in full

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        handed = self._handoff(path)
        if handed is not None:
            fd, size = handed
            try:
                first = 0 if start is None else (max(0, size + start) if start < 0 else start)
                last = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
                chunks, at = [], first
                while at < last:
                    chunk = os.pread(fd, min(last - at, 64 * 1024**2), at)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    at += len(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
        headers = None
        if start is not None or end is not None:
            size = None
            if (start is not None and start < 0) or (end is not None and end < 0):
                size = self.info(path)["size"]
            start = 0 if start is None else (max(0, size + start) if start < 0 else start)
            if end is not None and end < 0:
                end = size + end
            if end is not None and end <= start:
                return b""
            headers = {"Range": f"bytes={start}-" + ("" if end is None else str(end - 1))}
        try:
            return self._read(self._route(path), headers=headers, path=path)
        except ValueError as e:
            if "starts at or after the end" in str(e):  # a range past the end reads nothing
                return b""
            raise

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, **kwargs: Any) -> DassFile:
        path = self._strip_protocol(path)
        if mode not in ("rb", "wb"):
            raise ValueError(f"dass://{path}: mode {mode!r} is not offered; read with 'rb', write a whole "
                             "file with 'wb'")
        if mode == "rb":
            handed = self._handoff(path)
            if handed is not None:  # the file itself, read-only, at the page cache's speed
                return os.fdopen(handed[0], "rb", buffering=block_size or self.blocksize)
        return DassFile(self, path, mode=mode, block_size=block_size or self.blocksize,
                        cache_options=cache_options, **kwargs)

    # -- writes (where the service allows them) ---------------------------------------------

    def _put(self, path: str, data: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if len([p for p in path.split("/") if p]) < 3:
            raise IsADirectoryError(f"dass://{path}: name a file inside a dataset, dass://<proposal>/<dataset>/<path>")
        return self._request("PUT", self._route(path), path=path, data=data).json()

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        self._put(path, bytes(value))
        self.invalidate_cache(self._parent(path))

    def put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return  # folders come with their files
        with open(lpath, "rb") as f:  # streamed: requests sends the file as it reads it
            self._put(rpath, f)
        self.invalidate_cache(self._parent(rpath))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: folders exist through their files (as on an object store)."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do: folders exist through their files (as on an object store)."""

    # what the gateway does not offer
    def _refuse(self, path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(f"dass://{self._strip_protocol(str(path))}: the data gateway never removes or "
                              "moves files; write new ones where you may write")

    rm_file = rm = rmdir = mv = cp_file = touch = _refuse


class DassFile(AbstractBufferedFile):
    """A file of :class:`DassFileSystem`: read with ranged GETs of ``block_size``; written to a
    temporary file and sent in one PUT when closed."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end)

    def _initiate_upload(self) -> None:
        import tempfile

        self._spool = tempfile.TemporaryFile(prefix="dass-upload-")

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        self._spool.write(self.buffer.read())
        if final:
            self._spool.seek(0)
            try:
                self.fs._put(self.path, self._spool)
            finally:
                self._spool.close()
            self.fs.invalidate_cache(self.fs._parent(self.path))
        return True


fsspec.register_implementation("dass", DassFileSystem, clobber=True)

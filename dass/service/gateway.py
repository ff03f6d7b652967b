"""The data gateway: ``api/data/<proposal>/<dataset>/<path>`` and ``api/models/<path>``.

A caller proves who it is with its own token and reads (or, where allowed, writes) repository
files through the service, which holds the storage credentials; the caller never does. Every
request is checked with one access rule and leaves one audit row (``data.ls``, ``data.info``,
``data.get`` with the bytes sent, ``data.redirect``, ``data.put``), denied ones included:

- a **session's** token (:mod:`dass.data.grants`) reads exactly the datasets chosen at spawn
  (and only while the catalogue still lets its user see them) and writes nothing;
- a **job's** token reads the job's declared inputs and writes only the job's own output
  dataset, until the job ends;
- a **person's** token or browser login reads what the catalogue lets them see
  (:meth:`dass.data.catalog.Catalog.visible`) and writes only into their own upload datasets
  (SEM images they uploaded).

A dataset the caller may not read answers 404, exactly like a missing one; one it may read but
not write answers a write with 403.

``GET api/data/<p>/<d>/<path>?op=ls``
    The entries of a folder (or the one entry of a file): ``{"entries": [{"name", "size",
    "type"}]}``, names as ``<p>/<d>/<path>`` (the ``dass://`` path without its protocol).
``GET …?op=info``
    One entry.
``PUT api/data/<p>/<d>/<path>``
    Writes one file (the body, streamed to a temporary file first, at most
    ``c.DataGateway.max_write_bytes``): ``201 {"path", "size", "sha256"}``. ``dataset.json``
    of a job's output is validated (``dass.dataset/1``) and written atomically; other
    datasets' ``dataset.json`` is kept by the platform and refused.
``GET api/data``
    What the caller's token was given: a session's datasets chosen at spawn, a job's inputs
    and results dataset (``{"kind", "owner", "ref", "datasets": [...]}``); ``dass.data.datasets()``
    asks it where no session manifest was written (sessions on Slurm, in containers, in pods).
``GET api/models/<path>`` (``op=ls``/``info`` or a read)
    The SEM model registry (``models/`` of the repository), read-only, for every signed-in
    caller, sessions and jobs included: models are the platform's, not a proposal's.
``GET …`` (no ``op``)
    The file's bytes; ``Range: bytes=a-b`` (one range: ``a-b``, ``a-``, ``-n``) answers 206
    with ``Content-Range``, an unsatisfiable one 416. With S3 storage and
    ``c.DataGateway.s3_redirect``, the answer is instead a 307 redirect to a presigned URL of
    that one object, valid ``c.DataGateway.redirect_seconds`` (s3fs's ``sign``): the bytes then
    flow from the object store, not through the service.

The filesystem on the other end is :class:`dass.data.dassfs.DassFileSystem` (``dass://``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import posixpath
import re
import time
from typing import Any

from tornado.iostream import StreamClosedError
from traitlets import Bool, Float, Integer
from traitlets.config import LoggingConfigurable

from ..data.access import Identity
from ..data.errors import DassDataError, StorageError
from ..data.grants import JOB, SESSION
from ..data.metadata import METADATA_FILE
from ..data.storage import Storage
from .handlers import ApiError, BaseHandler, dataset_id_of

__all__ = ["DataGateway", "DataHandler", "GrantHandler", "ModelsHandler", "default_handlers", "parse_range", "clean_path"]

#: folder of the repository the ``api/models/…`` route serves
MODELS_FOLDER = "models"

OPS = ("ls", "info")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class DataGateway(LoggingConfigurable):
    """Settings of the data gateway (``api/data/…``)."""

    chunk_bytes = Integer(
        4 * 1024 * 1024,
        help="""Bytes read from storage and sent at a time when the gateway streams a file.""",
    ).tag(config=True)

    s3_redirect = Bool(
        False,
        help="""With S3 storage, answer a file read with a 307 redirect to a presigned URL of
        that one object (made by s3fs with the service's credentials, valid
        ``redirect_seconds``), so the bytes flow from the object store to the reader, not
        through the service. The reader must reach the S3 endpoint; the URL grants nothing
        beyond that object, for that time. Ignored for ``file://`` storage.""",
    ).tag(config=True)

    access_cache_seconds = Float(
        2.0,
        help="""Seconds a "this user may read this dataset" answer of the catalogue is reused
        for further gateway requests of the same user (same groups) on the same dataset, so
        that reading many small files costs one catalogue query. A change of the catalogue
        (an embargo, the access groups) reaches the gateway within this time; group changes
        on the hub are seen through ``c.DassService.identity_cache_seconds`` as before. ``0``
        asks the catalogue on every request.""",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._allowed: dict[tuple[Any, str], float] = {}

    local_handoff = Bool(
        True,
        help="""With a ``file://`` repository, also serve the same-machine file handoff
        (:mod:`dass.data.localfiles`): processes on this machine (sessions, jobs) get a
        read-only descriptor of a file they may read, after the same checks, instead of its
        bytes over HTTP, and read it at the speed of the page cache. Sessions and jobs find
        it through ``$DASS_GATEWAY_SOCKET``.""",
    ).tag(config=True)

    max_write_bytes = Integer(
        20 * 1024**3,
        help="""Largest file one ``PUT api/data/…`` may write (a job's output file, a file added
        to an upload dataset). The body is streamed to a temporary file of the service
        (``$TMPDIR``) before it goes to storage, so the service's memory does not grow with it.""",
    ).tag(config=True)

    def may_read(self, catalog: Any, identity: Any, dataset_id: str, grant: Any = None) -> bool:
        """Whether ``identity`` may read ``dataset_id``: a job's grant alone decides for a job's
        token; a session's grant and the catalogue's rule both must allow it for a session's
        token; the catalogue's rule for everyone else (positive catalogue answers reused
        ``access_cache_seconds``)."""
        if grant is not None:
            if not grant.may_read(dataset_id):
                return False
            if grant.kind == JOB:
                return True
        key = (identity, dataset_id)
        now = time.monotonic()
        if self._allowed.get(key, 0.0) > now:
            return True
        if catalog.visible(identity, [dataset_id]).get(dataset_id) is None:
            self._allowed.pop(key, None)
            return False
        if self.access_cache_seconds > 0:
            if len(self._allowed) > 10_000:
                self._allowed = {k: t for k, t in self._allowed.items() if t > now}
            self._allowed[key] = now + self.access_cache_seconds
        return True

    redirect_seconds = Integer(
        60,
        help="""Seconds a presigned URL of ``s3_redirect`` stays valid. Readers follow it at
        once; keep it short.""",
    ).tag(config=True)


def clean_path(path: str | None) -> str:
    """A relative path inside a dataset, normalised; refuses one that leaves the dataset.

    Examples
    --------
    >>> clean_path("raw//a/./b.tif")
    'raw/a/b.tif'
    >>> clean_path(None)
    ''
    >>> clean_path("../other/secret")
    Traceback (most recent call last):
    ...
    dass.service.handlers.ApiError: HTTP 400: Bad Request (path '../other/secret' leaves the dataset; use a path inside it)
    """
    if not path:
        return ""
    if "\\" in path or "\x00" in path:
        raise ApiError(400, f"path {path!r} holds a backslash or NUL; use '/' between folder names")
    norm = posixpath.normpath("/" + path).lstrip("/")
    if ".." in path.split("/") or norm.startswith(".."):
        raise ApiError(400, f"path {path!r} leaves the dataset; use a path inside it")
    return "" if norm == "." else norm


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of one ``Range: bytes=…`` header, or None for all.

    Raises ``ApiError`` 416 when the range cannot be satisfied, 400 when it is malformed or
    asks for several ranges.

    Examples
    --------
    >>> parse_range("bytes=0-9", 100), parse_range("bytes=90-", 100), parse_range("bytes=-5", 100)
    ((0, 10), (90, 100), (95, 100))
    >>> parse_range("bytes=50-500", 100)
    (50, 100)
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        raise ApiError(400, f"Range header {header!r} is not understood; send one range like "
                            "'bytes=0-1023', 'bytes=1024-' or 'bytes=-512'")
    first, last = match.groups()
    if first == "":
        n = int(last)
        if n == 0:
            raise ApiError(416, f"Range {header!r} asks for no bytes; the file has {size} bytes")
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or end <= start:
        raise ApiError(416, f"Range {header!r} starts at or after the end of the file ({size} bytes)")
    return start, end


def _entry(name: str, info: dict[str, Any]) -> dict[str, Any]:
    kind = "directory" if info.get("type") == "directory" else "file"
    return {"name": name, "size": int(info.get("size") or 0) if kind == "file" else 0, "type": kind}


class DataHandler(BaseHandler):
    """``GET api/data/<proposal>/<dataset>[/<path>]``: ls, info and ranged reads of one dataset;
    ``PUT``: write one file where the caller may write."""

    audit_action = "data.get"
    accepts_job_tokens = True
    #: a PUT's body stays in the base handler's spool (memory, then an unnamed temporary file)
    body_in_memory = False

    @property
    def storage(self) -> Storage:
        return self.settings["storage"]

    @property
    def gateway(self) -> DataGateway:
        return self.settings["data_gateway"]

    def body_limit(self) -> int:
        if self.request.method == "PUT":
            return max(self.gateway.max_write_bytes, 0)
        return super().body_limit()

    def audit_fields(self) -> dict[str, Any]:
        proposal, dataset, path = self.path_args
        op = self.get_query_argument("op", "")
        if self.request.method == "PUT":
            self.audit_action = "data.put"
        elif op in OPS:
            self.audit_action = f"data.{op}"
        return {"dataset": f"{proposal}/{dataset}", "path": path or None}

    def target(self, proposal: str, dataset: str) -> tuple[str, str]:
        """``(folder inside storage, name prefix)`` of the route's dataset, after the access
        check (404 alike for missing and hidden)."""
        dataset_id = dataset_id_of(proposal, dataset)
        if not self.gateway.may_read(self.catalog, self.identity, dataset_id, self.grant):
            raise ApiError(404, f"dataset {dataset_id} not found")
        return self.storage.dataset_path(proposal, dataset), dataset_id

    async def get(self, proposal: str, dataset: str | None = None, path: str | None = None) -> None:
        args = self.query_args(("op",))
        op = args.get("op", "")
        if op and op not in OPS:
            raise ApiError(400, f"query parameter op must be one of {', '.join(OPS)} (or absent to read "
                                f"the file), got {op!r}")
        if path:
            self.check_name(path, "path", path=True)  # NUL, control characters, over-long names: 400
        record = self.audit(**{**self.audit_fields(), "path": clean_path(path) or None})
        base, prefix = self.target(proposal, dataset)
        rel = record.path or ""
        storage = self.storage
        full = f"{base}/{rel}" if rel else base
        name = f"{prefix}/{rel}" if rel else prefix
        if not op and not self.request.headers.get("Range") and not (self.gateway.s3_redirect and not storage.is_local):
            small = await self._small_file(full, name)
            if small is not None:  # the whole of a small file: one trip to storage
                await self._send(full, name, len(small[1]), record, data=small[1])
                return
        info = await self._info(full, name)
        if op == "info":
            self.write_json(_entry(name, info))
        elif op == "ls":
            self.write_json({"entries": await self._ls(full, base, prefix, info)})
        elif info.get("type") == "directory":
            raise ApiError(400, f"{name} is a folder; list it with ?op=ls")
        elif self.gateway.s3_redirect and not storage.is_local and hasattr(storage.fs, "sign"):
            record.action = "data.redirect"
            with storage.translate_errors(f"signing {storage.url_of(full)}"):
                url = await asyncio.to_thread(storage.fs.sign, full, expiration=self.gateway.redirect_seconds)
            self.redirect(url, status=307)
        else:
            await self._send(full, name, int(info.get("size") or 0), record)

    # -- writes -----------------------------------------------------------------------------------

    def check_write(self, proposal: str, dataset: str, rel: str) -> str:
        """The dataset id when the caller may write ``rel`` into it; else 404 (cannot see it),
        403 (may see, not write) or 400 (a folder, or a ``dataset.json`` the platform keeps)."""
        dataset_id = dataset_id_of(proposal, dataset)
        grant = self.grant
        if not rel:
            raise ApiError(400, "name the file to write: PUT api/data/<proposal>/<dataset>/<path>")
        if grant is not None and grant.kind == JOB:
            if grant.may_write(dataset_id):
                return dataset_id
            if not grant.may_read(dataset_id):
                raise ApiError(404, f"dataset {dataset_id} not found")
            raise ApiError(403, f"a job writes only into its own results dataset ({', '.join(sorted(grant.write))}); "
                                f"{dataset_id} is one of its inputs, which are read-only")
        if not self.gateway.may_read(self.catalog, self.identity, dataset_id, grant):
            raise ApiError(404, f"dataset {dataset_id} not found")
        if grant is not None and grant.kind == SESSION:
            raise ApiError(403, f"the datasets of a session are read-only ({dataset_id}); write results to "
                                "your home folder, or run a job, whose results become a dataset")
        record = self.catalog.visible(self.identity, [dataset_id]).get(dataset_id)
        upload = ((record.metadata or {}).get("domain") or {}).get("upload") if record is not None else None
        if not (isinstance(upload, dict) and upload.get("user") == self.identity.name):
            raise ApiError(403, f"dataset {dataset_id} is read-only for you: you may write only into your own "
                                "upload datasets and, from a job, into its results")
        if rel == METADATA_FILE:
            raise ApiError(403, f"{METADATA_FILE} of {dataset_id} is kept by the platform; write data files only")
        return dataset_id

    async def put(self, proposal: str, dataset: str, path: str | None = None) -> None:
        self.query_args(())
        if path:
            self.check_name(path, "path", path=True)
        rel = clean_path(path)
        record = self.audit("data.put", dataset=f"{proposal}/{dataset}", path=rel or None)
        dataset_id = self.check_write(proposal, dataset, rel)
        storage = self.storage
        full = f"{storage.dataset_path(proposal, dataset)}/{rel}"
        spool = self.body_file
        spool.seek(0, os.SEEK_END)
        size = spool.tell()
        spool.seek(0)
        sha = hashlib.sha256()
        if rel == METADATA_FILE:  # a job's results: validated, written atomically
            from ..data.metadata_writer import write_metadata

            data = spool.read()
            sha.update(data)
            try:
                doc = json.loads(data)
            except (UnicodeDecodeError, ValueError) as e:
                raise ApiError(400, f"{METADATA_FILE} is not JSON ({e}); send the dataset's metadata") from None
            try:
                await asyncio.to_thread(write_metadata, storage, full.rsplit("/", 1)[0], doc, proposal=proposal)
            except DassDataError as e:
                if isinstance(e, StorageError):
                    raise
                raise ApiError(400, f"{METADATA_FILE} of {dataset_id} is not valid: {e}") from None
        else:
            def write() -> None:
                with storage.translate_errors(f"writing {storage.url_of(full)}"):
                    if storage.is_local:
                        storage.fs.makedirs(full.rsplit("/", 1)[0], exist_ok=True)
                    with storage.fs.open(full, "wb") as out:
                        while block := spool.read(self.gateway.chunk_bytes):
                            sha.update(block)
                            out.write(block)

            await asyncio.to_thread(write)
        record.bytes = size
        self.log.info("gateway: %s wrote %s/%s (%d bytes)", self.grant.label if self.grant else self.identity.name,
                      dataset_id, rel, size)
        self.write_json({"path": f"{dataset_id}/{rel}", "size": size, "sha256": sha.hexdigest()}, status=201)

    async def _small_file(self, full: str, name: str) -> tuple[dict[str, Any], bytes] | None:
        """``(info, bytes)`` of a file no larger than one chunk, read in one go; None otherwise
        (a folder, a large file)."""
        fs, limit = self.storage.fs, self.gateway.chunk_bytes

        def read() -> tuple[dict[str, Any], bytes] | None:
            try:
                data = fs.cat_file(full, start=0, end=limit + 1)  # one request on S3, no HEAD first
            except Exception:  # noqa: BLE001 - a folder, a missing file, a failure: the general path says which
                return None
            return None if len(data) > limit else ({"size": len(data), "type": "file"}, data)

        return await asyncio.to_thread(read)

    async def _info(self, full: str, name: str) -> dict[str, Any]:
        fs = self.storage.fs
        try:
            return await asyncio.to_thread(fs.info, full)
        except FileNotFoundError:
            raise ApiError(404, f"{name} not found") from None
        except Exception as e:  # noqa: BLE001 - translated, then answered 503 with its reason
            with self.storage.translate_errors(f"looking up {self.storage.url_of(full)}"):
                raise e

    async def _ls(self, full: str, base: str, dataset_id: str, info: dict[str, Any]) -> list[dict[str, Any]]:
        storage = self.storage

        def rel_name(p: str) -> str:
            p = p.rstrip("/")
            return dataset_id + p[len(base):] if p.startswith(base) else f"{dataset_id}/{p.rsplit('/', 1)[-1]}"

        if info.get("type") != "directory":
            return [_entry(rel_name(full), info)]
        with storage.translate_errors(f"listing {storage.url_of(full)}"):
            storage.fs.invalidate_cache(full)
            listing = await asyncio.to_thread(storage.fs.ls, full, detail=True)
        return sorted((_entry(rel_name(i["name"]), i) for i in listing if i["name"].rstrip("/") != full.rstrip("/")),
                      key=lambda e: e["name"])

    async def _send(self, full: str, name: str, size: int, record: Any, data: bytes | None = None) -> None:
        span = parse_range(self.request.headers.get("Range"), size)
        start, end = span or (0, size)
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Content-Type", mimetypes.guess_type(name)[0] or "application/octet-stream")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Length", str(end - start))
        if span is not None:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        record.bytes = 0
        if data is not None:  # read already (a small file, whole)
            record.bytes = len(data)
            self.finish(data)
            return
        if end <= start:
            self.finish()
            return
        storage = self.storage
        chunk = max(64 * 1024, self.gateway.chunk_bytes)
        with storage.translate_errors(f"reading {storage.url_of(full)}"):
            f = await asyncio.to_thread(storage.fs.open, full, "rb", block_size=min(chunk, end - start) or None)
        with f:
            if start:
                await asyncio.to_thread(f.seek, start)
            left = end - start
            # the next chunk is read from storage while the current one goes out (the two
            # halves of the trip overlap; one read at a time, in order)
            pending = asyncio.ensure_future(asyncio.to_thread(f.read, min(chunk, left)))
            try:
                while left > 0:
                    data = await pending
                    pending = None
                    if not data:
                        break
                    left -= len(data)
                    record.bytes += len(data)
                    if left > 0:
                        pending = asyncio.ensure_future(asyncio.to_thread(f.read, min(chunk, left)))
                    self.write(data)
                    if left > 0:  # the last chunk leaves with finish(), after the audit row is written
                        try:
                            await self.flush()
                        except StreamClosedError:  # the reader went away: its row says how far it got
                            self._record_audit()
                            return
            finally:
                if pending is not None:  # let the read in flight end before the file closes
                    await asyncio.wait([pending])
        self.finish()


class GrantHandler(BaseHandler):
    """``GET api/data``: the datasets the caller's token was given -- a session's chosen at
    spawn, a job's inputs (and its results dataset) -- for ``dass.data.datasets()`` where no
    manifest was written (sessions on Slurm, in containers or pods)."""

    accepts_job_tokens = True

    def get(self) -> None:
        self.query_args(())
        grant = self.grant
        if grant is None:
            self.write_json({"kind": "person", "datasets": None,
                             "message": "a person's token reaches what the catalogue shows: see api/datasets"})
            return
        ids = sorted(grant.read | grant.write)
        records = self.catalog.visible(Identity(name=grant.owner, groups=frozenset(), admin=True), ids)
        datasets = []
        for dataset_id in ids:
            proposal, name = dataset_id.split("/", 1)
            record = records.get(dataset_id)
            datasets.append({"id": dataset_id, "proposal": proposal, "name": name,
                             "title": getattr(record, "title", "") or "",
                             "metadata": dict(getattr(record, "metadata", None) or {}),
                             "writable": grant.may_write(dataset_id)})
        self.write_json({"kind": grant.kind, "owner": grant.owner, "ref": grant.ref, "datasets": datasets})


class ModelsHandler(DataHandler):
    """``GET api/models[/<path>]``: the SEM model registry (``models/`` of the repository),
    read-only, for every signed-in caller (``dass://_repository/models/…``; :func:`dass.data.repository`)."""

    def audit_fields(self) -> dict[str, Any]:
        (path,) = self.path_args
        op = self.get_query_argument("op", "")
        if op in OPS:
            self.audit_action = f"data.{op}"
        return {"dataset": None, "path": f"{MODELS_FOLDER}/{path}" if path else MODELS_FOLDER}

    def target(self, proposal: str, dataset: str | None) -> tuple[str, str]:
        return self.storage.join(MODELS_FOLDER), MODELS_ROUTE_NAME

    async def get(self, path: str | None = None) -> None:  # type: ignore[override]
        await super().get(MODELS_ROUTE_NAME, None, path)

    def _implements(self, method: str) -> bool:
        return method in ("GET", "HEAD", "OPTIONS")


#: the name ``api/models/…`` files have in listings (``dass://_repository/models/<path>``)
MODELS_ROUTE_NAME = "_repository/models"

default_handlers = [
    (r"api/data/?", GrantHandler),
    (r"api/models(?:/(.*))?", ModelsHandler),
    (r"api/data/([^/]+)/([^/]+)(?:/(.*))?", DataHandler),
]

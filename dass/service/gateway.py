"""The data gateway, read side: ``api/data/<proposal>/<dataset>/<path>`` (issue 11, item 2).

A caller proves who it is with its own hub token (a session's ``$JUPYTERHUB_API_TOKEN``, a
person's API token) and reads repository files through the service, which holds the storage
credentials; the caller never does. Every request is checked with the catalogue's access rule
(:meth:`dass.data.catalog.Catalog.visible`: a dataset the caller may not see answers 404,
exactly like a missing one) and leaves one audit row (``data.ls``, ``data.info``, ``data.get``
with the bytes sent, ``data.redirect``), denied ones included.

``GET api/data/<p>/<d>/<path>?op=ls``
    The entries of a folder (or the one entry of a file): ``{"entries": [{"name", "size",
    "type"}]}``, names as ``<p>/<d>/<path>`` (the ``dass://`` path without its protocol).
``GET …?op=info``
    One entry.
``GET …`` (no ``op``)
    The file's bytes; ``Range: bytes=a-b`` (one range: ``a-b``, ``a-``, ``-n``) answers 206
    with ``Content-Range``, an unsatisfiable one 416. With S3 storage and
    ``c.DataGateway.s3_redirect``, the answer is instead a 307 redirect to a presigned URL of
    that one object, valid ``c.DataGateway.redirect_seconds`` (s3fs's ``sign``): the bytes then
    flow from the object store, not through the service.

The filesystem on the other end is :class:`dass.data.gateway_fs.DassFileSystem`
(``dass://``). Writes are not offered yet (a job's output folder and upload datasets).
"""

from __future__ import annotations

import asyncio
import mimetypes
import posixpath
import re
import time
from typing import Any

from tornado.iostream import StreamClosedError
from traitlets import Bool, Float, Integer
from traitlets.config import LoggingConfigurable

from ..data.errors import StorageError
from ..data.storage import Storage
from .handlers import ApiError, BaseHandler, dataset_id_of

__all__ = ["DataGateway", "DataHandler", "default_handlers", "parse_range", "clean_path"]

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

    def may_read(self, catalog: Any, identity: Any, dataset_id: str) -> bool:
        """Whether ``identity`` may read ``dataset_id`` (the catalogue's rule; positive answers
        reused ``access_cache_seconds``)."""
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
    """``GET api/data/<proposal>/<dataset>[/<path>]``: ls, info and ranged reads of one dataset."""

    audit_action = "data.get"

    @property
    def storage(self) -> Storage:
        return self.settings["storage"]

    @property
    def gateway(self) -> DataGateway:
        return self.settings["data_gateway"]

    def audit_fields(self) -> dict[str, Any]:
        proposal, dataset, path = self.path_args
        op = self.get_query_argument("op", "")
        if op in OPS:
            self.audit_action = f"data.{op}"
        return {"dataset": f"{proposal}/{dataset}", "path": path or None}

    async def get(self, proposal: str, dataset: str, path: str | None) -> None:
        args = self.query_args(("op",))
        op = args.get("op", "")
        if op and op not in OPS:
            raise ApiError(400, f"query parameter op must be one of {', '.join(OPS)} (or absent to read "
                                f"the file), got {op!r}")
        if path:
            self.check_name(path, "path", path=True)  # NUL, control characters, over-long names: 400
        record = self.audit(**{**self.audit_fields(), "path": clean_path(path) or None})
        dataset_id = dataset_id_of(proposal, dataset)
        if not self.gateway.may_read(self.catalog, self.identity, dataset_id):
            raise ApiError(404, f"dataset {dataset_id} not found")
        rel = record.path or ""
        storage = self.storage
        base = storage.dataset_path(proposal, dataset)
        full = f"{base}/{rel}" if rel else base
        name = f"{dataset_id}/{rel}" if rel else dataset_id
        if not op and not self.request.headers.get("Range") and not (self.gateway.s3_redirect and not storage.is_local):
            small = await self._small_file(full, name)
            if small is not None:  # the whole of a small file: one trip to storage
                await self._send(full, name, len(small[1]), record, data=small[1])
                return
        info = await self._info(full, name)
        if op == "info":
            self.write_json(_entry(name, info))
        elif op == "ls":
            self.write_json({"entries": await self._ls(full, base, dataset_id, info)})
        elif info.get("type") == "directory":
            raise ApiError(400, f"{name} is a folder; list it with ?op=ls")
        elif self.gateway.s3_redirect and not storage.is_local and hasattr(storage.fs, "sign"):
            record.action = "data.redirect"
            with storage.translate_errors(f"signing {storage.url_of(full)}"):
                url = await asyncio.to_thread(storage.fs.sign, full, expiration=self.gateway.redirect_seconds)
            self.redirect(url, status=307)
        else:
            await self._send(full, name, int(info.get("size") or 0), record)

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
            while left > 0:
                data = await asyncio.to_thread(f.read, min(chunk, left))
                if not data:
                    break
                left -= len(data)
                record.bytes += len(data)
                self.write(data)
                if left > 0:  # the last chunk leaves with finish(), after the audit row is written
                    try:
                        await self.flush()
                    except StreamClosedError:  # the reader went away: its row says how far it got
                        self._record_audit()
                        return
        self.finish()


default_handlers = [
    (r"api/data/([^/]+)/([^/]+)(?:/(.*))?", DataHandler),
]

"""Uploaded files without holding them in memory: a multipart body parsed as a stream into a
:class:`Spool` (one unnamed temporary file per request), and ``.zip`` archives expanded into
it member by member with the limits checked while they are read.

A route that takes uploads sets ``body_in_memory = False`` (its body is then spooled to disk
as it arrives, see :attr:`dass.service.handlers.BaseHandler.body_file`), parses it with
:func:`parse_multipart` and reads each file back (:meth:`Spool.read`) when it needs it, one at
a time. The spool has no name in the file system (``O_TMPFILE``): it goes away when it is
closed, or when the process ends, whatever happens.

The multipart syntax is the ``multipart`` package's (:class:`multipart.PushMultipartParser`,
the parser of Bottle), not a parser of our own.

Examples
--------
>>> import io
>>> body = (b'--b\\r\\nContent-Disposition: form-data; name="proposal"\\r\\n\\r\\np-1\\r\\n'
...         b'--b\\r\\nContent-Disposition: form-data; name="files"; filename="a.png"\\r\\n\\r\\n'
...         b'PNGDATA\\r\\n--b--\\r\\n')
>>> with Spool() as spool:
...     fields, files = parse_multipart("multipart/form-data; boundary=b", io.BytesIO(body), spool, max_files=2)
...     fields, [(f.field, f.name, f.size, spool.read(f)) for f in files]
({'proposal': ['p-1']}, [('files', 'a.png', 7, b'PNGDATA')])
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Mapping

from ..errors import DassError

__all__ = ["Spool", "SpooledFile", "UploadRefused", "ZipMember", "expand_zip", "parse_multipart"]

#: bytes read (from a body, from a zip member) and written at a time
CHUNK = 1024 * 1024
#: largest plain form field (``proposal``…), bytes
MAX_FIELD_BYTES = 64 * 1024
#: most plain form fields of one request
MAX_FIELDS = 16


class UploadRefused(DassError, ValueError, status=400):
    """An upload no route takes (400 malformed, 413 too large or too many files); the message
    says what to fix."""


@dataclass(frozen=True)
class SpooledFile:
    """One file in a :class:`Spool`: where it lies, and how large it was when sent."""

    name: str
    offset: int
    size: int
    field: str = ""


class Spool:
    """Files one after another in one unnamed temporary file (deleted when closed).

    Parameters
    ----------
    dir : str, optional
        The folder of the temporary file (default: the system's temporary folder).
    """

    def __init__(self, dir: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=dir or None)
        self._fd = self._file.fileno()
        self.size = 0

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` at the end of the spool."""
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, self.size)
            self.size += n
            view = view[n:]

    def read(self, item: SpooledFile, limit: int | None = None) -> bytes:
        """The stored bytes of ``item`` (at most ``limit``)."""
        return self.read_range(item.offset, item.size if limit is None else min(item.size, limit))

    def read_range(self, offset: int, size: int) -> bytes:
        parts, end = [], offset + size
        while offset < end:
            chunk = os.pread(self._fd, min(end - offset, 64 * CHUNK), offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)

    def open(self, item: SpooledFile) -> BinaryIO:
        """``item`` as a seekable binary file (reads go to the spool; nothing is copied)."""
        return io.BufferedReader(_Window(self._fd, item.offset, item.size), buffer_size=CHUNK)


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``offset`` of a file descriptor."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd, self._offset, self._size, self._pos = fd, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + pos < 0:
            raise OSError(f"negative seek position {base + pos}")
        self._pos = base + pos
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        data = os.pread(self._fd, n, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _named(settings: Mapping[str, str], key: str) -> str:
    """`` (c.X.y)`` naming the setting behind a limit, when the caller named one."""
    return f" ({settings[key]})" if settings.get(key) else ""


def _boundary(content_type: str) -> str:
    from multipart import parse_options_header

    kind, options = parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise UploadRefused("the multipart body cannot be parsed: send Content-Type multipart/form-data with "
                            "a boundary (any HTTP client does that for a form with files)")
    return boundary


def parse_multipart(content_type: str, body: BinaryIO, spool: Spool, *, max_files: int,
                    max_field_bytes: int = MAX_FIELD_BYTES, max_fields: int = MAX_FIELDS,
                    settings: Mapping[str, str] = {},  # noqa: B006 - never modified
                    ) -> tuple[dict[str, list[str]], list[SpooledFile]]:
    """Parse a ``multipart/form-data`` body, read from ``body`` a chunk at a time.

    Files (parts with a ``filename``) go to ``spool`` whole (the body's limit bounds them;
    the caller refuses one too large by name, or takes an archive apart); plain fields are
    decoded as UTF-8 (invalid bytes replaced).

    ``settings`` names the setting behind a limit in the messages (``{"files": "c.X.max_files"}``).

    Returns
    -------
    fields : dict
        Field name -> values, in order.
    files : list of SpooledFile
        In the order sent, each with its field name.

    Raises
    ------
    UploadRefused
        400 when the body is not valid multipart, 413 with more than ``max_files`` files,
        more than ``max_fields`` fields, or a field larger than ``max_field_bytes``.
    """
    from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser

    fields: dict[str, list[str]] = {}
    files: list[SpooledFile] = []
    n_fields = 0
    segment: MultipartSegment | None = None
    start = size = 0
    value = bytearray()
    parser = PushMultipartParser(_boundary(content_type), max_segment_count=max_files + max_fields)
    try:
        with parser:
            while not parser.closed:
                chunk = body.read(CHUNK)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, start, size = event, spool.size, 0
                        value.clear()
                        if segment.filename is not None:
                            if len(files) >= max_files:
                                raise UploadRefused(f"too many files: at most {max_files} per request"
                                                    f"{_named(settings, 'files')}: send fewer at once", status=413)
                        else:
                            n_fields += 1
                            if n_fields > max_fields:
                                raise UploadRefused(f"too many form fields: at most {max_fields}", status=413)
                    elif event is not None:
                        size += len(event)
                        if segment.filename is not None:
                            spool.write(event)
                        elif size > max_field_bytes:
                            raise UploadRefused(f"the form field {segment.name!r} is larger than {max_field_bytes} "
                                                "bytes; send the images as files", status=413)
                        else:
                            value += event
                    else:  # the end of a part
                        if segment.filename is not None:
                            files.append(SpooledFile(segment.filename, start, size, segment.name or ""))
                        else:
                            fields.setdefault(segment.name or "", []).append(value.decode("utf-8", "replace"))
                        segment = None
                if not chunk:
                    break  # the input ended (parser.close() below says whether too early)
    except ParserLimitReached:
        raise UploadRefused(f"too many parts in the request: at most {max_files} files"
                            f"{_named(settings, 'files')}", status=413) from None
    except MultipartError as e:
        raise UploadRefused(f"the multipart body cannot be parsed: {e}") from None
    return fields, files


@dataclass(frozen=True)
class ZipMember:
    """A member of an uploaded archive: in the spool (``file``), or refused (``reason``)."""

    name: str
    file: SpooledFile | None = None
    reason: str | None = None


def expand_zip(spool: Spool, archive: SpooledFile, *, max_member_bytes: int, max_ratio: float, max_total: int,
               expanded: int = 0, skip: Callable[[zipfile.ZipInfo], bool] = lambda m: False,
               settings: Mapping[str, str] = {},  # noqa: B006 - never modified
               ) -> tuple[list[ZipMember], int]:
    """Take the members of a ``.zip`` in the spool out into the spool, one at a time.

    Checked before a member is inflated, from the archive's listing: its declared size (at
    most ``max_member_bytes``), its declared ratio (uncompressed / compressed, at most
    ``max_ratio``) and the total of the archive (``expanded`` + all members at most
    ``max_total``). Checked again while it is inflated, chunk by chunk, on the bytes that
    really come out (a listing may lie): the same three.

    Parameters
    ----------
    spool : Spool
    archive : SpooledFile
        The archive (in ``spool``).
    max_member_bytes : int
        Largest member; a larger one is refused by name (``reason``), the others go on.
    max_ratio : float
        Largest expansion ratio of a member; one above it is refused by name as a possible
        zip bomb.
    max_total : int
        Most bytes the archives of one request may expand to, all together.
    expanded : int
        Bytes taken out of the request's earlier archives.
    skip : callable, optional
        ``skip(info)``: members to leave out silently (folders always are).
    settings : mapping, optional
        The settings behind the limits, named in the messages: keys ``member``, ``ratio``,
        ``total``.

    Returns
    -------
    members : list of ZipMember
    expanded : int
        Bytes taken out of this and the earlier archives.

    Raises
    ------
    UploadRefused
        413 when the archives expand (by their listing or in fact) to more than ``max_total``.
    """
    try:
        handle = zipfile.ZipFile(spool.open(archive))
        infos = [m for m in handle.infolist() if not m.is_dir() and not skip(m)]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        return [ZipMember(archive.name, reason=f"not a valid zip archive: {e}")], expanded
    total = f"{max_total}{_named(settings, 'total')}: send fewer images at once"
    declared = expanded + sum(m.file_size for m in infos)
    if declared > max_total:  # by the archive's own listing: nothing is inflated
        handle.close()
        raise UploadRefused(f"the zip archives expand to {declared} bytes by their own listing, more than {total}",
                            status=413)

    def bomb(ratio: str) -> str:
        return (f"compressed {ratio} in the zip archive, more than {max_ratio:g}:1{_named(settings, 'ratio')}: "
                "refused as a possible zip bomb; send the image itself")

    def too_large(size: str) -> str:
        return f"file too large: {size} bytes, the limit is {max_member_bytes}{_named(settings, 'member')}"

    members: list[ZipMember] = []
    with handle:
        for m in infos:
            name = f"{archive.name}/{m.filename}"
            compressed = max(m.compress_size, 1)
            if m.file_size > max_ratio * compressed:
                members.append(ZipMember(name, reason=bomb(f"{m.file_size // compressed}:1")))
                continue
            if m.file_size > max_member_bytes:
                members.append(ZipMember(name, reason=too_large(str(m.file_size))))
                continue
            start, size, reason = spool.size, 0, None
            try:
                with handle.open(m) as fh:
                    while chunk := fh.read(CHUNK):
                        size += len(chunk)
                        if expanded + size > max_total:
                            raise UploadRefused(f"the zip archives expand to more than {total}", status=413)
                        if size > max_member_bytes:
                            reason = too_large(f"more than {max_member_bytes}")
                        elif size > max_ratio * compressed:
                            reason = bomb(f"more than {size // compressed}:1")
                        if reason:
                            break
                        spool.write(chunk)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError, EOFError) as e:
                reason = f"cannot be extracted from the zip archive: {e}"
            expanded += size
            if reason:
                members.append(ZipMember(name, reason=reason))
            else:
                members.append(ZipMember(name, file=SpooledFile(name, start, size, archive.field)))
    return members, expanded

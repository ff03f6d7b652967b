"""Put the datasets chosen at spawn into a user's home: ``~/datasets/<proposal>/<dataset>``.

The platform (the hub, or the job service for a job's folder) makes a **read-only view** that
it owns: folders 0555 and files the user may read but neither change nor remove.

- ``file://`` storage: each file is a hard link to the repository's file (no copy) when the
  platform owns that file and its mode lets others read but not write it; otherwise, and
  across file systems, a copy (0444). The repository folder itself stays closed to users
  (0700): the view is the only way in, and it holds exactly the chosen datasets.
- any other protocol (S3…): the dataset is copied with fsspec, then made read-only.

Datasets larger than ``max_copy_bytes`` (counting only what must be copied) are refused, since
the session can always stream them through ``dass.data.datasets()[…].fs`` (the data gateway).

Mounted views of an earlier session that are not chosen now are removed. Symbolic links into
the repository, which earlier versions made, are removed too.

This module does not check access: the caller (the spawner) passes records it has already
authorized, e.g. from :meth:`dass.data.catalog.Catalog.visible`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import StorageError
from .metadata import NAME_RE
from .storage import Storage

__all__ = ["mount_datasets", "write_manifest", "fetch_tree", "is_complete_copy", "MANIFEST_VERSION", "DATASETS_DIR"]

log = logging.getLogger(__name__)

#: Version of the session manifest written by :func:`write_manifest`.
MANIFEST_VERSION = 2
#: Folder of the home that holds the mounted datasets.
DATASETS_DIR = "datasets"

_READONLY_FILE = 0o444
_READONLY_DIR = 0o555


def _is_copy(path: Path) -> bool:
    """A read-only folder is what this module leaves behind for a copied dataset."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == _READONLY_DIR


def _remove(path: Path) -> None:
    """Remove a mount (symlink, or read-only copy whose modes must be relaxed first)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    shutil.rmtree(path)


def _make_readonly(path: Path, files: bool = True) -> None:
    """Folders 0555 and (unless ``files`` is False: hard links share the repository's mode,
    which must not change) files 0444."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for f in filenames if files else ():
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, _READONLY_FILE)
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, _READONLY_DIR)
    os.chmod(path, _READONLY_DIR)


def _may_link(path: str) -> bool:
    """Whether a repository file may be shared by a hard link: the platform owns it and its mode
    lets others read it but nobody else write it (so the user cannot change the repository)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and mode & 0o004 and not mode & 0o022


def _link_tree(record: Any, src: str, target: Path, max_copy_bytes: int) -> None:
    """A read-only view of a ``file://`` dataset folder: hard links where allowed, else copies."""
    plan: list[tuple[str, Path, bool]] = []
    copy_bytes = 0
    partial = target.with_name(f".{target.name}.partial")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        rel_dir = os.path.relpath(dirpath, src)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):  # never follow a link out of the dataset
                log.warning("mount: skipping symbolic link %s in %s", os.path.join(rel_dir, name), record.id)
                continue
            link = _may_link(path)
            if not link:
                copy_bytes += os.path.getsize(path)
            plan.append((path, partial / rel_dir / name, link))
    if copy_bytes > max_copy_bytes:
        raise StorageError(
            f"dataset {record.id} needs {copy_bytes} bytes copied, more than the {max_copy_bytes} bytes "
            "that may be copied into a session: choose fewer or smaller datasets, read it in the session "
            "through dass.data.datasets()[...].fs, or raise max_copy_bytes"
        )
    _remove(partial)
    partial.mkdir(parents=True)
    linked = 0
    try:
        for path, local, link in plan:
            local.parent.mkdir(parents=True, exist_ok=True)
            if link:
                try:
                    os.link(path, local)
                    linked += 1
                    continue
                except OSError:  # another file system, too many links: copy instead
                    pass
            shutil.copyfile(path, local)
            os.chmod(local, _READONLY_FILE)
        _make_readonly(partial, files=False)
        _remove(target)
        partial.rename(target)
    except BaseException:
        _remove(partial)
        raise
    log.info("mount: %s at %s (%d files, %d linked)", record.id, target, len(plan), linked)


def _copy(storage: Storage, record: Any, src: str, target: Path, max_copy_bytes: int) -> None:
    files = storage.list_files(src)
    size = sum(files.values())
    if size > max_copy_bytes:
        raise StorageError(
            f"dataset {record.id} is {size} bytes, more than the {max_copy_bytes} bytes that may be "
            "copied into a session: choose fewer or smaller datasets, read it in the session "
            "through dass.data.datasets()[...].fs, or raise max_copy_bytes"
        )
    partial = target.with_name(f".{target.name}.partial")
    _remove(partial)
    partial.mkdir(parents=True)
    rpaths, lpaths = [], []
    for rel in sorted(files):
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):  # never write outside the target
            log.warning("mount: skipping odd object name %r in %s", rel, record.id)
            continue
        local = partial.joinpath(*parts)
        local.parent.mkdir(parents=True, exist_ok=True)
        rpaths.append(f"{src}/{rel}")
        lpaths.append(str(local))
    try:
        if rpaths:
            with storage.translate_errors(f"copying {storage.url_of(src)} into {target}"):
                storage.fs.get(rpaths, lpaths)
        _make_readonly(partial)
        _remove(target)
        partial.rename(target)
    except BaseException:
        _remove(partial)
        raise
    log.info("mount: copied %s (%d files, %d bytes) to %s", record.id, len(rpaths), size, target)


def mount_datasets(
    storage: Storage,
    records: Iterable[Any],
    home: Path,
    *,
    max_copy_bytes: int = 2 * 1024**3,
) -> list[dict[str, Any]]:
    """Make ``home/datasets/<proposal>/<dataset>`` for each record.

    Mounts left by an earlier session for datasets not chosen now are removed (symbolic links,
    and read-only copies made by this function), so that a session holds only what was chosen.

    Parameters
    ----------
    storage : Storage
        The repository.
    records : iterable of DatasetRecord
        Datasets to mount, already authorized by the caller (anything with ``id``,
        ``proposal``, ``name`` and ``metadata`` attributes).
    home : pathlib.Path
        The user's home folder.
    max_copy_bytes : int
        Largest dataset copied for non-``file://`` storage (default 2 GiB).

    Returns
    -------
    list of dict
        Manifest entries ``{"id", "proposal", "name", "url", "mount", "metadata"}``.

    Raises
    ------
    StorageError
        When a dataset is too large to copy, or the storage cannot be read.
    """
    records = list(records)
    base = Path(home) / DATASETS_DIR
    base.mkdir(parents=True, exist_ok=True)
    wanted = {(r.proposal, r.name) for r in records}
    _remove_stale(base, wanted)

    entries = []
    for record in records:
        src = storage.dataset_path(record.proposal, record.name)  # validates both names
        target = base / record.proposal / record.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (target.exists() or target.is_symlink()) and not (target.is_symlink() or _is_copy(target)):
            raise StorageError(
                f"{target} exists and is not a dataset mount made by dass: move it out of "
                f"{base} so that dataset {record.id} can be mounted there"
            )
        if storage.is_local:
            if not os.path.isdir(src):
                raise StorageError(
                    f"dataset {record.id} is not in the repository ({storage.url_of(src)} is "
                    "missing): rescan the catalogue"
                )
            _link_tree(record, src, target, max_copy_bytes)
        else:
            _copy(storage, record, src, target, max_copy_bytes)
        entries.append(
            {
                "id": f"{record.proposal}/{record.name}",
                "proposal": record.proposal,
                "name": record.name,
                "url": f"dass://{record.proposal}/{record.name}",
                "mount": str(target),
                "metadata": dict(getattr(record, "metadata", None) or {}),
            }
        )
    return entries


def _remove_stale(base: Path, wanted: set[tuple[str, str]]) -> None:
    for pdir in sorted(base.iterdir()):
        if not NAME_RE.match(pdir.name) or pdir.is_symlink() or not pdir.is_dir():
            continue
        for ddir in sorted(pdir.iterdir()):
            if (pdir.name, ddir.name) in wanted or not NAME_RE.match(ddir.name):
                continue
            if ddir.is_symlink() or _is_copy(ddir):
                log.info("mount: removing %s, not chosen for this session", ddir)
                _remove(ddir)
        if not any(pdir.iterdir()):
            pdir.rmdir()


def write_manifest(
    path: Path | str,
    *,
    stack: str | None,
    size: str | None,
    service_url: str | None,
    entries: list[dict[str, Any]],
    local_copy_max_bytes: int | None = None,
) -> Path:
    """Write the session manifest read by :func:`dass.data.session.datasets`.

    It names the datasets, their read-only views and the data gateway (``service_url``); it
    holds no storage location or credential: the session reads through the gateway with its
    own token. Written atomically (a temporary file renamed over the old one), mode 0600.

    Parameters
    ----------
    path : path-like
        Where to write (usually ``~/.dass/session.json``); parent folders are created.
    stack, size : str or None
        The stack and size chosen at spawn.
    service_url : str or None
        The dass service (``dass://`` reads through its data gateway).
    entries : list of dict
        From :func:`mount_datasets`.
    local_copy_max_bytes : int, optional
        The most bytes :meth:`dass.data.session.Dataset.local_path` may copy.

    Returns
    -------
    pathlib.Path
        The manifest path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": MANIFEST_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "stack": stack,
        "size": size,
        "service_url": service_url,
        "local_copy_max_bytes": local_copy_max_bytes,
        "datasets": entries,
    }
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def fetch_tree(fs: Any, root: str, target: Path, *, max_bytes: int | None = None, progress: Any = None,
               what: str = "") -> dict[str, int]:
    """Copy every file below ``root`` of the fsspec filesystem ``fs`` (the data gateway,
    ``dass://``) into a new read-only folder ``target`` (files 0444, folders 0555), written
    beside it first and renamed into place, so a half-made copy is never taken for a whole one.

    Parameters
    ----------
    max_bytes : int, optional
        Refuse (:class:`StorageError`) when the files hold more.
    progress : callable, optional
        Called with ``(total_bytes,)`` once, then with the byte count of every chunk copied
        (e.g. a tqdm bar's ``reset``/``update``).
    what : str
        Names the copy in messages (``dataset p/d``).

    Returns
    -------
    dict
        Relative path -> size of the files copied.

    Raises
    ------
    FileNotFoundError
        When ``root`` is missing or not readable by the caller (the gateway answers both alike).
    NotADirectoryError
        When ``root`` is a file.
    """
    # fsspec's find answers a missing folder with nothing: ask first, so that a dataset the
    # caller cannot read (or that is gone) is an error, never an empty copy
    if fs.info(root).get("type") != "directory":
        raise NotADirectoryError(f"{what or root} is not a folder")
    found = fs.find(root, detail=True)
    base = root.strip("/")
    files: dict[str, int] = {}
    for name, info in found.items():
        rel = str(name).strip("/")[len(base):].strip("/") if base else str(name).strip("/")
        if not rel or any(p in ("", ".", "..") for p in rel.split("/")):
            continue
        files[rel] = int(info.get("size") or 0)
    total = sum(files.values())
    if max_bytes is not None and total > max_bytes:
        raise StorageError(f"{what or root} holds {total} bytes, more than the {max_bytes} bytes that may be copied")
    if progress is not None:
        progress(total, None)
    partial = target.with_name(f".{target.name}.partial")
    _remove(partial)
    partial.mkdir(parents=True)
    try:
        for rel in sorted(files):
            local = partial / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            with fs.open(f"{base}/{rel}" if base else rel, "rb", block_size=8 * 1024**2) as src, open(local, "wb") as dst:
                while chunk := src.read(8 * 1024**2):
                    dst.write(chunk)
                    if progress is not None:
                        progress(None, len(chunk))
        _make_readonly(partial)
        _remove(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(target)
    except BaseException:
        _remove(partial)
        raise
    return files


def is_complete_copy(fs: Any, root: str, target: Path) -> bool:
    """Whether ``target`` (made by :func:`fetch_tree`) holds every file below ``root`` of ``fs``
    with its size (a copy still good to use)."""
    if not target.is_dir():
        return False
    base = root.strip("/")
    for name, info in fs.find(root, detail=True).items():
        rel = str(name).strip("/")[len(base):].strip("/") if base else str(name).strip("/")
        local = target / rel
        if not local.is_file() or local.stat().st_size != int(info.get("size") or 0):
            return False
    return True

"""Put the datasets chosen at spawn into a user's home: ``~/datasets/<proposal>/<dataset>``.

For ``file://`` storage a dataset is a symbolic link to its repository folder (no copy, and the
repository's own permissions keep it read-only). For any other protocol (S3…) the dataset is
copied with fsspec, then made read-only (files 0444, folders 0555); datasets larger than
``max_copy_bytes`` are refused, since the session can always stream them through
``dass.data.datasets()[…].fs`` instead.

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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import StorageError
from .metadata import NAME_RE
from .storage import Storage

__all__ = ["mount_datasets", "write_manifest", "MANIFEST_VERSION", "DATASETS_DIR"]

log = logging.getLogger(__name__)

#: Version of the session manifest written by :func:`write_manifest`.
MANIFEST_VERSION = 1
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


def _make_readonly(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, _READONLY_FILE)
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, _READONLY_DIR)
    os.chmod(path, _READONLY_DIR)


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
            _remove(target)
            target.symlink_to(src, target_is_directory=True)
            log.info("mount: linked %s to %s", record.id, target)
        else:
            _copy(storage, record, src, target, max_copy_bytes)
        entries.append(
            {
                "id": f"{record.proposal}/{record.name}",
                "proposal": record.proposal,
                "name": record.name,
                "url": storage.url_of(src),
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
    storage_url: str,
    storage_options: Mapping[str, Any],
    entries: list[dict[str, Any]],
) -> Path:
    """Write the session manifest read by :func:`dass.data.session.datasets`.

    The file holds the storage options (possibly credentials), so it is written with mode
    0600, atomically (a temporary file renamed over the old one).

    Parameters
    ----------
    path : path-like
        Where to write (usually ``~/.dass/session.json``); parent folders are created.
    stack, size : str or None
        The stack and size chosen at spawn.
    storage_url : str
        ``Storage.url``.
    storage_options : mapping
        Storage options the session needs to read the datasets (``Storage.storage_options``).
    entries : list of dict
        From :func:`mount_datasets`.

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
        "storage": {"url": storage_url, "options": dict(storage_options)},
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

"""The one way dass writes a ``dataset.json``: lock, read, change, validate, write, re-index.

Every writer of dataset metadata goes through this module: SEM labels
(:func:`dass.sem.labels.confirm`, uploads in :func:`dass.sem.labels.store_upload`), STM
annotation (:func:`dass.stm.catalog.annotate_dataset`, ``dass stm annotate``) and job results
(the runner writes the derived dataset with :func:`write_metadata`, the job manager indexes it
with :func:`reindex_dataset`).

:func:`update_dataset` changes the metadata of one existing dataset:

1. it takes the dataset's **lock** (:func:`dataset_lock`);
2. reads ``dataset.json`` and checks it against the ``dass.dataset/1`` schema
   (:func:`dass.data.metadata.parse_metadata`);
3. applies the caller's change to a copy;
4. **validates** the result against the schema *before* anything is written; a refused change
   raises :class:`MetadataUpdateError` and leaves every file as it was;
5. lets the caller write companion files (a label sidecar, an updated data file) while the lock
   is held (``also_write``);
6. writes ``dataset.json`` **atomically** through fsspec (see :func:`write_metadata`);
7. **re-indexes** the dataset in the catalogue, still under the lock, so the catalogue sees the
   updates in the order they were written.

The lock
--------
A lock file per dataset, ``<lock_dir>/<proposal>/<dataset>.lock`` (``lock_dir`` is the
setting ``c.Storage.lock_dir``, by default ``<state dir>/locks``), held with ``fcntl.flock``
(exclusive). It serializes writers across threads *and* processes of one machine: the dass
service and a ``dass stm annotate`` run at the same time wait for each other instead of losing
one update. The kernel releases the lock when its holder ends, even by a crash, so a stale lock
cannot block the platform; lock files are never deleted (deleting one while another process
waits on it would let two writers in). Writers on *several* machines sharing an S3 repository
are not serialized by it: they need a shared lock (a database row lock) — out of scope while a
dataset's metadata is written from one machine.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DassDataError, MetadataError, StorageError
from .metadata import (
    MAX_METADATA_BYTES,
    METADATA_FILE,
    NAME_RE,
    DatasetMetadata,
    dump_metadata,
    parse_metadata,
)
from .paths import state_dir
from .storage import Storage

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog
    from .indexer import ScanReport

__all__ = [
    "LOCK_SUFFIX",
    "MetadataUpdateError",
    "dataset_lock",
    "default_lock_dir",
    "publish_dataset",
    "reindex_dataset",
    "split_dataset_id",
    "update_dataset",
    "validated_bytes",
    "write_metadata",
]

log = logging.getLogger(__name__)

#: A dataset's lock file is ``<lock_dir>/<proposal>/<dataset>`` with this suffix.
LOCK_SUFFIX = ".lock"


class MetadataUpdateError(MetadataError):
    """A change of a ``dataset.json`` was refused; nothing was written.

    ``stage`` says why: ``"current"`` when the file as it is now is missing or breaks the schema
    (fix the file first), ``"change"`` when the changed document would break it (fix the
    change). ``path``, ``field`` and ``message`` are those of :class:`MetadataError`.

    Examples
    --------
    >>> e = MetadataUpdateError("file:///r/p/d/dataset.json", "title", "must not be empty", stage="change")
    >>> e.stage, str(e)
    ('change', 'file:///r/p/d/dataset.json: title: must not be empty')
    """

    def __init__(self, path: str, field: str, message: str, stage: str = "change") -> None:
        super().__init__(path, field, message)
        self.stage = stage

    def __reduce__(self):  # keep pickling working with the extra argument
        return (type(self), (self.path, self.field, self.message, self.stage))

    @classmethod
    def from_error(cls, error: MetadataError, stage: str, note: str) -> MetadataUpdateError:
        return cls(error.path, error.field, f"{error.message} ({note})", stage=stage)


def split_dataset_id(dataset_id: str) -> tuple[str, str]:
    """``"<proposal>/<dataset>"`` as ``(proposal, dataset)``.

    Raises
    ------
    ValueError
        When the id is not two valid folder names joined by ``/``.

    Examples
    --------
    >>> split_dataset_id("p-2026-002/stm-mixed")
    ('p-2026-002', 'stm-mixed')
    """
    proposal, sep, name = str(dataset_id).partition("/")
    if not sep or not NAME_RE.match(proposal) or not NAME_RE.match(name):
        raise ValueError(
            f"dataset id {dataset_id!r} must be <proposal>/<dataset>, two names of 1-64 letters, "
            "digits, '.', '_' or '-'"
        )
    return proposal, name


def default_lock_dir() -> Path:
    """``<state dir>/locks``: where :func:`dataset_lock` keeps its lock files by default."""
    return state_dir() / "locks"


def _lock_dir(storage: Storage, lock_dir: str | Path | None) -> str | Path | None:
    """The lock folder: the argument, else the storage's ``lock_dir`` setting."""
    if lock_dir is not None:
        return lock_dir
    return getattr(storage, "lock_dir", None) or None


@contextlib.contextmanager
def dataset_lock(proposal: str, name: str, *, lock_dir: str | Path | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of one dataset's metadata (threads and processes of one machine).

    Parameters
    ----------
    proposal, name : str
        The dataset (valid folder names).
    lock_dir : path, optional
        Folder of the lock files (default :func:`default_lock_dir`); every process that writes
        the same repository must use the same one.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    DassDataError
        When the lock file cannot be created (the message names the folder to fix).
    """
    split_dataset_id(f"{proposal}/{name}")  # never a path outside lock_dir
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    path = folder / proposal / f"{name}{LOCK_SUFFIX}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # opening for append never truncates another holder's file
    except OSError as e:
        raise DassDataError(
            f"cannot create the metadata lock {path}: {e.strerror or e}; make the folder {folder} "
            "writable (it is under the state folder, DASS_STATE_DIR)"
        ) from e
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits while another writer holds it
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def validated_bytes(doc: Mapping[str, Any], *, proposal: str, url: str) -> tuple[bytes, DatasetMetadata]:
    """The bytes of ``doc`` as written to ``dataset.json``, checked against ``dass.dataset/1``.

    Parameters
    ----------
    doc : mapping
        The metadata document.
    proposal : str
        The dataset's proposal (the default access group).
    url : str
        Where the file goes, for error messages.

    Returns
    -------
    data : bytes
        Pretty JSON (:func:`dass.data.metadata.dump_metadata`).
    metadata : DatasetMetadata
        ``data`` parsed again, exactly as the catalogue will read it.

    Raises
    ------
    MetadataError
        Naming the field at fault; also for values JSON cannot hold.

    Examples
    --------
    >>> doc = {"schema": "dass.dataset/1", "title": "t", "creators": [{"name": "Ada"}],
    ...        "dates": {"created": "2026-01-01"}, "licence": "CC-BY-4.0"}
    >>> data, md = validated_bytes(doc, proposal="p1", url="mem://p1/d1/dataset.json")
    >>> md.access_groups
    ['p1']
    >>> validated_bytes({**doc, "title": ""}, proposal="p1", url="mem://p1/d1/dataset.json")
    Traceback (most recent call last):
    ...
    dass.data.errors.MetadataError: mem://p1/d1/dataset.json: title: must not be empty
    """
    if not isinstance(doc, Mapping):
        raise MetadataError(url, "", f"the metadata must be a JSON object, not {type(doc).__name__}")
    try:
        text = dump_metadata(doc)
    except (TypeError, ValueError) as e:
        raise MetadataError(url, "", f"holds a value JSON cannot store: {e}") from None
    data = text.encode("utf-8")
    return data, parse_metadata(data, path=url, proposal=proposal)


def _atomic_write(storage: Storage, path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a reader sees the old file or the new one, never half.

    On ``file://`` a hidden temporary file in the same folder is renamed over the target (one
    ``rename``); on object stores (S3) one ``PUT`` replaces the object whole.
    """
    url = storage.url_of(path)
    fs = storage.fs
    with storage.translate_errors(f"writing {url}"):
        if not storage.is_local:
            fs.pipe_file(path, data)
            return
        parent, _, base = path.rpartition("/")
        fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.{base}.{secrets.token_hex(6)}.tmp"
        try:
            fs.pipe_file(tmp, data)
            fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.rm_file(tmp)
            raise


def write_metadata(storage: Storage, folder: str, doc: Mapping[str, Any], *, proposal: str) -> bytes:
    """Validate ``doc`` and write it atomically as ``<folder>/dataset.json``; no lock, no index.

    For a dataset only its writer knows yet (a job's results written by the job runner, which
    has no catalogue); everything else uses :func:`publish_dataset` or :func:`update_dataset`.

    Parameters
    ----------
    storage : Storage
        The storage ``folder`` is in.
    folder : str
        The dataset folder, a path inside ``storage.fs``.
    doc : mapping
        The metadata.
    proposal : str
        The dataset's proposal.

    Returns
    -------
    bytes
        What was written.

    Raises
    ------
    MetadataError
        ``doc`` breaks the schema; nothing was written.
    StorageError
        The file could not be written.
    """
    path = f"{folder.rstrip('/')}/{METADATA_FILE}"
    data, _ = validated_bytes(doc, proposal=proposal, url=storage.url_of(path))
    _atomic_write(storage, path, data)
    return data


def _own_errors(storage: Storage, proposal: str, name: str, report: ScanReport) -> list[MetadataError]:
    """The errors of ``report`` about this dataset (not about its proposal's ``proposal.json``)."""
    folder = storage.url_of(storage.dataset_path(proposal, name))
    return [e for e in report.errors if e.path == folder or e.path.startswith(folder + "/")]


def _index(storage: Storage, catalog: Catalog, proposal: str, name: str) -> ScanReport:
    report = catalog.index_dataset(storage, proposal, name)
    mine = _own_errors(storage, proposal, name, report)
    if mine:  # validated just before: another writer bypassed the lock, or the schema moved
        raise DassDataError(f"{proposal}/{name} was written but the catalogue refused it: {mine[0]}")
    return report


def reindex_dataset(
    storage: Storage, catalog: Catalog, proposal: str, name: str, *, lock_dir: str | Path | None = None
) -> ScanReport:
    """Index one dataset that was written elsewhere (a job's results), under its lock.

    Returns
    -------
    ScanReport
        Its ``errors`` hold only this dataset's metadata problems (a missing or invalid
        ``dataset.json``, which leaves it out of the catalogue).
    """
    with dataset_lock(proposal, name, lock_dir=_lock_dir(storage, lock_dir)):
        report = catalog.index_dataset(storage, proposal, name)
    report.errors = _own_errors(storage, proposal, name, report)
    return report


def publish_dataset(
    storage: Storage,
    catalog: Catalog | None,
    proposal: str,
    name: str,
    doc: Mapping[str, Any],
    *,
    lock_dir: str | Path | None = None,
) -> DatasetMetadata:
    """Write the ``dataset.json`` of a new (or wholly replaced) dataset and index it.

    Its data files are written first, by the caller: the metadata's presence marks a complete
    dataset. Lock, validation, atomic write and re-indexing as in :func:`update_dataset`.

    Raises
    ------
    MetadataError
        ``doc`` breaks the schema; nothing was written.
    StorageError, DassDataError
        The repository, the lock or the catalogue failed.
    """
    folder = storage.dataset_path(proposal, name)
    path = f"{folder}/{METADATA_FILE}"
    url = storage.url_of(path)
    data, metadata = validated_bytes(doc, proposal=proposal, url=url)
    with dataset_lock(proposal, name, lock_dir=_lock_dir(storage, lock_dir)):
        _atomic_write(storage, path, data)
        if catalog is not None:
            _index(storage, catalog, proposal, name)
    log.info("metadata of %s/%s written (%d bytes)", proposal, name, len(data))
    return metadata


def update_dataset(
    storage: Storage,
    catalog: Catalog | None,
    dataset_id: str,
    change: Callable[[dict[str, Any]], Mapping[str, Any]],
    *,
    also_write: Callable[[dict[str, Any]], None] | None = None,
    lock_dir: str | Path | None = None,
) -> DatasetMetadata:
    """Change the ``dataset.json`` of one dataset: lock, read, change, validate, write, re-index.

    Parameters
    ----------
    storage : Storage
        The repository.
    catalog : Catalog or None
        Re-indexes the dataset after the write (skipped when None).
    dataset_id : str
        ``"<proposal>/<dataset>"``.
    change : callable
        Called under the lock with a deep copy of the current document; returns the new
        document (it may change and return its argument). Read the current values here, not
        before taking the lock, or a concurrent update is lost.
    also_write : callable, optional
        Called under the lock with the validated new document, before ``dataset.json`` is
        written: write companion files here (a label sidecar, an updated data file). When it
        raises, ``dataset.json`` is not written.
    lock_dir : path, optional
        Folder of the lock files (:func:`dataset_lock`); default ``storage.lock_dir``.

    Returns
    -------
    DatasetMetadata
        The new metadata as written (``raw`` is the document).

    Raises
    ------
    ValueError
        A malformed dataset id.
    MetadataUpdateError
        ``stage="current"``: the dataset has no ``dataset.json`` or it breaks the schema now;
        ``stage="change"``: the changed document would break it. Nothing was written.
    StorageError, DassDataError
        The repository, the lock or the catalogue failed.

    Examples
    --------
    >>> def add_keyword(doc):                                                  # doctest: +SKIP
    ...     doc["keywords"] = sorted({*doc.get("keywords", []), "graphene"})
    ...     return doc
    >>> update_dataset(storage, catalog, "p1/d1", add_keyword).keywords      # doctest: +SKIP
    ['graphene']
    """
    proposal, name = split_dataset_id(dataset_id)
    folder = storage.dataset_path(proposal, name)
    path = f"{folder}/{METADATA_FILE}"
    url = storage.url_of(path)
    with dataset_lock(proposal, name, lock_dir=_lock_dir(storage, lock_dir)):
        if not storage.exists(path):
            raise MetadataUpdateError(
                url, "", f"missing dataset.json: {dataset_id} is not a dataset of the repository "
                "(check the id, or write its dataset.json first)", stage="current",
            )
        try:
            raw = storage.read_bytes(path, MAX_METADATA_BYTES)
        except StorageError as e:
            if "larger than" not in str(e):
                raise
            raise MetadataUpdateError(url, "", f"{e}; fix the file before changing it", stage="current") from None
        try:
            current = parse_metadata(raw, path=url, proposal=proposal)
        except MetadataError as e:
            raise MetadataUpdateError.from_error(
                e, "current", "fix the file before changing it; nothing was written") from None
        new_doc = change(copy.deepcopy(current.raw))
        if not isinstance(new_doc, Mapping):
            raise TypeError(f"the change of {dataset_id} returned {type(new_doc).__name__}, not the new document")
        new_doc = dict(new_doc)
        try:
            data, metadata = validated_bytes(new_doc, proposal=proposal, url=url)
        except MetadataError as e:
            raise MetadataUpdateError.from_error(
                e, "change", "the change was refused; dataset.json is unchanged") from None
        if also_write is not None:
            also_write(copy.deepcopy(metadata.raw))
        _atomic_write(storage, path, data)
        if catalog is not None:
            _index(storage, catalog, proposal, name)
    log.info("metadata of %s updated (%d bytes)", dataset_id, len(data))
    return metadata

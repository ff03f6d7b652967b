"""The indexer: reads the repository's ``dataset.json`` and ``proposal.json`` files into the catalogue.

The repository stays the source of truth; the catalogue tables (:mod:`dass.data.orm`) are an
index of it. :func:`scan` walks the whole repository (``dass catalog scan``,
:meth:`Catalog.scan <dass.data.catalog.Catalog.scan>`), :func:`index_dataset` re-reads one
dataset after it was written (:mod:`dass.data.metadata_writer`, job results, uploads). The
queries over the index are in :mod:`dass.data.catalog`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from logging import Logger
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .errors import DassDataError, MetadataError, StorageError
from .metadata import (
    MAX_METADATA_BYTES,
    METADATA_FILE,
    PROPOSAL_FILE,
    DatasetMetadata,
    parse_metadata,
    parse_proposal,
    sha256_bytes,
)
from .orm import USER_PREFIX, Dataset, DatasetAccess, DatasetCategory, Proposal
from .storage import Storage

__all__ = ["NOT_PROPOSALS", "CatalogDatabase", "ScanReport", "index_dataset", "scan"]

#: top-level folders of the repository that are not proposals: ``models`` holds the SEM model
#: registry (:mod:`dass.sem.registry`), which the scan must not index as datasets
NOT_PROPOSALS = frozenset({"models"})


@dataclass
class ScanReport:
    """What a :func:`scan` (or :func:`index_dataset`) did.

    Attributes
    ----------
    indexed : int
        Datasets indexed (inserted or updated).
    removed : int
        Catalogue rows deleted: datasets that vanished from the repository, or whose metadata is
        now invalid (they stay out of the catalogue until fixed).
    errors : list of MetadataError
        Every invalid or missing metadata file, with file and field.

    Examples
    --------
    >>> print(ScanReport(indexed=1))
    indexed 1 dataset, removed 0, 0 errors
    """

    indexed: int = 0
    removed: int = 0
    errors: list[MetadataError] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"indexed {self.indexed} dataset{'s' if self.indexed != 1 else ''}, "
            f"removed {self.removed}, {len(self.errors)} error{'s' if len(self.errors) != 1 else ''}"
        ]
        lines += [f"  {err}" for err in self.errors]
        return "\n".join(lines)


class CatalogDatabase(Protocol):
    """What the indexer needs of a :class:`~dass.data.catalog.Catalog` (which calls it):
    sessions of the upgraded database, its error wording and its logger."""

    log: Logger

    def _session(self) -> Session: ...

    def _db_error(self, e: SQLAlchemyError) -> DassDataError: ...


def _upsert(row: Dataset, entry: dict[str, Any], now: dt.datetime) -> Dataset:
    """Copy a parsed dataset entry onto its row (access rows replaced only when they changed)."""
    entry = dict(entry)
    groups = sorted(set(entry.pop("access_groups")))
    categories = sorted(set(entry.pop("categories", ())))
    for key, value in entry.items():
        setattr(row, key, value)
    row.scanned_at = now
    if sorted(a.group for a in row.access) != groups:
        row.access = [DatasetAccess(group=g) for g in groups]
    if sorted(c.category for c in row.category_rows) != categories:
        row.category_rows = [DatasetCategory(category=c) for c in categories]
    return row


def _domain_categories(domain: dict[str, Any]) -> list[str]:
    """The confirmed categories of a dataset: ``domain.categories`` (strings; others ignored)."""
    value = domain.get("categories") if isinstance(domain, dict) else None
    if not isinstance(value, list):
        return []
    return [c for c in value if isinstance(c, str) and c.strip()]


def scan(catalog: CatalogDatabase, storage: Storage) -> ScanReport:
    """Index the repository: parse every ``dataset.json``, upsert, drop what vanished.

    A malformed or missing ``dataset.json`` is logged with its file and field, returned in
    :attr:`ScanReport.errors`, and does not stop the scan; such a dataset is left out of
    (or removed from) the catalogue until fixed, since its access rules are unknown.

    Parameters
    ----------
    catalog : dass.data.catalog.Catalog
        The catalogue database to fill.
    storage : Storage
        The repository to index.

    Returns
    -------
    ScanReport

    Raises
    ------
    StorageError
        When the repository cannot be listed (nothing in the catalogue is changed then).
    """
    now = dt.datetime.now(dt.timezone.utc)
    report = ScanReport()
    proposals: dict[str, dict[str, str | None]] = {}
    found: dict[str, dict[str, Any]] = {}

    for proposal, ppath in storage.iter_proposal_dirs():
        if proposal in NOT_PROPOSALS:
            continue
        proposals[proposal] = _read_proposal(storage, proposal, ppath, report)
    for proposal, name, path in storage.iter_dataset_dirs():
        if proposal in NOT_PROPOSALS:
            continue
        if proposal not in proposals:  # appeared between the two listings
            proposals[proposal] = _read_proposal(storage, proposal, storage.join(proposal), report)
        entry = _read_dataset(storage, proposal, name, path, report)
        if entry is not None:
            found[entry["id"]] = entry

    try:
        with catalog._session() as session, session.begin():
            existing = {p.id: p for p in session.scalars(select(Proposal))}
            for pid, values in proposals.items():
                row = existing.get(pid) or Proposal(id=pid)
                row.title, row.pi, row.description = values["title"], values["pi"], values["description"]
                session.add(row)
            session.flush()

            rows = {d.id: d for d in session.scalars(select(Dataset))}
            for did, entry in found.items():
                session.add(_upsert(rows.get(did) or Dataset(id=did), entry, now))
                report.indexed += 1
            for did, row in rows.items():
                if did not in found:
                    session.delete(row)
                    report.removed += 1
            session.flush()
            for pid, row in existing.items():
                if pid not in proposals:
                    session.delete(row)
    except SQLAlchemyError as e:
        raise catalog._db_error(e) from e

    for err in report.errors:
        catalog.log.warning("Catalog scan: invalid metadata: %s", err)
    catalog.log.info("Catalog scan of %s: %s", storage.url, str(report).splitlines()[0])
    return report


def index_dataset(catalog: CatalogDatabase, storage: Storage, proposal: str, name: str) -> ScanReport:
    """Index (or re-index) one dataset, e.g. results a job has just written.

    Cheaper than :meth:`scan` (which walks the whole repository). A dataset whose
    ``dataset.json`` is missing or invalid is removed from the catalogue and reported.
    """
    now = dt.datetime.now(dt.timezone.utc)
    report = ScanReport()
    ppath = storage.join(proposal)
    values = _read_proposal(storage, proposal, ppath, report)
    entry = _read_dataset(storage, proposal, name, storage.dataset_path(proposal, name), report)
    did = f"{proposal}/{name}"
    try:
        with catalog._session() as session, session.begin():
            prow = session.get(Proposal, proposal)
            if prow is None:
                prow = Proposal(id=proposal)
                prow.title, prow.pi, prow.description = values["title"], values["pi"], values["description"]
                session.add(prow)
                session.flush()
            row = session.get(Dataset, did)
            if entry is None:
                if row is not None:
                    session.delete(row)
                    report.removed += 1
            else:
                session.add(_upsert(row or Dataset(id=did), entry, now))
                report.indexed += 1
    except SQLAlchemyError as e:
        raise catalog._db_error(e) from e
    for err in report.errors:
        catalog.log.warning("Catalog: invalid metadata: %s", err)
    return report


def _read_file(storage: Storage, path: str, report: ScanReport) -> bytes | None:
    try:
        return storage.read_bytes(path, MAX_METADATA_BYTES)
    except StorageError as e:
        storage.check()  # a storage-wide problem stops the scan before anything is changed
        report.errors.append(MetadataError(storage.url_of(path), "", f"cannot read the file: {e}"))
        return None


def _read_proposal(
    storage: Storage, proposal: str, ppath: str, report: ScanReport
) -> dict[str, str | None]:
    values: dict[str, str | None] = {"title": None, "pi": None, "description": None}
    path = f"{ppath}/{PROPOSAL_FILE}"
    if not storage.exists(path):
        return values
    data = _read_file(storage, path, report)
    if data is None:
        return values
    try:
        parsed = parse_proposal(data, path=storage.url_of(path))
    except MetadataError as e:
        report.errors.append(e)
        return values
    return {"title": parsed.title, "pi": parsed.pi, "description": parsed.description}


def _read_dataset(
    storage: Storage, proposal: str, name: str, path: str, report: ScanReport
) -> dict[str, Any] | None:
    meta_path = f"{path}/{METADATA_FILE}"
    meta_url = storage.url_of(meta_path)
    try:
        files = storage.list_files(path)
    except StorageError as e:
        storage.check()
        report.errors.append(MetadataError(storage.url_of(path), "", f"cannot list the dataset: {e}"))
        return None
    if METADATA_FILE not in files:
        report.errors.append(MetadataError(meta_url, "", "missing dataset.json"))
        return None
    data = _read_file(storage, meta_path, report)
    if data is None:
        return None
    try:
        md: DatasetMetadata = parse_metadata(data, path=meta_url, proposal=proposal)
    except MetadataError as e:
        report.errors.append(e)
        return None
    del files[METADATA_FILE]
    return {
        "id": f"{proposal}/{name}",
        "proposal": proposal,
        "name": name,
        "title": md.title,
        "description": md.description,
        "keywords": list(md.keywords),
        "instrument": md.instrument,
        "technique": md.technique,
        "stacks": list(md.stacks),
        "url": storage.dataset_url(proposal, name),
        "public": md.public,
        "embargo_until": md.embargo_until,
        "synthetic": md.synthetic,
        "metadata_": md.raw,
        "metadata_sha256": sha256_bytes(data),
        "file_count": len(files),
        "size_bytes": sum(files.values()),
        # users are stored beside groups as "user:<name>" principals
        "access_groups": list(md.access_groups) + [USER_PREFIX + u for u in md.access_users],
        "categories": _domain_categories(md.domain),
    }

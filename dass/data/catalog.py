"""The catalogue: proposals and datasets indexed from the repository, searchable with access rules.

The catalogue is an index, rebuilt from the repository by :meth:`Catalog.scan`; the repository
(``dataset.json`` files) stays the source of truth. It lives in a SQL database (SQLite by
default, PostgreSQL in production) whose schema is managed by the Alembic migrations shipped in
``dass/data/migrations``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    and_,
    cast,
    create_engine,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from traitlets import Bool, Unicode, default
from traitlets.config import LoggingConfigurable

from .access import Identity
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
from .paths import state_dir
from .storage import Storage

#: top-level folders of the repository that are not proposals: ``models`` holds the SEM model
#: registry (:mod:`dass.sem.registry`), which the scan must not index as datasets
NOT_PROPOSALS = frozenset({"models"})
#: access principals of single users are stored beside groups with this prefix (reserved in group names)
USER_PREFIX = "user:"

__all__ = [
    "Base",
    "Proposal",
    "Dataset",
    "DatasetAccess",
    "DatasetCategory",
    "DatasetRecord",
    "ScanReport",
    "Catalog",
    "VERSION_TABLE",
]

#: Alembic's version table for the catalogue (named so it can share a database with others).
VERSION_TABLE = "dass_catalog_alembic_version"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# ---------------------------------------------------------------------------------------------
# ORM models (the schema itself is created by migrations/versions/*.py, never by create_all)


class Base(DeclarativeBase):
    pass


class Proposal(Base):
    __tablename__ = "proposals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    pi: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)

    datasets: Mapped[list[Dataset]] = relationship(back_populates="proposal_row")


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(129), primary_key=True)  # "<proposal>/<name>"
    proposal: Mapped[str] = mapped_column(
        String(64), ForeignKey("proposals.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[list[str]] = mapped_column(JSON)
    instrument: Mapped[str | None] = mapped_column(String(255))
    technique: Mapped[str | None] = mapped_column(String(255))
    stacks: Mapped[list[str]] = mapped_column(JSON)
    url: Mapped[str] = mapped_column(Text)
    public: Mapped[bool] = mapped_column(Boolean)
    embargo_until: Mapped[dt.date | None] = mapped_column(Date)
    synthetic: Mapped[bool] = mapped_column(Boolean)
    # "metadata" is reserved by SQLAlchemy's declarative base: the attribute is metadata_
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    metadata_sha256: Mapped[str] = mapped_column(String(71))
    file_count: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    scanned_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    proposal_row: Mapped[Proposal] = relationship(back_populates="datasets")
    access: Mapped[list[DatasetAccess]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", lazy="selectin"
    )
    category_rows: Mapped[list[DatasetCategory]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class DatasetAccess(Base):
    __tablename__ = "dataset_access"

    dataset_id: Mapped[str] = mapped_column(
        String(129), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    group: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)

    dataset: Mapped[Dataset] = relationship(back_populates="access")


class DatasetCategory(Base):
    """A confirmed image category of a dataset (``domain.categories``, migration 0003)."""

    __tablename__ = "dataset_categories"

    dataset_id: Mapped[str] = mapped_column(
        String(129), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


# ---------------------------------------------------------------------------------------------
# plain values handed to callers


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime read from the database with its zone: SQLite drops it, we store UTC."""
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we store UTC
        return value.replace(tzinfo=dt.timezone.utc)
    return value


@dataclass(frozen=True)
class DatasetRecord:
    """One catalogued dataset, detached from the database.

    Lists of the row are tuples here. ``metadata`` is the ``dataset.json`` object as read (it
    does not take part in equality or hashing; ``metadata_sha256`` does).
    """

    id: str
    proposal: str
    name: str
    title: str
    description: str | None
    keywords: tuple[str, ...]
    instrument: str | None
    technique: str | None
    stacks: tuple[str, ...]
    url: str
    public: bool
    embargo_until: dt.date | None
    synthetic: bool
    access_groups: tuple[str, ...]
    metadata_sha256: str
    file_count: int
    size_bytes: int
    scanned_at: dt.datetime | None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    access_users: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Dataset) -> DatasetRecord:
        return cls(
            id=row.id,
            proposal=row.proposal,
            name=row.name,
            title=row.title,
            description=row.description,
            keywords=tuple(row.keywords or ()),
            instrument=row.instrument,
            technique=row.technique,
            stacks=tuple(row.stacks or ()),
            url=row.url,
            public=bool(row.public),
            embargo_until=row.embargo_until,
            synthetic=bool(row.synthetic),
            access_groups=tuple(sorted(a.group for a in row.access if not a.group.startswith(USER_PREFIX))),
            access_users=tuple(
                sorted(a.group[len(USER_PREFIX):] for a in row.access if a.group.startswith(USER_PREFIX))
            ),
            metadata_sha256=row.metadata_sha256,
            file_count=row.file_count,
            size_bytes=row.size_bytes,
            scanned_at=as_utc(row.scanned_at),
            metadata=dict(row.metadata_ or {}),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict of the record (dates as ISO strings, lists as lists)."""
        return {
            "id": self.id,
            "proposal": self.proposal,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
            "instrument": self.instrument,
            "technique": self.technique,
            "stacks": list(self.stacks),
            "url": self.url,
            "public": self.public,
            "embargo_until": self.embargo_until.isoformat() if self.embargo_until else None,
            "synthetic": self.synthetic,
            "access_groups": list(self.access_groups),
            "access_users": list(self.access_users),
            "metadata_sha256": self.metadata_sha256,
            "file_count": self.file_count,
            "size_bytes": self.size_bytes,
            "scanned_at": self.scanned_at.isoformat() if self.scanned_at else None,
            "metadata": self.metadata,
        }


@dataclass
class ScanReport:
    """What a :meth:`Catalog.scan` did.

    Attributes
    ----------
    indexed : int
        Datasets indexed (inserted or updated).
    removed : int
        Catalogue rows deleted: datasets that vanished from the repository, or whose metadata is
        now invalid (they stay out of the catalogue until fixed).
    errors : list of MetadataError
        Every invalid or missing metadata file, with file and field.
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


# ---------------------------------------------------------------------------------------------


def _json_serializer(value: Any) -> str:
    # keep non-ASCII readable in the database so text search (LIKE) matches it
    return json.dumps(value, ensure_ascii=False)


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


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Catalog(LoggingConfigurable):
    """The catalogue database of proposals and datasets.

    Examples
    --------
    >>> catalog = Catalog(db_url="sqlite:///:memory:")          # doctest: +SKIP
    >>> report = catalog.scan(Storage(url="file:///srv/repo"))  # doctest: +SKIP
    >>> records, total = catalog.search(Identity("alice", frozenset({"p1"})), text="grain")  # doctest: +SKIP
    """

    db_url = Unicode(
        config=True,
        help="""SQLAlchemy URL of the catalogue database. SQLite (the default,
        ``sqlite:///<state dir>/catalog.sqlite``) suits one machine; use PostgreSQL
        (``postgresql+psycopg://user:password@host/dass``) when several processes or machines
        share it. The catalogue is an index of the repository and can always be rebuilt by a
        scan. Its schema is created and upgraded by Alembic migrations; its version table is
        ``dass_catalog_alembic_version``, so it may share a database with other dass tables.""",
    )

    auto_upgrade = Bool(
        True,
        config=True,
        help="""Upgrade the catalogue schema to the newest migration the first time the
        database is used by this process. Turn off where schema changes must be run by hand
        (``Catalog.upgrade()``) before a release is rolled out.""",
    )

    @default("db_url")
    def _default_db_url(self) -> str:
        return f"sqlite:///{state_dir(self.config) / 'catalog.sqlite'}"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._engine: Engine | None = None
        self._sessionmaker: sessionmaker[Session] | None = None
        self._upgraded = False
        self._lock = threading.Lock()

    # -----------------------------------------------------------------------------------------
    # database plumbing

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use)."""
        if self._engine is None:
            url = make_url(self.db_url)
            kwargs: dict[str, Any] = {"json_serializer": _json_serializer, "future": True}
            if url.get_backend_name() == "sqlite":
                database = url.database
                if database and database != ":memory:" and not database.startswith("file:"):
                    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                if not database or database == ":memory:":
                    from sqlalchemy.pool import StaticPool

                    kwargs["poolclass"] = StaticPool  # one shared in-memory database
                kwargs["connect_args"] = {"check_same_thread": False}
            else:
                kwargs["pool_pre_ping"] = True
            self._engine = create_engine(url, **kwargs)
            if url.get_backend_name() == "sqlite":
                from sqlalchemy import event

                @event.listens_for(self._engine, "connect")
                def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
                    cursor = dbapi_connection.cursor()
                    cursor.execute("PRAGMA foreign_keys=ON")
                    cursor.close()

            self._sessionmaker = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    def _alembic_config(self, connection: Any) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = connection
        cfg.attributes["version_table"] = VERSION_TABLE
        return cfg

    def upgrade(self) -> None:
        """Create or upgrade the catalogue schema to the newest migration (idempotent).

        Raises
        ------
        DassDataError
            When the database cannot be reached or migrated; the message names ``db_url``.
        """
        from alembic import command

        with self._lock:
            for attempt in (1, 2):
                try:
                    with self.engine.begin() as connection:
                        command.upgrade(self._alembic_config(connection), "head")
                    break
                except SQLAlchemyError as e:
                    if attempt == 1:
                        # another process (hub and service start together) may have been
                        # migrating at the same moment: look again once before giving up
                        self.log.warning("Catalog: upgrade of %s failed (%s), retrying once", self._safe_url(), e)
                        time.sleep(0.5)
                        continue
                    raise DassDataError(
                        f"cannot upgrade the catalogue database {self._safe_url()}: {e}; "
                        "check c.Catalog.db_url"
                    ) from e
            self._upgraded = True
        self.log.debug("Catalog: schema of %s is up to date", self._safe_url())

    @property
    def safe_url(self) -> str:
        """``db_url`` with the password masked, for logs and messages."""
        return make_url(self.db_url).render_as_string(hide_password=True)

    def _safe_url(self) -> str:
        return self.safe_url

    def _session(self) -> Session:
        if not self._upgraded and self.auto_upgrade:
            self.upgrade()
        self.engine  # noqa: B018 - creates the sessionmaker
        assert self._sessionmaker is not None
        return self._sessionmaker()

    def _db_error(self, e: SQLAlchemyError) -> DassDataError:
        return DassDataError(
            f"catalogue database {self._safe_url()} failed: {e.__class__.__name__}: {e}; "
            "check c.Catalog.db_url, or run Catalog.upgrade() if the schema is missing"
        )

    # -----------------------------------------------------------------------------------------
    # scanning

    def scan(self, storage: Storage) -> ScanReport:
        """Index the repository: parse every ``dataset.json``, upsert, drop what vanished.

        A malformed or missing ``dataset.json`` is logged with its file and field, returned in
        :attr:`ScanReport.errors`, and does not stop the scan; such a dataset is left out of
        (or removed from) the catalogue until fixed, since its access rules are unknown.

        Parameters
        ----------
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
            proposals[proposal] = self._read_proposal(storage, proposal, ppath, report)
        for proposal, name, path in storage.iter_dataset_dirs():
            if proposal in NOT_PROPOSALS:
                continue
            if proposal not in proposals:  # appeared between the two listings
                proposals[proposal] = self._read_proposal(storage, proposal, storage.join(proposal), report)
            entry = self._read_dataset(storage, proposal, name, path, report)
            if entry is not None:
                found[entry["id"]] = entry

        try:
            with self._session() as session, session.begin():
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
            raise self._db_error(e) from e

        for err in report.errors:
            self.log.warning("Catalog scan: invalid metadata: %s", err)
        self.log.info("Catalog scan of %s: %s", storage.url, str(report).splitlines()[0])
        return report

    def index_dataset(self, storage: Storage, proposal: str, name: str) -> ScanReport:
        """Index (or re-index) one dataset, e.g. results a job has just written.

        Cheaper than :meth:`scan` (which walks the whole repository). A dataset whose
        ``dataset.json`` is missing or invalid is removed from the catalogue and reported.
        """
        now = dt.datetime.now(dt.timezone.utc)
        report = ScanReport()
        ppath = storage.join(proposal)
        values = self._read_proposal(storage, proposal, ppath, report)
        entry = self._read_dataset(storage, proposal, name, storage.dataset_path(proposal, name), report)
        did = f"{proposal}/{name}"
        try:
            with self._session() as session, session.begin():
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
            raise self._db_error(e) from e
        for err in report.errors:
            self.log.warning("Catalog: invalid metadata: %s", err)
        return report

    def _read_file(self, storage: Storage, path: str, report: ScanReport) -> bytes | None:
        try:
            return storage.read_bytes(path, MAX_METADATA_BYTES)
        except StorageError as e:
            storage.check()  # a storage-wide problem stops the scan before anything is changed
            report.errors.append(MetadataError(storage.url_of(path), "", f"cannot read the file: {e}"))
            return None

    def _read_proposal(
        self, storage: Storage, proposal: str, ppath: str, report: ScanReport
    ) -> dict[str, str | None]:
        values: dict[str, str | None] = {"title": None, "pi": None, "description": None}
        path = f"{ppath}/{PROPOSAL_FILE}"
        if not storage.exists(path):
            return values
        data = self._read_file(storage, path, report)
        if data is None:
            return values
        try:
            parsed = parse_proposal(data, path=storage.url_of(path))
        except MetadataError as e:
            report.errors.append(e)
            return values
        return {"title": parsed.title, "pi": parsed.pi, "description": parsed.description}

    def _read_dataset(
        self, storage: Storage, proposal: str, name: str, path: str, report: ScanReport
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
        data = self._read_file(storage, meta_path, report)
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

    # -----------------------------------------------------------------------------------------
    # queries

    @staticmethod
    def _access_clause(identity: Identity, today: dt.date) -> Any:
        """SQL form of :func:`dass.data.access.can_see`."""
        if identity.admin:
            return None
        clauses = [
            and_(
                Dataset.public.is_(True),
                or_(Dataset.embargo_until.is_(None), Dataset.embargo_until <= today),
            )
        ]
        principals = {g for g in identity.groups if not g.startswith(USER_PREFIX)}
        principals.add(USER_PREFIX + identity.name)
        clauses.append(
            exists().where(
                DatasetAccess.dataset_id == Dataset.id,
                DatasetAccess.group.in_(sorted(principals)),
            )
        )
        return or_(*clauses)

    def search(
        self,
        identity: Identity,
        *,
        text: str | None = None,
        proposal: str | None = None,
        instrument: str | None = None,
        technique: str | None = None,
        stack: str | None = None,
        category: str | None = None,
        today: dt.date | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[DatasetRecord], int]:
        """Datasets ``identity`` may see, filtered, ordered by id.

        Parameters
        ----------
        identity : Identity
            The user; access is filtered in SQL with the rule of :func:`~dass.data.access.can_see`.
        text : str, optional
            Words that must all occur (case-insensitively) in the title, description, keywords
            or id.
        proposal : str, optional
            Exact proposal id.
        instrument, technique : str, optional
            Case-insensitive exact match.
        stack : str, optional
            Only datasets whose ``stacks`` name this stack.
        category : str, optional
            Only datasets with an image confirmed in this category (``domain.categories``,
            exact id such as ``Nanowires``).
        today : datetime.date, optional
            Day compared with embargo dates (default: today).
        limit, offset : int
            Page of the results.

        Returns
        -------
        records : list of DatasetRecord
            The page.
        total : int
            Number of matches over all pages.
        """
        today = today or dt.date.today()
        conditions = []
        access = self._access_clause(identity, today)
        if access is not None:
            conditions.append(access)
        if proposal:
            conditions.append(Dataset.proposal == proposal)
        if instrument:
            conditions.append(func.lower(Dataset.instrument) == instrument.lower())
        if technique:
            conditions.append(func.lower(Dataset.technique) == technique.lower())
        if stack:
            needle = _like_escape(json.dumps(stack, ensure_ascii=False))
            conditions.append(cast(Dataset.stacks, Text).like(f"%{needle}%", escape="\\"))
        if category:
            conditions.append(
                exists().where(DatasetCategory.dataset_id == Dataset.id, DatasetCategory.category == category)
            )
        for word in (text or "").split():
            pattern = f"%{_like_escape(word)}%"
            conditions.append(
                or_(
                    Dataset.id.ilike(pattern, escape="\\"),
                    Dataset.title.ilike(pattern, escape="\\"),
                    func.coalesce(Dataset.description, "").ilike(pattern, escape="\\"),
                    cast(Dataset.keywords, Text).ilike(pattern, escape="\\"),
                )
            )
        limit = max(0, int(limit))
        offset = max(0, int(offset))
        try:
            with self._session() as session:
                total = session.scalar(select(func.count()).select_from(Dataset).where(*conditions)) or 0
                rows = session.scalars(
                    select(Dataset).where(*conditions).order_by(Dataset.id).limit(limit).offset(offset)
                ).all()
                records = [DatasetRecord.from_row(r) for r in rows]
        except SQLAlchemyError as e:
            raise self._db_error(e) from e
        self.log.debug(
            "Catalog search by %s (text=%r proposal=%r): %d of %d", identity.name, text, proposal, len(records), total
        )
        return records, int(total)

    def get(self, dataset_id: str) -> DatasetRecord | None:
        """The dataset ``"<proposal>/<name>"``, or ``None``; no access check (callers check)."""
        try:
            with self._session() as session:
                row = session.get(Dataset, dataset_id)
                return DatasetRecord.from_row(row) if row is not None else None
        except SQLAlchemyError as e:
            raise self._db_error(e) from e

    def visible(
        self, identity: Identity, dataset_ids: Iterable[str], today: dt.date | None = None
    ) -> dict[str, DatasetRecord]:
        """Of ``dataset_ids``, those that exist and ``identity`` may see, by id.

        Unknown and hidden ids are simply absent from the result; compare its keys with the
        ids asked for to tell the user which ones were refused.
        """
        ids = sorted(set(dataset_ids))
        if not ids:
            return {}
        today = today or dt.date.today()
        conditions = [Dataset.id.in_(ids)]
        access = self._access_clause(identity, today)
        if access is not None:
            conditions.append(access)
        try:
            with self._session() as session:
                rows = session.scalars(select(Dataset).where(*conditions)).all()
                return {r.id: DatasetRecord.from_row(r) for r in rows}
        except SQLAlchemyError as e:
            raise self._db_error(e) from e

    def proposals(self, identity: Identity | None = None, today: dt.date | None = None) -> list[dict[str, Any]]:
        """Proposals as ``{"id", "title", "pi", "description", "datasets"}`` dicts, by id.

        Parameters
        ----------
        identity : Identity, optional
            When given, only proposals the user belongs to (a group of that name) or holding a
            dataset they may see are listed, and ``datasets`` counts the visible ones. Without
            it every proposal is listed with its number of datasets.
        today : datetime.date, optional
            Day compared with embargo dates (default: today).
        """
        conditions = []
        if identity is not None:
            access = self._access_clause(identity, today or dt.date.today())
            if access is not None:
                conditions.append(access)
        try:
            with self._session() as session:
                counts = dict(
                    session.execute(
                        select(Dataset.proposal, func.count()).where(*conditions).group_by(Dataset.proposal)
                    ).all()
                )
                out = []
                for p in session.scalars(select(Proposal).order_by(Proposal.id)):
                    n = int(counts.get(p.id, 0))
                    if identity is not None and not identity.admin and not n and p.id not in identity.groups:
                        continue
                    out.append(
                        {"id": p.id, "title": p.title, "pi": p.pi, "description": p.description, "datasets": n}
                    )
                return out
        except SQLAlchemyError as e:
            raise self._db_error(e) from e

    def dispose(self) -> None:
        """Close the database connections (the catalogue can be used again afterwards)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._sessionmaker = None

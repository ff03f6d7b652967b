"""The catalogue: queries over proposals and datasets indexed from the repository, with access rules.

The catalogue is an index, rebuilt from the repository by :meth:`Catalog.scan`; the repository
(``dataset.json`` files) stays the source of truth. It lives in a SQL database (SQLite by
default, PostgreSQL in production) whose tables are defined in :mod:`dass.data.orm` and created
and upgraded by the Alembic migrations shipped in ``dass/data/migrations``.

This module holds the database plumbing and the queries (:meth:`Catalog.search`,
:meth:`~Catalog.visible`, :meth:`~Catalog.get`, :meth:`~Catalog.proposals`); reading the
repository into the tables is :mod:`dass.data.indexer`, writing a ``dataset.json`` is
:mod:`dass.data.metadata_writer`.
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

from sqlalchemy import Text, and_, cast, create_engine, exists, func, or_, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Bool, Unicode, default
from traitlets.config import LoggingConfigurable

from . import indexer
from .access import Identity
from .errors import DassDataError
from .indexer import NOT_PROPOSALS, ScanReport
from .orm import (
    MIGRATIONS_DIR,
    USER_PREFIX,
    VERSION_TABLE,
    Base,
    Dataset,
    DatasetAccess,
    DatasetCategory,
    Proposal,
    as_utc,
)
from .paths import state_dir
from .storage import Storage

__all__ = [
    "Base",
    "Proposal",
    "Dataset",
    "DatasetAccess",
    "DatasetCategory",
    "DatasetRecord",
    "ScanReport",
    "Catalog",
    "NOT_PROPOSALS",
    "USER_PREFIX",
    "VERSION_TABLE",
    "MIGRATIONS_DIR",
    "as_utc",
]


# ---------------------------------------------------------------------------------------------
# plain values handed to callers


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


# ---------------------------------------------------------------------------------------------


def _json_serializer(value: Any) -> str:
    # keep non-ASCII readable in the database so text search (LIKE) matches it
    return json.dumps(value, ensure_ascii=False)


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
    # indexing (dass.data.indexer)

    def scan(self, storage: Storage) -> ScanReport:
        """Index the repository: parse every ``dataset.json``, upsert, drop what vanished.

        See :func:`dass.data.indexer.scan`; a malformed or missing ``dataset.json`` is reported
        in :attr:`ScanReport.errors` and leaves that dataset out of the catalogue until fixed.

        Raises
        ------
        StorageError
            When the repository cannot be listed (nothing in the catalogue is changed then).
        """
        return indexer.scan(self, storage)

    def index_dataset(self, storage: Storage, proposal: str, name: str) -> ScanReport:
        """Index (or re-index) one dataset, e.g. results a job has just written.

        See :func:`dass.data.indexer.index_dataset`. Datasets whose metadata changes are
        written through :mod:`dass.data.metadata_writer`, which calls this.
        """
        return indexer.index_dataset(self, storage, proposal, name)

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

"""Every table of dass, in one SQLAlchemy metadata (the manner of JupyterHub's ``orm.py``).

The catalogue (``proposals``, ``datasets``, ``dataset_access``, ``dataset_categories``), the
jobs of the service (``jobs``), the SEM classifier's suggestions (``sem_classifications``) and
the audit log of data accesses (``audit_events``, kept by :mod:`dass.data.audit`) and what
each session or job token may reach (``access_grants``, :mod:`dass.data.grants`) share one declarative :class:`Base`, so one Alembic history (``dass/data/migrations``) sees
them all and ``tests/data/test_orm.py`` checks that models and migrations agree.

The schema is created by the migrations, never by ``Base.metadata.create_all``. Behaviour that
belongs to a package stays there: :mod:`dass.data.catalog` queries these tables,
:mod:`dass.data.indexer` fills the catalogue's, :mod:`dass.jobs.model` names job states and
:mod:`dass.sem.labels` keeps suggestions; they import their classes from here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Proposal",
    "Dataset",
    "DatasetAccess",
    "DatasetCategory",
    "Job",
    "JobSweep",
    "SemClassification",
    "AuditEvent",
    "AccessGrant",
    "USER_PREFIX",
    "VERSION_TABLE",
    "MIGRATIONS_DIR",
    "as_utc",
]

#: Alembic's version table of the dass schema (named so it can share a database with others).
VERSION_TABLE = "dass_catalog_alembic_version"
#: The Alembic environment and revisions of every table below.
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: access principals of single users are stored beside groups with this prefix (reserved in group names)
USER_PREFIX = "user:"


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime read from the database with its zone: SQLite drops it, we store UTC.

    Examples
    --------
    >>> as_utc(dt.datetime(2026, 1, 2, 3, 4)).isoformat()
    '2026-01-02T03:04:00+00:00'
    """
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _iso(value: dt.datetime | None) -> str | None:
    value = as_utc(value)
    return None if value is None else value.isoformat()


class Base(DeclarativeBase):
    """The one declarative base: ``Base.metadata`` holds every dass table."""


# ---------------------------------------------------------------------------------------------
# the catalogue (migrations 0001 and 0003): an index of the repository, rebuilt by a scan


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
# jobs of the dass service (migrations 0002, 0004); states are named in dass.jobs.model.Status


class Job(Base):
    """One headless notebook run; a restarted service finds it again here."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    notebook_source: Mapped[str] = mapped_column(Text)
    notebook_sha256: Mapped[str] = mapped_column(String(71))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    datasets: Mapped[list[str]] = mapped_column(JSON)
    stack: Mapped[str] = mapped_column(String(64))
    size: Mapped[str] = mapped_column(String(64))
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: the runner's pid (rows of versions before the executor handle; no longer written)
    pid: Mapped[int | None] = mapped_column(Integer)
    #: the executor's opaque handle of the run (``Handle.to_json()``), migration 0004
    executor_handle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: sha256 of the submitted request (canonical JSON without its idempotency key), 0004
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    workdir: Mapped[str] = mapped_column(Text)
    results_url: Mapped[str | None] = mapped_column(Text)
    derived_dataset: Mapped[str | None] = mapped_column(String(129))
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    cancelled_by: Mapped[str | None] = mapped_column(String(255))
    #: the parameter sweep the job is an element of, and its place in it (migration 0007)
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    sweep_index: Mapped[int | None] = mapped_column(Integer)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "status": self.status,
            "reason": self.reason,
            "notebook": self.notebook_source,
            "notebook_sha256": self.notebook_sha256,
            "parameters": self.parameters,
            "datasets": self.datasets,
            "stack": self.stack,
            "size": self.size,
            "timeout_seconds": self.timeout_seconds,
            "idempotency_key": self.idempotency_key,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "results_url": self.results_url,
            "derived_dataset": self.derived_dataset,
            "outputs": self.outputs,
            "sweep_id": self.sweep_id,
            "sweep_index": self.sweep_index,
        }


class JobSweep(Base):
    """A parameter sweep: one submission of a notebook over many parameter sets, whose
    elements are ordinary jobs (``Job.sweep_id``, ``Job.sweep_index``); migration 0007."""

    __tablename__ = "job_sweeps"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_job_sweeps_owner_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    notebook_source: Mapped[str] = mapped_column(Text)
    #: the request's fixed parameters, swept values (name -> list) and explicit parameter sets
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    axes: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameter_sets: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    count: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------------------------------------
# SEM classifier suggestions and confirmed labels (migration 0003); kept by dass.sem.labels


class SemClassification(Base):
    """One classified image: the suggestion, and the confirmed label once there is one."""

    __tablename__ = "sem_classifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    dataset_id: Mapped[str] = mapped_column(String(129), index=True)
    path: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(255))
    architecture: Mapped[str] = mapped_column(String(64))
    suggested: Mapped[str] = mapped_column(String(255))
    certainty: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    category: Mapped[str | None] = mapped_column(String(255))
    confirmed_by: Mapped[str | None] = mapped_column(String(255))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (datetimes as ISO strings in UTC)."""
        return {
            "id": self.id,
            "owner": self.owner,
            "dataset": self.dataset_id,
            "path": self.path,
            "file": self.filename,
            "model": self.model,
            "architecture": self.architecture,
            "suggested": self.suggested,
            "certainty": self.certainty,
            "scores": dict(self.scores or {}),
            "created": _iso(self.created_at),
            "category": self.category,
            "confirmed_by": self.confirmed_by,
            "confirmed_at": _iso(self.confirmed_at),
        }


# ---------------------------------------------------------------------------------------------
# the audit log of data accesses (migration 0005); written and read by dass.data.audit


class AuditEvent(Base):
    """One data access, allowed or denied: who, through what, which data, what, how much, when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: hub user name (``service:<name>`` for a hub service, ``anonymous`` without credentials)
    user: Mapped[str] = mapped_column(String(255), index=True)
    #: the hub's id of the token used (``a12``), when the hub said it
    token: Mapped[str | None] = mapped_column(String(64))
    #: the hub login session of the token, when it has one
    session: Mapped[str | None] = mapped_column(String(255))
    #: the job this access belongs to (submitted, run or downloaded from)
    job: Mapped[str | None] = mapped_column(String(32), index=True)
    proposal: Mapped[str | None] = mapped_column(String(64), index=True)
    dataset: Mapped[str | None] = mapped_column(String(129), index=True)
    path: Mapped[str | None] = mapped_column(Text)
    #: what was done, a dotted name (``dataset.read``, ``data.get``, ``job.submit``...)
    action: Mapped[str] = mapped_column(String(64), index=True)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    allowed: Mapped[bool] = mapped_column(Boolean, index=True)
    #: the HTTP status answered
    status: Mapped[int | None] = mapped_column(Integer)
    #: the client's address
    remote: Mapped[str | None] = mapped_column(String(255))

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (the time as an ISO string in UTC)."""
        return {
            "id": self.id,
            "time": _iso(self.time),
            "user": self.user,
            "token": self.token,
            "session": self.session,
            "job": self.job,
            "proposal": self.proposal,
            "dataset": self.dataset,
            "path": self.path,
            "action": self.action,
            "bytes": self.bytes,
            "allowed": self.allowed,
            "status": self.status,
            "remote": self.remote,
        }


# ---------------------------------------------------------------------------------------------
# what one credential may reach (migration 0006); written and read by dass.data.grants


class AccessGrant(Base):
    """The data one session token or job token may reach through the data gateway.

    A session's hub token (made by JupyterHub at spawn) may read exactly the datasets chosen at
    spawn; a job's token (made by the service) may read the job's declared inputs and write its
    own output dataset. Only the token's SHA-256 is stored.
    """

    __tablename__ = "access_grants"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: ``session`` or ``job``
    kind: Mapped[str] = mapped_column(String(16))
    #: the hub user the token belongs to
    owner: Mapped[str] = mapped_column(String(255), index=True)
    #: the session's server name (``""`` for the default server) or the job's id
    ref: Mapped[str] = mapped_column(String(255), index=True)
    #: dataset ids (``proposal/name``) that may be read
    read: Mapped[list] = mapped_column(JSON, default=list)
    #: dataset ids that may be written
    write: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)

"""The job record and its status names (those of jupyter-scheduler).

Jobs live in the service database (the catalogue's: one SQLAlchemy ``Base``, one Alembic
history, migration ``0002``), so a restarted service finds them again.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..data.catalog import Base, as_utc


class Status(str, enum.Enum):
    """Job status, named as in jupyter-scheduler."""

    CREATED = "CREATED"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"

    @property
    def finished(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.STOPPED)




def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


class Job(Base):
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
    workdir: Mapped[str] = mapped_column(Text)
    results_url: Mapped[str | None] = mapped_column(Text)
    derived_dataset: Mapped[str | None] = mapped_column(String(129))
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    cancelled_by: Mapped[str | None] = mapped_column(String(255))

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
        }

"""The job record and its status names (those of jupyter-scheduler).

Jobs live in the service database: the table class :class:`~dass.data.orm.Job` is defined with
every other table in :mod:`dass.data.orm` (one SQLAlchemy ``Base``, one Alembic history,
migrations ``0002`` and ``0004``), so a restarted service finds them again. It is importable from here too.
"""

from __future__ import annotations

import datetime as dt
import enum

from ..data.orm import Job, JobSweep, as_utc

__all__ = ["Job", "JobSweep", "Status", "as_utc", "utcnow"]


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

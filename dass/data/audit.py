"""The audit log: every data access, allowed or denied, recorded once in the dass database.

A row (:class:`~dass.data.orm.AuditEvent`) says who (hub user), through which token, login
session or job, which proposal, dataset and path, what was done (``action``), how many bytes,
whether it was allowed (and the HTTP status answered), from where and when. The dass service
writes the rows (one per access, denied attempts included: :mod:`dass.service.handlers`) in
the catalogue's database, so one Alembic history holds them (migration 0005).

:class:`AuditLog` writes (:meth:`~AuditLog.record`), reads with the visibility rule
(:meth:`~AuditLog.query`: admins everything; others the accesses to their proposals' data and
their own accesses) and forgets rows older than ``c.AuditLog.retention_days``
(:meth:`~AuditLog.purge`, run by the service every hour and by ``dass audit purge``).

Actions recorded by the service
-------------------------------
``dataset.read`` (``GET api/datasets/{p}/{d}``), ``data.ls``, ``data.info``, ``data.get``,
``data.redirect`` (the data gateway ``api/data/...``), ``job.submit`` (one row per input
dataset), ``job.output`` (a job's output or notebook downloaded), ``classify.upload``,
``classify.read`` (dataset files classified), ``label.confirm``, ``audit.read``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from .access import Identity
from .catalog import Catalog
from .errors import DassDataError
from .orm import AuditEvent

__all__ = ["AuditRecord", "AuditLog", "AUDIT_FILTERS", "proposal_of"]

#: the filters of :meth:`AuditLog.query` (and of ``GET api/audit`` / ``dass audit``)
AUDIT_FILTERS = ("user", "proposal", "dataset", "action", "job", "allowed", "since", "until")


def proposal_of(dataset: str | None) -> str | None:
    """The proposal of a dataset id ``"<proposal>/<name>"``.

    Examples
    --------
    >>> proposal_of("p-2026-001/sem-grains")
    'p-2026-001'
    >>> proposal_of(None) is None
    True
    """
    if not dataset:
        return None
    return dataset.split("/", 1)[0] or None


@dataclass
class AuditRecord:
    """One access to record; :meth:`AuditLog.record` stamps the time when none is given."""

    user: str
    action: str
    allowed: bool
    dataset: str | None = None
    path: str | None = None
    bytes: int | None = None
    job: str | None = None
    token: str | None = None
    session: str | None = None
    status: int | None = None
    remote: str | None = None
    proposal: str | None = None
    time: dt.datetime | None = None


class AuditLog(LoggingConfigurable):
    """Writes and reads the audit log in the catalogue's database.

    Parameters
    ----------
    catalog : Catalog
        Gives the database (the same one as the catalogue and the jobs).
    """

    retention_days = Integer(
        365,
        help="""Days an audit row is kept. Older rows are deleted by the dass service every
        hour and by ``dass audit purge``. ``0`` keeps every row forever.""",
    ).tag(config=True)

    def __init__(self, catalog: Catalog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.catalog = catalog

    def _db_error(self, e: SQLAlchemyError) -> DassDataError:
        return DassDataError(f"the audit log in {self.catalog.safe_url} failed: {e.__class__.__name__}: {e}")

    def record(self, records: Iterable[AuditRecord]) -> int:
        """Store accesses (all in one transaction); returns how many were stored."""
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for r in records:
            values = asdict(r)
            values["time"] = values["time"] or now
            values["proposal"] = values["proposal"] or proposal_of(r.dataset)
            rows.append(AuditEvent(**values))
        if not rows:
            return 0
        try:
            with self.catalog._session() as session, session.begin():
                session.add_all(rows)
        except SQLAlchemyError as e:
            raise self._db_error(e) from e
        return len(rows)

    @staticmethod
    def _visible(identity: Identity) -> list[Any]:
        if identity.admin:
            return []
        return [or_(AuditEvent.proposal.in_(sorted(identity.groups)), AuditEvent.user == identity.name)]

    def query(
        self,
        identity: Identity,
        *,
        user: str | None = None,
        proposal: str | None = None,
        dataset: str | None = None,
        action: str | None = None,
        job: str | None = None,
        allowed: bool | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """The rows ``identity`` may see, newest first, filtered and paged, and their total.

        Admins see every row; anyone else the rows about their proposals' data (a proposal is
        a hub group) and the rows of their own accesses.
        """
        conditions = self._visible(identity)
        for column, value in ((AuditEvent.user, user), (AuditEvent.proposal, proposal),
                              (AuditEvent.dataset, dataset), (AuditEvent.job, job),
                              (AuditEvent.allowed, allowed)):
            if value is not None:
                conditions.append(column == value)
        if action is not None:
            # "data" matches data.get, data.ls...; "data.get" only itself
            conditions.append(or_(AuditEvent.action == action, AuditEvent.action.like(action + ".%")))
        if since is not None:
            conditions.append(AuditEvent.time >= since)
        if until is not None:
            conditions.append(AuditEvent.time < until)
        try:
            with self.catalog._session() as session:
                total = session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions)) or 0
                rows = session.scalars(
                    select(AuditEvent).where(*conditions)
                    .order_by(AuditEvent.time.desc(), AuditEvent.id.desc()).limit(limit).offset(offset)
                ).all()
                return [row.to_json() for row in rows], int(total)
        except SQLAlchemyError as e:
            raise self._db_error(e) from e

    def purge(self, now: dt.datetime | None = None) -> int:
        """Delete the rows older than ``retention_days`` (none when it is 0); returns how many."""
        if self.retention_days <= 0:
            return 0
        now = now or dt.datetime.now(dt.timezone.utc)
        cutoff = now - dt.timedelta(days=self.retention_days)
        try:
            with self.catalog._session() as session, session.begin():
                result = session.execute(delete(AuditEvent).where(AuditEvent.time < cutoff))
                count = int(result.rowcount or 0)
        except SQLAlchemyError as e:
            raise self._db_error(e) from e
        if count:
            self.log.info("audit: %d rows older than %d days deleted", count, self.retention_days)
        return count

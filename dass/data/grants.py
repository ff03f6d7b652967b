"""What one session token or job token may reach through the data gateway.

A person's own API token (or their browser login) reaches what the catalogue lets them see.
The credentials handed to running code are narrower:

- a **session**'s hub token (``$JUPYTERHUB_API_TOKEN``, made by JupyterHub at spawn) reads
  exactly the datasets chosen at spawn, and writes nothing;
- a **job**'s token (``$DASS_TOKEN``, made here when the job starts, ``dassjob_…``) reads the
  job's declared inputs and writes only the job's own output dataset, until the job ends or its
  time is up, whichever comes first.

The spawner records a session's grant when the session starts and drops it when it stops; the
job manager records a job's grant when the job starts and drops it when the job ends. Only the
token's SHA-256 is stored (table ``access_grants``); the gateway
(:mod:`dass.service.gateway`) looks every request's token up here.

Examples
--------
>>> token = new_job_token()
>>> token.startswith(JOB_TOKEN_PREFIX), len(token_sha256(token))
(True, 64)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .errors import DassDataError
from .orm import AccessGrant, as_utc

__all__ = ["Grant", "Grants", "JOB_TOKEN_PREFIX", "new_job_token", "token_sha256", "SESSION", "JOB"]

#: the prefix of the tokens the service makes for jobs (hub tokens never start with it)
JOB_TOKEN_PREFIX = "dassjob_"
SESSION = "session"
JOB = "job"


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_job_token() -> str:
    """A new random job token (256 bits)."""
    return JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Grant:
    """What one token may reach."""

    kind: str
    owner: str
    ref: str
    read: frozenset[str]
    write: frozenset[str]
    expires_at: dt.datetime | None = None

    def may_read(self, dataset_id: str) -> bool:
        return dataset_id in self.read or dataset_id in self.write

    def may_write(self, dataset_id: str) -> bool:
        return dataset_id in self.write

    @property
    def label(self) -> str:
        """``session alice/`` or ``job 3f2a…``, for messages and the audit log."""
        return f"job {self.ref}" if self.kind == JOB else f"session {self.owner}/{self.ref}"


class Grants:
    """The ``access_grants`` table.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        The service database (the catalogue's engine).
    cache_seconds : float
        How long a looked-up grant is reused; a revocation reaches the gateway within it.
    """

    def __init__(self, engine: Any, cache_seconds: float = 2.0) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.cache_seconds = float(cache_seconds)
        self._cache: dict[str, tuple[float, Grant | None]] = {}

    def _error(self, e: SQLAlchemyError, doing: str) -> DassDataError:
        return DassDataError(f"the service database cannot be used for {doing}: {e.__class__.__name__}: {e}")

    def put(
        self,
        token: str,
        *,
        kind: str,
        owner: str,
        ref: str,
        read: Iterable[str],
        write: Iterable[str] = (),
        expires_at: dt.datetime | None = None,
    ) -> Grant:
        """Record (or replace) what ``token`` may reach."""
        if kind not in (SESSION, JOB):
            raise ValueError(f"kind must be {SESSION!r} or {JOB!r}, got {kind!r}")
        grant = Grant(kind, owner, ref, frozenset(read), frozenset(write), as_utc(expires_at))
        row = AccessGrant(
            token_sha256=token_sha256(token),
            kind=kind,
            owner=owner,
            ref=ref,
            read=sorted(grant.read),
            write=sorted(grant.write),
            created_at=dt.datetime.now(dt.timezone.utc),
            expires_at=expires_at,
        )
        try:
            with self._sessions() as db, db.begin():
                db.merge(row)
        except SQLAlchemyError as e:
            raise self._error(e, "recording a token's grant") from e
        self._cache.pop(row.token_sha256, None)
        return grant

    def get(self, token: str, now: dt.datetime | None = None) -> Grant | None:
        """The grant of ``token``; None when it has none (a person's own token) or it expired."""
        key = token_sha256(token)
        clock = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > clock:
            grant = cached[1]
        else:
            try:
                with self._sessions() as db:
                    row = db.get(AccessGrant, key)
            except SQLAlchemyError as e:
                raise self._error(e, "looking up a token") from e
            grant = None if row is None else Grant(
                row.kind, row.owner, row.ref, frozenset(row.read or ()), frozenset(row.write or ()),
                as_utc(row.expires_at),
            )
            if self.cache_seconds > 0:
                if len(self._cache) > 10_000:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > clock}
                self._cache[key] = (clock + self.cache_seconds, grant)
        now = now or dt.datetime.now(dt.timezone.utc)
        if grant is not None and grant.expires_at is not None and grant.expires_at <= now:
            return Grant(grant.kind, grant.owner, grant.ref, frozenset(), frozenset(), grant.expires_at)
        return grant

    def revoke(self, *, kind: str, ref: str, owner: str | None = None) -> int:
        """Drop the grants of one session (``ref`` = server name, with ``owner``) or one job."""
        stmt = delete(AccessGrant).where(AccessGrant.kind == kind, AccessGrant.ref == ref)
        if owner is not None:
            stmt = stmt.where(AccessGrant.owner == owner)
        try:
            with self._sessions() as db, db.begin():
                n = db.execute(stmt).rowcount or 0
        except SQLAlchemyError as e:
            raise self._error(e, "revoking a token's grant") from e
        self._cache.clear()
        return n

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Drop grants whose time is up."""
        now = now or dt.datetime.now(dt.timezone.utc)
        try:
            with self._sessions() as db, db.begin():
                n = db.execute(delete(AccessGrant).where(AccessGrant.expires_at <= now)).rowcount or 0
        except SQLAlchemyError as e:
            raise self._error(e, "purging expired grants") from e
        self._cache.clear()
        return n

    def of(self, kind: str, ref: str) -> list[str]:
        """SHA-256s of the grants of one session or job (for tests and admin tools)."""
        with self._sessions() as db:
            return list(db.scalars(select(AccessGrant.token_sha256).where(AccessGrant.kind == kind, AccessGrant.ref == ref)))

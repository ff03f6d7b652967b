"""The audit log through the service: ``GET api/audit`` and the ``audit`` page.

Admins see every row; anyone else the accesses to their proposals' data and their own
accesses (:meth:`dass.data.audit.AuditLog.query`). Reading the log is not itself a data access
and leaves no row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from tornado import web

from ..data.audit import AUDIT_FILTERS, AuditLog
from .handlers import ApiError, BaseHandler

__all__ = ["default_handlers", "parse_time"]

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
PAGE_LIMIT = 200


def parse_time(name: str, raw: str) -> dt.datetime:
    """An ISO 8601 date or time from a query parameter, in UTC (naive means UTC).

    Examples
    --------
    >>> parse_time("since", "2026-12-01").isoformat()
    '2026-12-01T00:00:00+00:00'
    """
    try:
        value = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be an ISO 8601 date or time like "
                            f"2026-12-01 or 2026-12-01T08:00:00Z, got {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


class AuditBase(BaseHandler):
    @property
    def audit_log(self) -> AuditLog:
        return self.settings["audit_log"]

    def filters(self, args: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in AUDIT_FILTERS:
            raw = (args.get(name) or "").strip()
            if not raw:
                continue
            if name == "allowed":
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ApiError(400, f"query parameter allowed must be true or false, got {raw!r}")
                out[name] = raw.lower() in ("true", "1", "yes")
            elif name in ("since", "until"):
                out[name] = parse_time(name, raw)
            else:
                out[name] = raw
        return out


class AuditHandler(AuditBase):
    """``GET api/audit``: the audit rows the caller may see, newest first, filtered and paged."""

    def get(self) -> None:
        args = self.query_args((*AUDIT_FILTERS, "limit", "offset"))
        limit = self.int_arg(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = self.int_arg(args, "offset", 0, 0)
        events, total = self.audit_log.query(self.identity, limit=limit, offset=offset, **self.filters(args))
        self.write_json({"events": events, "total": total, "limit": limit, "offset": offset})


class AuditPage(AuditBase):
    """``GET audit``: the same rows as a table with a filter form."""

    def get(self) -> None:
        args = {name: self.get_query_argument(name, "") for name in AUDIT_FILTERS}
        offset = self.int_arg({"offset": self.get_query_argument("offset", "")}, "offset", 0, 0)
        events, total = self.audit_log.query(self.identity, limit=PAGE_LIMIT, offset=offset, **self.filters(args))
        query = {k: v for k, v in args.items() if v}
        self.render_template(
            "audit.html",
            events=events,
            total=total,
            offset=offset,
            limit=PAGE_LIMIT,
            args=args,
            next_url=("audit?" + urlencode({**query, "offset": offset + PAGE_LIMIT}))
            if offset + PAGE_LIMIT < total else None,
            api_url="api/audit" + ("?" + urlencode(query) if query else ""),
        )


default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    ("api/audit", AuditHandler),
    ("audit", AuditPage),
]

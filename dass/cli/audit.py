"""``dass audit …``: the audit log of data accesses.

``dass audit list`` reads ``GET api/audit`` of the dass service with the caller's hub token, so
the service's rule applies (admins: every row; others: their proposals' data and their own
accesses). ``dass audit purge`` is the operator's: it deletes, in the database named by the
configuration file, the rows older than ``c.AuditLog.retention_days``.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import CLIError
from .jobs import service_url

FILTERS = ("user", "proposal", "dataset", "action", "job", "since", "until")


def audit_rows(args) -> tuple[list[dict], int]:
    """The rows the service answers for the command's filters (``--limit`` of them)."""
    from ..client import ServiceClient

    params: dict[str, Any] = {name: getattr(args, name) for name in FILTERS if getattr(args, name)}
    if args.denied:
        params["allowed"] = "false"
    elif args.allowed:
        params["allowed"] = "true"
    client = ServiceClient(url=service_url(args), token=args.token)
    events: list[dict] = []
    total = 0
    offset = args.offset
    while len(events) < args.limit:
        page = client._request("GET", "api/audit", params={**params, "offset": offset,
                                                           "limit": min(500, args.limit - len(events))}).json()
        total = page["total"]
        events += page["events"]
        offset += len(page["events"])
        if not page["events"] or offset >= total:
            break
    return events, total


def _cmd_list(args) -> int:
    events, total = audit_rows(args)
    if args.json:
        print(json.dumps({"events": events, "total": total}, indent=1))
        return 0
    for e in events:
        target = e["dataset"] or (f"job {e['job']}" if e["job"] else "-")
        if e["path"]:
            target += f" {e['path']}"
        size = "" if e["bytes"] is None else f" {e['bytes']}B"
        result = "allowed" if e["allowed"] else "DENIED"
        print(f"{e['time']}  {e['user']:<12} {e['action']:<15} {result:<7} {e['status'] or ''} {target}{size}")
    print(f"({len(events)} of {total} rows)")
    return 0


def _cmd_purge(args) -> int:
    from ..config import load_config
    from ..data.audit import AuditLog
    from ..data.catalog import Catalog

    config = load_config(args.config)
    catalog = Catalog(config=config)
    log = AuditLog(catalog, config=config)
    if args.retention_days is not None:
        if args.retention_days < 0:
            raise CLIError("--retention-days must be 0 (keep all) or more")
        log.retention_days = args.retention_days
    count = log.purge()
    catalog.dispose()
    print(f"{count} audit rows older than {log.retention_days} days deleted" if log.retention_days
          else "retention is 0 (keep every row): nothing deleted")
    return 0


def register(sub: Any) -> None:
    """Add ``audit list|purge``."""
    audit = sub.add_parser("audit", help="the audit log of data accesses")
    asub = audit.add_subparsers(dest="sub", required=True)
    p = asub.add_parser("list", help="audit rows you may see, newest first (through the dass service)")
    p.add_argument("--url", help="dass service URL (default: the platform of the config file; without "
                                 "one $DASS_URL, else http://127.0.0.1:8000/services/dass/)")
    p.add_argument("--token", help="hub API token (default $DASS_TOKEN or $JUPYTERHUB_API_TOKEN)")
    for name in FILTERS:
        p.add_argument(f"--{name}", help={
            "action": "an action (data.get) or a family (data, job)",
            "since": "ISO date or time (UTC), e.g. 2026-12-01",
            "until": "ISO date or time (UTC): rows before it",
        }.get(name, f"only rows of this {name}"))
    which = p.add_mutually_exclusive_group()
    which.add_argument("--denied", action="store_true", help="only denied attempts")
    which.add_argument("--allowed", action="store_true", help="only allowed accesses")
    p.add_argument("--limit", type=int, default=100, help="the most rows to show (default 100)")
    p.add_argument("--offset", type=int, default=0, help="rows to skip")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_list)
    p = asub.add_parser("purge", help="delete rows older than c.AuditLog.retention_days (in the database)")
    p.add_argument("--retention-days", type=int, help="override c.AuditLog.retention_days for this run")
    p.set_defaults(func=_cmd_purge)

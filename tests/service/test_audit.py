"""The audit log: each access through the service leaves exactly the expected rows, denied
attempts included, and ``GET api/audit`` / the page show each caller only what they may see.

Users (tests/service/service_support.py): alice (p-2026-001), bob (p-2026-002), carol (admin).
"""

from __future__ import annotations

import datetime as dt

import pytest

from dass.data.access import Identity
from dass.data.audit import AuditLog, AuditRecord
from tests.service.service_support import start_idle_jobs_service

ADMIN = Identity("audit-test", frozenset(), admin=True)
ALICE_DS = "p-2026-001/sem-grains"
BOB_DS = "p-2026-002/stm-movie"
SEM_NOTEBOOK = "sem/service/image_summary.ipynb"


@pytest.fixture(scope="module")
def service(loop_thread, hub, tmp_path_factory):
    """A service of its own whose job queue never starts a job (no runner left behind)."""
    svc = start_idle_jobs_service(loop_thread, hub.api_url, tmp_path_factory.mktemp("audit"))
    yield svc
    svc.stop()


def last_id(service) -> int:
    events, _ = service.app.audit_log.query(ADMIN, limit=1)
    return events[0]["id"] if events else 0


def rows_after(service, mark: int) -> list[dict]:
    """The rows written since ``mark``, oldest first, without the id, time and address."""
    events, _ = service.app.audit_log.query(ADMIN, limit=500)
    out = []
    for e in reversed(events):
        if e["id"] > mark:
            assert e["time"] and e["remote"] == "127.0.0.1"
            out.append({k: v for k, v in e.items() if k not in ("id", "time", "remote")})
    return out


def row(user, action, allowed, status, dataset=None, token="auto", **kw):
    proposal = dataset.split("/")[0] if dataset else kw.pop("proposal", None)
    return {"user": user, "token": token, "session": None, "job": None, "proposal": proposal,
            "dataset": dataset, "path": None, "action": action, "bytes": None, "allowed": allowed,
            "status": status, **kw}


def token_id(service, token: str) -> str:
    """The hub's id of a token, as the service was told it (from a row it wrote)."""
    mark = last_id(service)
    assert service.get("api/datasets/p-2025-009/public-tips", token).status_code == 200
    return rows_after(service, mark)[-1]["token"]


@pytest.fixture(scope="module")
def ids(service) -> dict[str, str]:
    return {name: token_id(service, f"{name}-token") for name in ("alice", "bob", "carol")}


def expect(ids, *rows):
    """Expected rows with ``token="auto"`` replaced by the user's token id."""
    return [dict(r, token=ids[r["user"]]) if r["token"] == "auto" else r for r in rows]


def test_dataset_reads_allowed_denied_and_anonymous(service, ids):
    mark = last_id(service)
    assert service.get(f"api/datasets/{ALICE_DS}", "alice-token").status_code == 200
    assert service.get(f"api/datasets/{ALICE_DS}", "bob-token").status_code == 404
    assert service.get(f"api/datasets/{ALICE_DS}").status_code == 401
    assert service.get(f"api/datasets/{ALICE_DS}", "carol-token").status_code == 200
    assert service.get("api/datasets/p-2026-003/embargoed", "bob-token").status_code == 404
    assert rows_after(service, mark) == expect(
        ids,
        row("alice", "dataset.read", True, 200, ALICE_DS),
        row("bob", "dataset.read", False, 404, ALICE_DS),
        row("anonymous", "dataset.read", False, 401, ALICE_DS, token=None),
        row("carol", "dataset.read", True, 200, ALICE_DS),
        row("bob", "dataset.read", False, 404, "p-2026-003/embargoed"),
    )


def test_the_dataset_page_records_like_the_api(service, ids):
    mark = last_id(service)
    assert service.get(f"datasets/{ALICE_DS}", "alice-token").status_code == 200
    assert service.get(f"datasets/{ALICE_DS}", "bob-token").status_code == 404
    assert service.get(f"datasets/{ALICE_DS}").status_code == 302  # a browser sent to the login
    assert rows_after(service, mark) == expect(
        ids,
        row("alice", "dataset.read", True, 200, ALICE_DS),
        row("bob", "dataset.read", False, 404, ALICE_DS),
        row("anonymous", "dataset.read", False, 302, ALICE_DS, token=None),
    )


def test_searches_and_reading_the_log_leave_no_rows(service, ids):
    mark = last_id(service)
    assert service.get("api/datasets", "alice-token").status_code == 200
    assert service.get("api/audit", "alice-token").status_code == 200
    assert service.get("audit", "alice-token").status_code == 200
    assert rows_after(service, mark) == []


def test_job_submissions_record_each_input_and_denials(service, ids):
    mark = last_id(service)
    r = service.request("POST", "api/jobs", "alice-token",
                        json={"notebook": SEM_NOTEBOOK, "parameters": {"input_dataset": ALICE_DS}})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    # bob names alice's dataset: refused, recorded against her dataset
    r = service.request("POST", "api/jobs", "bob-token",
                        json={"notebook": SEM_NOTEBOOK, "parameters": {"input_dataset": BOB_DS},
                              "datasets": [ALICE_DS]})
    assert r.status_code in (403, 404), r.text
    # bob downloads alice's job's output: refused
    assert service.get(f"api/jobs/{job}/outputs/summary.csv", "bob-token").status_code == 404
    assert service.get(f"api/jobs/{job}/notebook", "bob-token").status_code == 404
    assert rows_after(service, mark) == expect(
        ids,
        row("alice", "job.submit", True, 201, ALICE_DS, job=job),
        row("bob", "job.submit", False, r.status_code, ALICE_DS),
        row("bob", "job.output", False, 404, job=job, path="summary.csv", bytes=0),
        row("bob", "job.output", False, 404, job=job, path="executed.html"),
    )


def test_the_job_form_records_like_the_api(service, ids):
    form = {"source": "service", "notebook": SEM_NOTEBOOK, "param.input_dataset": ALICE_DS,
            "param.max_images": "2", "param.thumbnail_px": "64", "stack": "", "size": "", "timeout": ""}
    mark = last_id(service)
    r = service.request("POST", "jobs", "alice-token", data=form)
    assert r.status_code == 303, r.text
    job = r.headers["Location"].rsplit("/", 1)[-1]
    r = service.request("POST", "jobs", "bob-token", data=dict(form, datasets=ALICE_DS))
    assert r.status_code in (403, 404)
    assert rows_after(service, mark) == expect(
        ids,
        row("alice", "job.submit", True, 303, ALICE_DS, job=job),
        row("bob", "job.submit", False, r.status_code, ALICE_DS),
    )
    # looking at the jobs page is not a data access
    mark = last_id(service)
    assert service.get("jobs", "alice-token").status_code == 200
    assert rows_after(service, mark) == []


def test_bad_requests_to_audited_routes_are_recorded_as_denied(service, ids):
    mark = last_id(service)
    assert service.get(f"api/datasets/{ALICE_DS}?x=1", "alice-token").status_code == 400
    r = service.request("POST", "api/jobs", "alice-token", data=b"{not json")
    assert r.status_code == 400
    assert rows_after(service, mark) == expect(
        ids,
        row("alice", "dataset.read", False, 400, ALICE_DS),
        row("alice", "job.submit", False, 400),
    )


def test_members_see_their_proposals_rows_and_their_own_admins_all(service, ids):
    mark = last_id(service)
    service.get(f"api/datasets/{ALICE_DS}", "alice-token")
    service.get(f"api/datasets/{BOB_DS}", "bob-token")
    service.get(f"api/datasets/{ALICE_DS}", "bob-token")  # denied, about alice's proposal
    service.get("api/datasets/p-2025-009/public-tips", "bob-token")  # bob's own, no proposal of alice

    def seen(token: str) -> list[tuple]:
        r = service.get("api/audit", token, params={"limit": 500})
        assert r.status_code == 200, r.text
        return [(e["user"], e["dataset"], e["allowed"]) for e in reversed(r.json()["events"]) if e["id"] > mark]

    assert seen("alice-token") == [("alice", ALICE_DS, True), ("bob", ALICE_DS, False)]
    assert seen("bob-token") == [("bob", BOB_DS, True), ("bob", ALICE_DS, False),
                                 ("bob", "p-2025-009/public-tips", True)]
    assert seen("carol-token") == [("alice", ALICE_DS, True), ("bob", BOB_DS, True), ("bob", ALICE_DS, False),
                                   ("bob", "p-2025-009/public-tips", True)]
    assert seen("dave-token") == []  # no proposal, no access of his own


def test_filters_and_paging(service, ids):
    service.get(f"api/datasets/{ALICE_DS}", "bob-token")
    r = service.get("api/audit", "carol-token", params={"user": "bob", "allowed": "false", "action": "dataset"})
    events = r.json()["events"]
    assert events and all(e["user"] == "bob" and not e["allowed"] and e["action"] == "dataset.read" for e in events)
    total = r.json()["total"]
    assert total == len(events)
    first = service.get("api/audit", "carol-token", params={"user": "bob", "allowed": "false", "limit": 1}).json()
    second = service.get("api/audit", "carol-token",
                         params={"user": "bob", "allowed": "false", "limit": 1, "offset": 1}).json()
    assert first["total"] == second["total"] >= 2
    assert first["events"][0]["id"] > second["events"][0]["id"]  # newest first
    r = service.get("api/audit", "carol-token", params={"dataset": ALICE_DS, "proposal": "p-2026-001"})
    assert {e["dataset"] for e in r.json()["events"]} == {ALICE_DS}
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date().isoformat()
    assert service.get("api/audit", "carol-token", params={"since": future}).json()["total"] == 0
    assert service.get("api/audit", "carol-token", params={"until": future}).json()["total"] > 0


@pytest.mark.parametrize("params, words", [
    ({"allowed": "maybe"}, "allowed must be true or false"),
    ({"since": "yesterday"}, "since must be an ISO 8601 date"),
    ({"limit": "0"}, "limit must be an integer between 1 and 500"),
    ({"colour": "red"}, "unknown query parameter(s) colour"),
])
def test_bad_filters_answer_400_naming_the_fix(service, params, words):
    r = service.get("api/audit", "alice-token", params=params)
    assert r.status_code == 400
    assert r.json() == {"status": 400, "message": r.json()["message"]}
    assert words in r.json()["message"]


def test_anonymous_callers_cannot_read_the_log(service):
    r = service.get("api/audit")
    assert r.status_code == 401 and "authentication required" in r.json()["message"]


def test_the_page_lists_what_the_api_does(service, ids):
    service.get(f"api/datasets/{ALICE_DS}", "bob-token")
    html = service.get("audit", "alice-token", params={"user": "bob"}).text
    assert 'id="audit-table"' in html and "denied (404)" in html and ALICE_DS in html
    assert BOB_DS not in html.split('id="audit-table"')[1]  # bob's own proposal is not alice's
    assert service.get("audit", "alice-token", params={"allowed": "maybe"}).status_code == 400


def test_every_audit_route_is_documented(service):
    doc = service.get("api/openapi.json").json()
    assert "/api/audit" in doc["paths"]
    get = doc["paths"]["/api/audit"]["get"]
    assert {p["name"] for p in get["parameters"]} >= {"user", "proposal", "dataset", "action", "job",
                                                      "allowed", "since", "until", "limit", "offset"}


# -- retention ---------------------------------------------------------------------------------


def test_purge_deletes_rows_older_than_the_retention_only(tmp_path):
    from dass.data.catalog import Catalog

    catalog = Catalog(db_url=f"sqlite:///{tmp_path}/audit.sqlite")
    catalog.upgrade()
    log = AuditLog(catalog, retention_days=30)
    now = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)
    log.record([
        AuditRecord(user="alice", action="data.get", allowed=True, dataset=ALICE_DS, time=now - dt.timedelta(days=31)),
        AuditRecord(user="alice", action="data.get", allowed=True, dataset=ALICE_DS, time=now - dt.timedelta(days=29)),
        AuditRecord(user="bob", action="data.get", allowed=False, dataset=ALICE_DS, time=now),
    ])
    assert log.purge(now=now) == 1
    events, total = log.query(ADMIN)
    assert total == 2 and [e["user"] for e in events] == ["bob", "alice"]
    assert events[1]["proposal"] == "p-2026-001"  # from the dataset id
    assert AuditLog(catalog, retention_days=0).purge(now=now + dt.timedelta(days=999)) == 0
    catalog.dispose()


# -- dass audit ----------------------------------------------------------------------------------


def dass_audit(*args: str, config: str | None = None) -> "subprocess.CompletedProcess":
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    for name in ("DASS_CONFIG", "DASS_URL", "DASS_SERVICE_URL", "DASS_TOKEN", "JUPYTERHUB_API_TOKEN"):
        env.pop(name, None)
    head = ["--config", config] if config else []
    return subprocess.run([sys.executable, "-m", "dass", *head, "audit", *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=root)


def test_dass_audit_list_filters_through_the_service(service, ids):
    import json

    service.get(f"api/datasets/{ALICE_DS}", "bob-token")
    r = dass_audit("list", "--url", service.url, "--token", "alice-token", "--user", "bob", "--denied",
                   "--limit", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 1 <= len(out["events"]) <= 3 and out["total"] >= len(out["events"])
    assert all(e["user"] == "bob" and not e["allowed"] and e["proposal"] == "p-2026-001" for e in out["events"])
    r = dass_audit("list", "--url", service.url, "--token", "alice-token", "--action", "dataset.read", "--limit", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("(2 of ")
    assert "dataset.read" in lines[0] and "p-2026-001/" in lines[0]
    # the service's refusal, in one line
    r = dass_audit("list", "--url", service.url, "--token", "alice-token", "--since", "yesterday")
    assert r.returncode == 2
    assert r.stderr.startswith("dass: error: query parameter since must be an ISO 8601 date") and "(HTTP 400)" in r.stderr
    r = dass_audit("list", "--url", service.url, "--token", "nobody-token")
    assert r.returncode == 2 and ("HTTP 403" in r.stderr or "HTTP 401" in r.stderr)


def test_dass_audit_purge_uses_the_configured_retention(service, tmp_path):
    db = f"sqlite:///{tmp_path}/purge.sqlite"
    from dass.data.catalog import Catalog

    catalog = Catalog(db_url=db)
    catalog.upgrade()
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    AuditLog(catalog).record([AuditRecord(user="alice", action="data.get", allowed=True, time=old),
                              AuditRecord(user="alice", action="data.get", allowed=True)])
    catalog.dispose()
    cfg = tmp_path / "dass_config.py"
    cfg.write_text(f"c.Catalog.db_url = {db!r}\nc.AuditLog.retention_days = 30\n")
    r = dass_audit("purge", config=str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "0 audit rows older than 30 days deleted\n"
    r = dass_audit("purge", "--retention-days", "7", config=str(cfg))
    assert r.stdout == "1 audit rows older than 7 days deleted\n"
    r = dass_audit("purge", "--retention-days", "-1", config=str(cfg))
    assert r.returncode == 2 and "--retention-days must be 0" in r.stderr

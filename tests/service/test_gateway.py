"""The data gateway (``api/data/…``) and ``dass://`` on it, with two users, on file:// and s3://.

alice (proposal p-2026-001) and bob (p-2026-002) read through a real service with their own
tokens; the repository is a real folder or a real S3 endpoint (moto on loopback). Each access
leaves its audit row, denied ones included.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
import json
import os
import time
from urllib.parse import parse_qs, urlsplit

import fsspec
import pytest
import requests

from dass.data.access import Identity
from dass.data.catalog import Catalog
from dass.data.dassfs import DassFileSystem
from dass.data.storage import Storage
from tests.service.service_support import make_repository, start_service
from tests.support import MotoServer

ALICE_DS = "p-2026-001/sem-grains"
BOB_DS = "p-2026-002/stm-movie"
PUBLIC_DS = "p-2025-009/public-tips"
BIG = bytes(range(256)) * 1200 + b"tail"  # 307,204 bytes, not a multiple of any block size
ADMIN = Identity("gateway-test", frozenset(), admin=True)


@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    yield server
    server.stop()


def build_repository(tmp, backend: str, moto) -> dict[str, str]:
    """The service tests' repository plus ``raw/big.bin`` in alice's dataset, on ``backend``."""
    urls = make_repository(tmp)
    root = tmp / "repository"
    (root / ALICE_DS / "raw").mkdir()
    (root / ALICE_DS / "raw" / "big.bin").write_bytes(BIG)
    (root / BOB_DS / "frame.bin").write_bytes(b"bob's frame")
    if backend == "file":
        options: dict = {}
    else:
        bucket = f"gw-{os.getpid()}-{abs(hash(str(tmp))) % 10**6}"
        moto.make_bucket(bucket)
        options = dict(moto.options)
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
        fs.put(str(root) + "/", f"{bucket}/repository", recursive=True)
        urls["repo_url"] = f"s3://{bucket}/repository"
    urls["db_url"] = f"sqlite:///{tmp / 'gateway.sqlite'}"
    catalog = Catalog(db_url=urls["db_url"])
    report = catalog.scan(Storage(url=urls["repo_url"], options=options))
    catalog.dispose()
    assert not report.errors, str(report)
    return {**urls, "options": options}


@pytest.fixture(scope="module", params=["file", "s3"])
def gw(request, loop_thread, hub, tmp_path_factory, moto):
    tmp = tmp_path_factory.mktemp(f"gw-{request.param}")
    repo = build_repository(tmp / "data", request.param, moto)
    (tmp / "service").mkdir()
    extra = f"c.Storage.options = {repo['options']!r}"
    svc = start_service(loop_thread, tmp / "service", hub.api_url, db_url=repo["db_url"], repo_url=repo["repo_url"],
                        extra_config=extra)
    svc.backend = request.param
    yield svc
    svc.stop()


def dfs(service, token: str) -> DassFileSystem:
    return DassFileSystem(url=service.url, token=token, block_size=64 * 1024, skip_instance_cache=True)


def last_id(service) -> int:
    events, _ = service.app.audit_log.query(ADMIN, limit=1)
    return events[0]["id"] if events else 0


def audit_after(service, mark: int) -> list[tuple]:
    events, _ = service.app.audit_log.query(ADMIN, limit=500)
    return [(e["user"], e["action"], e["dataset"], e["path"], e["allowed"], e["status"], e["bytes"])
            for e in reversed(events) if e["id"] > mark]


# -- reading through dass:// --------------------------------------------------------------------


def test_alice_lists_reads_and_ranges_her_dataset(gw):
    fs = dfs(gw, "alice-token")
    names = fs.ls(ALICE_DS, detail=False)
    assert names == [f"{ALICE_DS}/dataset.json", f"{ALICE_DS}/image.tif", f"{ALICE_DS}/raw"]
    assert fs.ls(f"dass://{ALICE_DS}/raw") == [{"name": f"{ALICE_DS}/raw/big.bin", "size": len(BIG), "type": "file"}]
    assert fs.info(f"{ALICE_DS}/raw") == {"name": f"{ALICE_DS}/raw", "size": 0, "type": "directory"}
    assert fs.info(f"{ALICE_DS}/raw/big.bin")["size"] == len(BIG)
    assert fs.cat(f"{ALICE_DS}/image.tif") == b"II*\x00fake"
    assert fs.cat_file(f"{ALICE_DS}/raw/big.bin", start=1000, end=70_000) == BIG[1000:70_000]
    assert fs.cat_file(f"{ALICE_DS}/raw/big.bin", start=-4) == b"tail"
    assert fs.cat_file(f"{ALICE_DS}/raw/big.bin", start=len(BIG) + 5) == b""
    with fs.open(f"{ALICE_DS}/raw/big.bin") as f:  # 64 KiB blocks: several ranged GETs
        f.seek(200_000)
        assert f.read(50_000) == BIG[200_000:250_000]
        f.seek(0)
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(BIG).digest()
    assert fs.exists(f"{ALICE_DS}/raw/big.bin") and not fs.exists(f"{ALICE_DS}/raw/none.bin")
    assert fs.find(ALICE_DS) == [f"{ALICE_DS}/dataset.json", f"{ALICE_DS}/image.tif", f"{ALICE_DS}/raw/big.bin"]
    # the top levels: what the caller may see
    assert fs.ls("", detail=False) == ["p-2025-009", "p-2026-001"]
    assert fs.ls("p-2026-001", detail=False) == ["p-2026-001/kmap-strain", ALICE_DS]


def test_fsspec_open_with_the_session_environment(gw, monkeypatch):
    monkeypatch.setenv("DASS_SERVICE_URL", gw.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "alice-token")
    with fsspec.open(f"dass://{ALICE_DS}/raw/big.bin", skip_instance_cache=True) as f:
        assert f.read() == BIG
    assert fsspec.get_filesystem_class("dass") is DassFileSystem
    doc = json.loads(fsspec.open(f"dass://{ALICE_DS}/dataset.json", skip_instance_cache=True).open().read())
    assert doc["title"] == "Grain boundaries in annealed copper"


def test_bob_cannot_reach_alices_data_and_reads_his_own(gw):
    bob = dfs(gw, "bob-token")
    for call in (lambda: bob.ls(ALICE_DS), lambda: bob.info(f"{ALICE_DS}/image.tif"),
                 lambda: bob.cat(f"{ALICE_DS}/image.tif"), lambda: bob.open(f"{ALICE_DS}/raw/big.bin").read(),
                 lambda: bob.cat_file(f"{ALICE_DS}/raw/big.bin", start=0, end=10), lambda: bob.ls("p-2026-001")):
        with pytest.raises(FileNotFoundError, match="not found|no proposal"):
            call()
    # a missing dataset and a hidden one answer the same
    with pytest.raises(FileNotFoundError) as missing:
        bob.cat("p-2026-001/no-such-dataset/image.tif")
    with pytest.raises(FileNotFoundError) as hidden:
        bob.cat(f"{ALICE_DS}/image.tif")
    assert str(missing.value).split(": ", 1)[1].replace("no-such-dataset", "X") == \
        str(hidden.value).split(": ", 1)[1].replace("sem-grains", "X")
    assert bob.cat(f"{BOB_DS}/frame.bin") == b"bob's frame"
    assert bob.cat(f"{PUBLIC_DS}/image.tif") == b"II*\x00fake"  # public, embargo over
    with pytest.raises(FileNotFoundError):
        bob.cat("p-2026-003/embargoed/image.tif")
    assert "p-2026-001" not in bob.ls("", detail=False)


def test_the_datasets_are_read_only(gw):
    fs = dfs(gw, "alice-token")
    for call in (lambda: fs.open(f"{ALICE_DS}/new.txt", "wb").close(), lambda: fs.pipe_file(f"{ALICE_DS}/x", b"1")):
        with pytest.raises(PermissionError, match="is read-only for you: you may write only into your own upload"):
            call()
    with pytest.raises(PermissionError, match="never removes or moves"):
        fs.rm(f"{ALICE_DS}/image.tif")
    r = requests.put(gw.url + f"api/data/{ALICE_DS}/new.txt", data=b"x", timeout=10,
                     headers={"Authorization": "token alice-token"})
    assert r.status_code == 403 and r.json()["status"] == 403
    r = requests.put(gw.url + f"api/data/{BOB_DS}/new.txt", data=b"x", timeout=10,
                     headers={"Authorization": "token alice-token"})
    assert r.status_code == 404  # cannot see it: the same answer as a missing dataset
    assert not gw.app.storage.fs.exists(gw.app.storage.dataset_path(*ALICE_DS.split("/")) + "/new.txt")


# -- what a session's and a job's token may reach (dass.data.grants) -----------------------------


def wait_until(check, seconds: float = 20.0) -> None:
    """Poll ``check`` until it holds (bounded; the grant cache is 2 s)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_a_session_token_reads_exactly_the_datasets_chosen_at_spawn(gw, hub):
    token = f"alice-session-{gw.backend}"
    hub.tokens[token] = "alice"
    gw.app.grants.put(token, kind="session", owner="alice", ref="", read=[ALICE_DS])
    mark = last_id(gw)
    session = dfs(gw, token)
    assert session.cat(f"{ALICE_DS}/image.tif") == b"II*\x00fake"
    with pytest.raises(FileNotFoundError):  # alice may see it, but it was not chosen at spawn
        session.cat("p-2026-001/kmap-strain/dataset.json")
    with pytest.raises(FileNotFoundError):
        session.cat(f"{PUBLIC_DS}/image.tif")
    with pytest.raises(PermissionError, match="the datasets of a session are read-only"):
        session.pipe_file(f"{ALICE_DS}/mine.txt", b"no")
    assert dfs(gw, "alice-token").cat("p-2026-001/kmap-strain/dataset.json")  # her own token: the catalogue's rule
    rows = audit_after(gw, mark)
    assert [(r[1], r[2], r[4]) for r in rows[:4]] == [
        ("data.get", ALICE_DS, True), ("data.get", "p-2026-001/kmap-strain", False),
        ("data.get", PUBLIC_DS, False), ("data.put", ALICE_DS, False)]
    events, _ = gw.app.audit_log.query(ADMIN, limit=10)
    assert any(e["session"] == "server alice/" for e in events)
    gw.app.grants.revoke(kind="session", ref="", owner="alice")
    wait_until(lambda: dfs(gw, token).exists("p-2026-001/kmap-strain/dataset.json"))  # back to her own rule


def test_a_job_token_reads_its_inputs_and_writes_only_its_results(gw):
    from dass.data.grants import new_job_token

    job = f"gwjob{gw.backend}"
    token = new_job_token()
    results = f"results/job-{job}"
    gw.app.grants.put(token, kind="job", owner="alice", ref=job, read=[ALICE_DS], write=[results])
    fs = dfs(gw, token)
    assert fs.cat(f"{ALICE_DS}/image.tif") == b"II*\x00fake"
    with pytest.raises(FileNotFoundError):
        fs.cat("p-2026-001/kmap-strain/dataset.json")  # alice's, but not an input
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{BOB_DS}/frame.bin")
    with pytest.raises(PermissionError, match="its inputs, which are read-only"):
        fs.pipe_file(f"{ALICE_DS}/out.txt", b"no")
    with pytest.raises(FileNotFoundError):
        fs.pipe_file("results/job-someone-else/out.txt", b"no")
    fs.pipe_file(f"{results}/output/a.txt", b"result")
    with fs.open(f"{results}/output/big.bin", "wb") as f:  # a streamed upload
        f.write(BIG)
    assert fs.cat(f"{results}/output/big.bin") == BIG
    storage = gw.app.storage
    assert storage.fs.cat_file(storage.join(results, "output/a.txt")) == b"result"
    with pytest.raises(ValueError, match="dataset.json of .* is not valid"):
        fs.pipe_file(f"{results}/dataset.json", b'{"schema": "dass.dataset/1"}')
    # every other route refuses a job's token
    r = requests.get(gw.url + "api/datasets", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 403 and "only reads the job's inputs" in r.json()["message"]
    r = requests.put(gw.url + "api/jobs/otherjob/result", json={"status": "COMPLETED"}, timeout=10,
                     headers={"Authorization": f"token {token}"})
    assert r.status_code == 403
    events, _ = gw.app.audit_log.query(ADMIN, limit=20)
    puts = [e for e in events if e["action"] == "data.put" and e["job"] == job and e["allowed"]]
    assert {e["path"] for e in puts} == {"output/a.txt", "output/big.bin"}
    assert [e["bytes"] for e in puts if e["path"] == "output/big.bin"] == [len(BIG)]
    # revoked (the job ended): the token dies
    gw.app.grants.revoke(kind="job", ref=job)
    r = requests.get(gw.url + f"api/data/{ALICE_DS}/image.tif", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 401 and "no longer valid" in r.json()["message"]


def test_an_expired_job_token_reads_nothing(gw):
    import datetime as dt

    from dass.data.grants import new_job_token

    token = new_job_token()
    gw.app.grants.put(token, kind="job", owner="alice", ref="expired", read=[ALICE_DS], write=[],
                      expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    r = requests.get(gw.url + f"api/data/{ALICE_DS}/image.tif", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 401
    r = requests.get(gw.url + f"api/data/{ALICE_DS}/image.tif", timeout=10,
                     headers={"Authorization": "token dassjob_forged"})
    assert r.status_code == 401 and "no longer valid" in r.json()["message"]


def test_a_person_writes_into_their_own_upload_dataset_only(gw):
    from dass.sem.labels import store_upload

    upload = store_upload(gw.app.storage, gw.app.catalog, "p-2026-001", "alice", [("a.tif", b"II*\x00a")])
    alice, bob = dfs(gw, "alice-token"), dfs(gw, "bob-token")
    alice.pipe_file(f"{upload.dataset}/notes/extra.txt", b"my notes")
    assert alice.cat(f"{upload.dataset}/notes/extra.txt") == b"my notes"
    with pytest.raises(PermissionError, match="dataset.json of .* is kept by the platform"):
        alice.pipe_file(f"{upload.dataset}/dataset.json", b"{}")
    with pytest.raises(FileNotFoundError):
        bob.pipe_file(f"{upload.dataset}/x.txt", b"bob")


def test_the_model_registry_is_readable_by_every_caller_and_never_writable(gw):
    from dass.data.grants import new_job_token

    storage = gw.app.storage
    storage.fs.makedirs(storage.join("models"), exist_ok=True)
    storage.fs.pipe_file(storage.join("models", "registry.json"), b'{"default": "m"}')
    token = new_job_token()
    gw.app.grants.put(token, kind="job", owner="bob", ref="models", read=[BOB_DS], write=[])
    for who in ("alice-token", "bob-token", token):
        fs = dfs(gw, who)
        assert json.loads(fs.cat("_repository/models/registry.json")) == {"default": "m"}
        assert "_repository/models/registry.json" in fs.ls("_repository/models", detail=False)
    r = requests.put(gw.url + "api/models/registry.json", data=b"{}", timeout=10,
                     headers={"Authorization": "token alice-token"})
    assert r.status_code == 405
    r = get(gw, "api/models/../secrets")
    assert r.status_code in (400, 404)


def test_local_path_copies_through_the_gateway_read_only(gw, tmp_path, monkeypatch):
    import stat

    from dass.data.errors import DassDataError
    from dass.data.session import Dataset

    monkeypatch.setenv("DASS_SERVICE_URL", gw.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "alice-token")
    monkeypatch.setenv("DASS_CACHE_DIR", str(tmp_path / "cache"))
    ds = Dataset(id=ALICE_DS, proposal="p-2026-001", name="sem-grains")  # no local view
    assert {"dataset.json", "image.tif", "raw"} <= set(ds.ls())
    with pytest.raises(DassDataError, match="more than the 100 bytes"):
        ds.local_path(max_bytes=100, progress=False)
    path = ds.local_path(progress=False)
    assert path == tmp_path / "cache" / "datasets" / ALICE_DS
    assert (path / "raw" / "big.bin").read_bytes() == BIG
    assert stat.S_IMODE((path / "raw" / "big.bin").stat().st_mode) == 0o444
    assert stat.S_IMODE((path / "raw").stat().st_mode) == 0o555
    assert ds.local_path(progress=False) == path  # reused while the files keep their sizes


def test_without_a_valid_token_nothing_is_read(gw, monkeypatch):
    with pytest.raises(PermissionError, match="authentication required|Missing or invalid"):
        DassFileSystem(url=gw.url, token="forged-token", skip_instance_cache=True).cat(f"{PUBLIC_DS}/image.tif")
    for name in ("JUPYTERHUB_API_TOKEN", "DASS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PermissionError, match="JUPYTERHUB_API_TOKEN"):
        DassFileSystem(url=gw.url, skip_instance_cache=True)
    monkeypatch.delenv("DASS_SERVICE_URL", raising=False)
    monkeypatch.delenv("DASS_URL", raising=False)
    with pytest.raises(ValueError, match="DASS_SERVICE_URL"):
        DassFileSystem(token="alice-token", skip_instance_cache=True)


# -- the HTTP API -------------------------------------------------------------------------------


def get(gw, path: str, token: str | None = "alice-token", **kw) -> requests.Response:
    return gw.get(path, token, **kw)


@pytest.mark.parametrize("header, status, body, content_range", [
    ("bytes=0-9", 206, BIG[:10], f"bytes 0-9/{len(BIG)}"),
    ("bytes=307200-", 206, b"tail", f"bytes 307200-307203/{len(BIG)}"),
    ("bytes=-4", 206, b"tail", f"bytes 307200-307203/{len(BIG)}"),
    ("bytes=307000-999999", 206, BIG[307000:], f"bytes 307000-307203/{len(BIG)}"),
])
def test_ranges(gw, header, status, body, content_range):
    r = get(gw, f"api/data/{ALICE_DS}/raw/big.bin", headers={"Range": header})
    assert r.status_code == status and r.content == body
    assert r.headers["Content-Range"] == content_range
    assert r.headers["Accept-Ranges"] == "bytes" and int(r.headers["Content-Length"]) == len(body)


@pytest.mark.parametrize("path, params, headers, status, words", [
    (f"api/data/{ALICE_DS}/raw/big.bin", {}, {"Range": "bytes=999999-"}, 416, "starts at or after the end"),
    (f"api/data/{ALICE_DS}/raw/big.bin", {}, {"Range": "bytes=0-1,5-9"}, 400, "one range like"),
    (f"api/data/{ALICE_DS}/raw/big.bin", {}, {"Range": "lines=1-2"}, 400, "one range like"),
    (f"api/data/{ALICE_DS}/raw", {}, {}, 400, "is a folder; list it with ?op=ls"),
    (f"api/data/{ALICE_DS}/raw", {"op": "rm"}, {}, 400, "op must be one of ls, info"),
    (f"api/data/{ALICE_DS}/raw", {"colour": "red"}, {}, 400, "unknown query parameter(s) colour"),
    (f"api/data/{ALICE_DS}/%2E%2E/kmap-strain/dataset.json", {}, {}, 400, "leaves the dataset"),
    (f"api/data/{ALICE_DS}/raw/none.bin", {}, {}, 404, f"{ALICE_DS}/raw/none.bin not found"),
    (f"api/data/{BOB_DS}/frame.bin", {}, {}, 404, f"dataset {BOB_DS} not found"),
])
def test_bad_requests_answer_json_naming_the_fix(gw, path, params, headers, status, words):
    r = get(gw, path, params=params, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and words in r.json()["message"]


def test_an_anonymous_call_answers_401(gw):
    r = get(gw, f"api/data/{PUBLIC_DS}/image.tif", token=None)
    assert r.status_code == 401 and "authentication required" in r.json()["message"]


# -- the audit rows -----------------------------------------------------------------------------


def test_each_gateway_request_leaves_its_audit_row(gw):
    mark = last_id(gw)
    assert get(gw, f"api/data/{ALICE_DS}", params={"op": "ls"}).status_code == 200
    assert get(gw, f"api/data/{ALICE_DS}/raw/big.bin", params={"op": "info"}).status_code == 200
    assert get(gw, f"api/data/{ALICE_DS}/raw/big.bin", headers={"Range": "bytes=0-99"}).status_code == 206
    assert get(gw, f"api/data/{ALICE_DS}/image.tif", token="bob-token").status_code == 404
    assert get(gw, f"api/data/{ALICE_DS}", token="bob-token", params={"op": "ls"}).status_code == 404
    assert get(gw, f"api/data/{ALICE_DS}/image.tif", token=None).status_code == 401
    assert audit_after(gw, mark) == [
        ("alice", "data.ls", ALICE_DS, None, True, 200, None),
        ("alice", "data.info", ALICE_DS, "raw/big.bin", True, 200, None),
        ("alice", "data.get", ALICE_DS, "raw/big.bin", True, 206, 100),
        ("bob", "data.get", ALICE_DS, "image.tif", False, 404, None),
        ("bob", "data.ls", ALICE_DS, None, False, 404, None),
        ("anonymous", "data.get", ALICE_DS, "image.tif", False, 401, None),
    ]
    mark = last_id(gw)
    dfs(gw, "alice-token").cat(f"{ALICE_DS}/raw/big.bin")
    rows = audit_after(gw, mark)
    assert rows == [("alice", "data.get", ALICE_DS, "raw/big.bin", True, 200, len(BIG))]
    # alice sees bob's denied attempts on her data; bob does not see alice's reads
    seen = gw.get("api/audit", "alice-token", params={"action": "data", "user": "bob"}).json()["events"]
    assert seen and all(e["proposal"] == "p-2026-001" and not e["allowed"] for e in seen)
    seen = gw.get("api/audit", "bob-token", params={"user": "alice"}).json()["events"]
    assert all(e["proposal"] == "p-2026-002" and not e["allowed"] for e in seen)  # her attempts on his data


# -- S3: a redirect to a presigned URL ----------------------------------------------------------


@pytest.fixture(scope="module")
def s3_redirect(loop_thread, hub, tmp_path_factory, moto):
    tmp = tmp_path_factory.mktemp("gw-redirect")
    repo = build_repository(tmp / "data", "s3", moto)
    (tmp / "service").mkdir()
    extra = f"c.Storage.options = {repo['options']!r}\nc.DataGateway.s3_redirect = True"
    svc = start_service(loop_thread, tmp / "service", hub.api_url, db_url=repo["db_url"], repo_url=repo["repo_url"],
                        extra_config=extra)
    yield svc
    svc.stop()


def test_s3_reads_redirect_to_a_presigned_url_of_that_object(s3_redirect, moto):
    r = s3_redirect.get(f"api/data/{ALICE_DS}/raw/big.bin", "alice-token")
    assert r.status_code == 307
    location = r.headers["Location"]
    assert location.startswith(moto.endpoint) and "raw/big.bin" in location and "Signature" in location
    # the URL reads that object, for c.DataGateway.redirect_seconds (60); moto does not check
    # signatures, so that the URL names one object and expires is what can be seen here
    assert requests.get(location, timeout=10).content == BIG
    expires = int(parse_qs(urlsplit(location).query)["Expires"][0])
    assert time.time() < expires <= time.time() + 60 + 1
    # dass:// follows it, ranges included; the token does not travel to the object store
    fs = dfs(s3_redirect, "alice-token")
    assert fs.cat(f"{ALICE_DS}/raw/big.bin") == BIG
    assert fs.cat_file(f"{ALICE_DS}/raw/big.bin", start=10, end=20) == BIG[10:20]
    # denied before any URL is made
    r = s3_redirect.get(f"api/data/{ALICE_DS}/raw/big.bin", "bob-token")
    assert r.status_code == 404 and "Location" not in r.headers
    events, _ = s3_redirect.app.audit_log.query(ADMIN, limit=3)
    assert [(e["user"], e["action"], e["allowed"]) for e in events] == [
        ("bob", "data.get", False), ("alice", "data.redirect", True), ("alice", "data.redirect", True)]


def test_the_gateway_is_documented(gw):
    from openapi_spec_validator import validate

    doc = gw.get("api/openapi.json").json()
    validate(doc)
    op = doc["paths"]["/api/data/{proposal}/{dataset}/{path}"]["get"]
    assert {"200", "206", "307", "404", "416"} <= set(op["responses"])


def test_pandas_xarray_and_h5py_read_through_dass_urls(gw, monkeypatch):
    """The libraries people use take ``dass://`` URLs (fsspec's entry point) or its file objects."""
    import io

    import h5py
    import numpy as np
    import pandas as pd

    storage = gw.app.storage
    folder = storage.dataset_path(*ALICE_DS.split("/"))
    storage.fs.pipe_file(f"{folder}/table.csv", b"x,y\n1,2.5\n3,4.5\n")
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["data"] = np.arange(12.0).reshape(3, 4)
    storage.fs.pipe_file(f"{folder}/scan.h5", buf.getvalue())
    monkeypatch.setenv("DASS_SERVICE_URL", gw.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "alice-token")
    table = pd.read_csv(f"dass://{ALICE_DS}/table.csv")
    assert table["y"].tolist() == [2.5, 4.5]
    with fsspec.open(f"dass://{ALICE_DS}/scan.h5", "rb", skip_instance_cache=True) as raw, h5py.File(raw, "r") as f:
        assert f["data"][2, 3] == 11.0  # ranged reads through the gateway
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "bob-token")
    with pytest.raises(FileNotFoundError):
        pd.read_csv(f"dass://{ALICE_DS}/table.csv")
    try:
        import xarray  # noqa: F401 - optional here; h5netcdf/netCDF files read the same way
    except ImportError:
        return


def test_without_a_manifest_datasets_asks_the_gateway_for_the_tokens_grant(gw, hub, tmp_path, monkeypatch):
    """Sessions on Slurm, in containers or pods get no manifest file: dass.data.datasets()
    asks ``GET api/data`` what the session's token was given."""
    import dass.data
    from dass.data.errors import DassDataError

    token = f"alice-remote-{gw.backend}"
    hub.tokens[token] = "alice"
    gw.app.grants.put(token, kind="session", owner="alice", ref="remote", read=[ALICE_DS])
    monkeypatch.setenv("DASS_SESSION_MANIFEST", str(tmp_path / "none.json"))
    monkeypatch.setenv("DASS_SERVICE_URL", gw.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    monkeypatch.setenv("DASS_CACHE_DIR", str(tmp_path / "cache"))
    ds = dass.data.datasets()
    assert ds.ids == [ALICE_DS] and ds[0].title == "Grain boundaries in annealed copper"
    assert ds[0].path is None and {"dataset.json", "image.tif", "raw"} <= set(ds[0].ls())
    with ds[0].open("image.tif") as f:
        assert f.read() == b"II*\x00fake"
    assert (ds[0].local_path(progress=False) / "raw" / "big.bin").read_bytes() == BIG
    r = gw.get("api/data", "alice-token")  # a person's own token: the catalogue, not a grant
    assert r.status_code == 200 and r.json()["datasets"] is None
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "alice-token")
    with pytest.raises(DassDataError, match="no datasets were chosen"):
        dass.data.datasets()


# -- the same-machine file handoff (file://) ----------------------------------------------------


def test_on_the_same_machine_readers_get_the_file_itself_after_the_same_checks(gw, hub, tmp_path):
    if gw.backend != "file":
        assert gw.app.local_files is None  # S3: bytes over HTTP or a presigned redirect
        return
    from dass.data.grants import new_job_token
    from dass.data.localfiles import HandoffRefused, open_remote

    name = gw.app.local_files.name
    assert name.startswith("@dass-gateway-")
    mark = last_id(gw)
    alice = DassFileSystem(url=gw.url, token="alice-token", local_socket=name, skip_instance_cache=True)
    with alice.open(f"{ALICE_DS}/raw/big.bin") as f:
        assert isinstance(f, io.BufferedReader)
        # the file itself (a descriptor handed over), not ranged GETs
        f.seek(200_000)
        assert f.read(10) == BIG[200_000:200_010]
    assert alice.cat_file(f"{ALICE_DS}/raw/big.bin", start=-4) == b"tail"
    assert alice.cat(f"{ALICE_DS}/image.tif") == b"II*\x00fake"
    # the same refusals as over HTTP, and nothing handed over
    bob = DassFileSystem(url=gw.url, token="bob-token", local_socket=name, skip_instance_cache=True)
    with pytest.raises(FileNotFoundError):
        bob.open(f"{ALICE_DS}/raw/big.bin")
    for token, status in (("forged-token", 401), ("dassjob_forged", 401), ("bob-token", 404)):
        with pytest.raises(HandoffRefused) as refused:
            open_remote(name, token, f"{ALICE_DS}/image.tif")
        assert refused.value.status == status
    with pytest.raises(HandoffRefused) as refused:
        open_remote(name, "alice-token", f"{ALICE_DS}/../p-2026-002/stm-movie/frame.bin")
    assert refused.value.status in (400, 404)
    # a link planted in a dataset is never followed out of it
    folder = Path(gw.app.storage.dataset_path(*ALICE_DS.split("/")))
    (folder / "escape").symlink_to(folder.parent.parent / "p-2026-002" / "stm-movie" / "frame.bin")
    try:
        with pytest.raises(HandoffRefused) as refused:
            open_remote(name, "alice-token", f"{ALICE_DS}/escape")
        assert refused.value.status == 404
    finally:
        (folder / "escape").unlink()
    # a job's token: its inputs only
    job = new_job_token()
    gw.app.grants.put(job, kind="job", owner="bob", ref="handoff", read=[BOB_DS], write=[])
    fd, size = open_remote(name, job, f"{BOB_DS}/frame.bin")
    os.close(fd)
    assert size == len(b"bob's frame")
    with pytest.raises(HandoffRefused):
        open_remote(name, job, f"{ALICE_DS}/image.tif")
    rows = [r for r in audit_after(gw, mark) if r[1] == "data.open"]
    assert ("alice", "data.open", ALICE_DS, "raw/big.bin", True, 200, len(BIG)) in rows
    assert ("bob", "data.open", ALICE_DS, "raw/big.bin", False, 404, None) in rows
    assert ("bob", "data.open", BOB_DS, "frame.bin", True, 200, len(b"bob's frame")) in rows

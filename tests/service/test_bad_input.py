"""The bad-input corpus: every operation of ``openapi.yaml`` fed malformed, hostile and
oversized input answers 4xx with the JSON error (``{"status", "message"}``), never a 5xx.

The service is real (in-process, real HubOAuth against the small real hub of
``service_support``) with small limits, so that oversized bodies are cheap to send, and a job
queue that never starts a job (the jobs routes are tried on a QUEUED job). Cases name their
operation (``operationId``); :func:`test_the_corpus_covers_every_operation` fails when an
operation of the description has none. The property-based counterpart is ``test_fuzz.py``.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import yaml

from dass.service.app import OPENAPI_FILE
from tests.service.service_support import PREFIX, make_repository, start_service

SEM = "sem/service/image_summary.ipynb"
NOTEBOOK_LIMIT = 64 * 1024
JOB_BODY_LIMIT = NOTEBOOK_LIMIT + 256 * 1024  # JobsBase.body_limit
CLASSIFY_LIMIT = 256 * 1024
NINES = "9" * 30
NO_ID = "0" * 32


@pytest.fixture(scope="module")
def hostile(loop_thread, hub, tmp_path_factory):
    """A service of its own whose queue never starts a job, with small body limits."""
    tmp = tmp_path_factory.mktemp("hostile")
    urls = make_repository(tmp / "data")
    (tmp / "service").mkdir()
    extra = "\n".join([
        "c.JobManager.max_concurrency = 0",
        f"c.JobManager.jobs_dir = {str(tmp / 'jobs')!r}",
        f"c.JobManager.max_notebook_bytes = {NOTEBOOK_LIMIT}",
        f"c.SemClassifyService.max_request_bytes = {CLASSIFY_LIMIT}",
    ])
    svc = start_service(loop_thread, tmp / "service", hub.api_url, extra_config=extra, **urls)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def job(hostile) -> str:
    """A QUEUED job of alice."""
    r = hostile.request("POST", "api/jobs", "alice-token", json={
        "notebook": SEM, "parameters": {"input_dataset": "p-2026-001/sem-grains", "max_images": 1}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@dataclass
class Case:
    op: str  # the operationId in openapi.yaml
    method: str
    path: str  # relative to the service prefix; "{job}" becomes a QUEUED job of alice
    expect: tuple[int, ...]  # acceptable statuses
    why: str
    token: str | None = "alice-token"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None  # sent with Transfer-Encoding: chunked


def js(doc: Any) -> bytes:
    return json.dumps(doc).encode()


JSON = {"Content-Type": "application/json"}
NESTED = b"[" * 60_000 + b"]" * 60_000
DEEP_OBJECT = js({"notebook": SEM, "parameters": {"p": json.loads("[" * 100 + "]" * 100)}})


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "xyzzy") -> tuple[bytes, dict]:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _cases() -> list[Case]:
    c: list[Case] = []
    add = c.append
    # -- pages and service routes
    add(Case("home", "GET", "?q=%ff%fe", (400,), "invalid UTF-8 in the query"))
    add(Case("home", "POST", "", (405,), "a method the page does not take"))
    add(Case("datasetPage", "GET", "datasets/%ff%fe/%c0%af", (400, 404), "invalid UTF-8 in the path"))
    add(Case("datasetPage", "GET", "datasets/a%00b/c", (404,), "a NUL in the name"))
    add(Case("datasetPage", "GET", f"datasets/{'p' * 10_000}/x", (404,), "a 10,000-character proposal"))
    add(Case("datasetPage", "GET", "datasets/p-2026-001/sem-grains?x=%00", (400,), "an unknown query parameter"))
    add(Case("datasetPage", "POST", "datasets/p-2026-001/sem-grains", (405,), "a method the page does not take",
             body=b"x" * 100_000))
    add(Case("oauthCallback", "GET", "oauth_callback?code=%00&state=x", (400, 403), "a NUL code, a bad state",
             token=None))
    add(Case("health", "POST", "api/health", (405,), "method not allowed", body=b"x" * 1000, token=None))
    add(Case("health", "DELETE", "api/health", (405,), "method not allowed", token=None))
    add(Case("openapi", "PUT", "api/openapi.json", (405,), "method not allowed", token=None, body=b"{}"))
    add(Case("me", "GET", "api/me", (401,), "no credential", token=None))
    add(Case("me", "GET", "api/me", (401,), "an unknown token", token="no-such-token"))
    add(Case("me", "GET", "api/me", (401,), "a 10,000-character token", token="t" * 10_000))
    add(Case("me", "GET", "api/me", (403,), "a user not granted the service", token="eve-token"))
    add(Case("me", "PATCH", "api/me", (405,), "method not allowed", body=b'{"admin": true}'))
    # -- datasets
    for value, why in [(NINES, "30 nines"), (str(2**63), "2**63"), ("-1", "negative"), ("1e3", "not an integer"),
                       ("%D9%A1%D9%A2", "Arabic-Indic digits"), ("0x10", "hexadecimal"), ("%00", "a NUL (a blank: the default)"),
                       ("9" * 5000, "5,000 digits"), ("%ff", "invalid UTF-8")]:
        add(Case("listDatasets", "GET", f"api/datasets?offset={value}", (200,) if "%00" in value else (400,),
                 f"offset: {why}"))
    for value in ("0", "501", NINES, "-5", "abc"):
        add(Case("listDatasets", "GET", f"api/datasets?limit={value}", (400,), f"limit {value[:10]}"))
    add(Case("listDatasets", "GET", "api/datasets?offset=9223372036854775807", (200,), "the largest offset"))
    add(Case("listDatasets", "GET", "api/datasets?nope=1", (400,), "an unknown query parameter"))
    for name in ("q", "proposal", "instrument", "technique", "stack", "category"):
        add(Case("listDatasets", "GET", f"api/datasets?{name}=a%00b%C3%A9%F0%9F%98%80", (200,), f"NUL and unicode in {name}"))
        add(Case("listDatasets", "GET", f"api/datasets?{name}={'x' * 10_000}", (200,), f"10,000 characters in {name}"))
    add(Case("getDataset", "GET", "api/datasets/%ff%fe/%c0%af", (400, 404), "invalid UTF-8 in the path"))
    add(Case("getDataset", "GET", "api/datasets/p-2026-001/sem%00grains", (404,), "a NUL in the name"))
    add(Case("getDataset", "GET", f"api/datasets/{'p' * 10_000}/x", (404,), "a 10,000-character proposal"))
    add(Case("getDataset", "GET", "api/datasets/..%2f..%2fetc/passwd", (404,), "a path traversal"))
    add(Case("getDataset", "GET", "api/datasets/p-2026-002/stm-movie", (404,), "a dataset alice may not see"))
    add(Case("getDataset", "GET", "api/datasets/p-2026-001/sem-grains?x=1", (400,), "an unknown query parameter"))
    add(Case("listStacks", "GET", "api/stacks?x=%00", (400,), "an unknown query parameter"))
    add(Case("listStacks", "POST", "api/stacks", (405,), "method not allowed", body=b"[]"))
    add(Case("listServiceNotebooks", "GET", "api/notebooks?x=1", (400,), "an unknown query parameter"))
    add(Case("listServiceNotebooks", "DELETE", "api/notebooks", (405,), "method not allowed"))
    # -- the audit log
    for q, why in [("offset=" + NINES, "30 nines"), ("limit=0", "limit 0"), ("allowed=maybe", "not a boolean"),
                   ("since=%00", "a NUL date"), ("since=2026-13-45", "no such date"), ("until=" + "9" * 500, "500 digits"),
                   ("nope=1", "an unknown parameter"), ("user=%ff", "invalid UTF-8")]:
        add(Case("listAuditEvents", "GET", f"api/audit?{q}", (200, 400), f"audit filter: {why}"))
    add(Case("listAuditEvents", "POST", "api/audit", (405,), "method not allowed", body=b"{}"))
    add(Case("auditPage", "GET", "audit?since=not-a-date", (200, 400), "a filter that is not a date"))
    add(Case("auditPage", "GET", "audit?offset=" + NINES, (200, 400), "30 nines"))
    add(Case("auditPage", "POST", "audit", (405,), "method not allowed", body=b"x" * 1000))
    # -- the data gateway
    for path, why in [("p-2026-001/sem-grains/a%00b", "a NUL in the path"),
                      (f"p-2026-001/sem-grains/{'f' * 10_000}", "a 10,000-character name"),
                      ("p-2026-001/sem-grains/..%2f..%2fp-2026-002%2fstm-movie%2fimage.tif", "a traversal"),
                      ("p-2026-001/sem-grains/../../p-2026-002/stm-movie/image.tif", "a traversal, unencoded"),
                      ("p-2026-001/sem-grains/%ff", "invalid UTF-8"),
                      ("a%00b/c/d", "a NUL in the proposal"), (f"{'p' * 10_000}/x/y", "a 10,000-character proposal"),
                      ("p-2026-002/stm-movie/image.tif", "a dataset alice may not see"),
                      ("p-2026-001/sem-grains/image.tif?op=rm", "an unknown op"),
                      ("p-2026-001/sem-grains/nothing-here.tif", "a missing file")]:
        add(Case("readData", "GET", f"api/data/{path}", (400, 404), f"gateway: {why}"))
    add(Case("readData", "GET", "api/data/p-2026-001/sem-grains/image.tif?op=%00", (200,), "a NUL op (a blank: read)"))
    for value in ("bytes=99999999999999999999999999-", "bytes=5-2", "bytes=-0", "bytes=0-1,3-4", "items=0-1",
                  "bytes=é", "bytes=-" + "9" * 40):
        add(Case("readData", "GET", "api/data/p-2026-001/sem-grains/image.tif", (200, 206, 400, 416),
                 f"a Range of {value[:30]!r}", headers={"Range": value}))
    add(Case("writeData", "PUT", "api/data/p-2026-001/sem-grains/new.tif", (403,),
             "a write into a dataset that is not one of her uploads", body=b"x" * 1000))
    add(Case("writeData", "PUT", "api/data/p-2026-002/stm-movie/new.tif", (404,), "a write into a dataset she may not see",
             body=b"x"))
    add(Case("writeData", "PUT", "api/data/p-2026-001/sem-grains/../x", (400, 404), "a path leaving the dataset",
             body=b"x"))
    add(Case("writeData", "PUT", "api/data/p-2026-001/sem-grains/new.tif", (401,), "no token", token=None, body=b"x"))
    add(Case("writeData", "PUT", "api/data/p-2026-001/sem-grains/new.tif", (401,), "a forged job token",
             token="dassjob_forged", body=b"x"))
    add(Case("grantedData", "GET", "api/data?x=1", (400,), "an unknown query parameter"))
    add(Case("grantedData", "GET", "api/data", (401,), "no token", token=None))
    add(Case("readModels", "PUT", "api/models/registry.json", (405,), "the model registry is read-only", body=b"{}"))
    add(Case("readModels", "GET", "api/models/registry.json?op=rm", (400,), "an unknown op"))
    add(Case("readModels", "GET", "api/models/nothing.json", (404,), "a missing file"))
    # a job's result: only that job's own token
    add(Case("putJobResult", "PUT", "api/jobs/{job}/result", (403,), "a person's token", body=js({"status": "COMPLETED"})))
    add(Case("putJobResult", "PUT", "api/jobs/{job}/result", (401,), "a forged job token", token="dassjob_forged",
             body=js({"status": "COMPLETED"})))
    add(Case("putJobResult", "PUT", "api/jobs/{job}/result", (400, 403), "not JSON", body=b"{nope"))
    # -- jobs
    for value, why in [(NINES, "30 nines"), (str(2**63), "2**63"), ("-1", "negative"), ("%00", "a NUL")]:
        expect = (200,) if "%00" in value else (400,)  # tornado reads control characters as blanks
        add(Case("listJobs", "GET", f"api/jobs?offset={value}", expect, f"offset: {why}"))
        add(Case("getJobLog", "GET", f"api/jobs/{{job}}/log?offset={value}", expect, f"log offset: {why}"))
    add(Case("getJobLog", "GET", f"api/jobs/{{job}}/log?offset={2**62}", (400,), "a log offset no file seek takes"))
    add(Case("getJobLog", "GET", "api/jobs/{job}/log?follow=2", (400,), "follow is neither 0 nor 1"))
    add(Case("getJobLog", "GET", f"api/jobs/{NINES}/log", (404,), "no such job"))
    add(Case("listJobs", "GET", "api/jobs?limit=0", (400,), "limit 0"))
    add(Case("listJobs", "GET", "api/jobs?status=%00", (200, 400, 422), "a NUL status (a blank: any)"))
    add(Case("listJobs", "GET", f"api/jobs?status={'X' * 10_000}", (400, 422), "a 10,000-character status"))
    bad_bodies: list[tuple[bytes, tuple[int, ...], str]] = [
        (b"{", (400,), "malformed JSON"),
        (b"", (400, 422), "an empty body"),
        (b"\xff\xfe\x00", (400,), "not UTF-8"),
        (NESTED, (400,), "60,000 nested brackets"),
        (DEEP_OBJECT, (400,), "a parameter nested 100 deep"),
        (b"null", (422,), "null"),
        (b"[]", (422,), "an array"),
        (b'"\\u0000"', (400,), "a NUL string"),
        (js({"notebook": 5}), (422,), "a number as notebook"),
        (js({"notebook": "x" * 10_000}), (400,), "a 10,000-character notebook name"),
        (js({"notebook": "sem/service/a\x00b.ipynb"}), (400,), "a NUL in the notebook"),
        (js({"notebook": {"home": "a\x00.ipynb"}}), (400,), "a NUL in home"),
        (js({"notebook": {"home": "h" * 10_000 + ".ipynb"}}), (400,), "a 10,000-character home path"),
        (js({"notebook": {"home": "../../../etc/x.ipynb"}}), (403, 422), "home outside the home folder"),
        (js({"notebook": {"upload": {}, "name": "n" * 10_000 + ".ipynb"}}), (400,), "a 10,000-character upload name"),
        (js({"notebook": {"upload": "x" * (NOTEBOOK_LIMIT + 10)}}), (413, 422), "an upload over the notebook limit"),
        (js({"notebook": SEM, "timeout": 10**30}), (400,), "a timeout of 10**30"),
        (js({"notebook": SEM, "timeout": 2**62}), (400, 422), "a timeout of 2**62"),
        (js({"notebook": SEM, "timeout": -1}), (400, 422), "a negative timeout"),
        (js({"notebook": SEM, "timeout": "soon"}), (400, 422), "a string timeout"),
        (b'{"notebook": "%s", "timeout": 1e999}' % SEM.encode(), (400,), "an infinite number"),
        (b'{"notebook": "%s", "timeout": NaN}' % SEM.encode(), (400,), "NaN"),
        (js({"notebook": SEM, "parameters": {"max_images": 2**70}}), (400,), "a 70-bit integer parameter"),
        (js({"notebook": SEM, "parameters": {"max_images": -(10**20)}}), (400,), "a huge negative integer"),
        (js({"notebook": SEM, "parameters": {"a\x00": 1}}), (400,), "a NUL in a parameter name"),
        (js({"notebook": SEM, "parameters": {"p" * 10_000: 1}}), (400,), "a 10,000-character parameter name"),
        (js({"notebook": SEM, "parameters": []}), (422,), "parameters as an array"),
        (js({"notebook": SEM, "parameters": "max_images=1"}), (422,), "parameters as a string"),
        (js({"notebook": SEM, "parameters": {"max_images": "many"}}), (422,), "a string for an int parameter"),
        (js({"notebook": SEM, "datasets": ["\x00"]}), (400,), "a NUL dataset"),
        (js({"notebook": SEM, "datasets": "p-2026-001/sem-grains"}), (400, 422), "datasets as a string"),
        (js({"notebook": SEM, "datasets": ["p-2026-002/stm-movie"]}), (403, 404, 422), "a dataset not alice's"),
        (js({"notebook": SEM, "stack": "s" * 10_000}), (400,), "a 10,000-character stack"),
        (js({"notebook": SEM, "size": "\u202e"}), (400, 422), "a right-to-left override as size"),
        (b'{"notebook": "%s", "idempotency_key": "\\ud800"}' % SEM.encode(), (400,), "a lone surrogate"),
        (js({"notebook": SEM, "idempotency_key": "k" * 300}), (400, 422), "a 300-character key"),
        (js({"notebook": SEM, "surprise": 1}), (422,), "an unknown field"),
    ]
    for body, expect, why in bad_bodies:
        add(Case("submitJob", "POST", "api/jobs", expect, why, body=body, headers=JSON))
    add(Case("submitJob", "POST", "api/jobs", (413,), "a declared body over the limit",
             body=b" " * (JOB_BODY_LIMIT + 1), headers=JSON))
    add(Case("submitJob", "POST", "api/jobs", (413,), "a chunked body over the limit",
             chunks=[b" " * 65536] * (JOB_BODY_LIMIT // 65536 + 2), headers=JSON))
    add(Case("submitJob", "POST", "api/jobs", (401,), "no credential and a 2 MB body", token=None,
             body=b"x" * 2_000_000, headers=JSON))
    add(Case("submitJob", "POST", "api/jobs?x=1", (400,), "an unknown query parameter", body=js({"notebook": SEM})))
    add(Case("listJobs", "GET", "api/jobs?sweep=a%00b", (400, 404), "a NUL in the sweep filter"))
    add(Case("listJobs", "GET", f"api/jobs?sweep={'s' * 10_000}", (400, 404), "a 10,000-character sweep"))
    add(Case("listJobs", "GET", f"api/jobs?sweep={NO_ID}", (404,), "no such sweep"))
    sweep = {"notebook": SEM, "sweep": {"max_images": [1, 2]}}
    for body, expect, why in [
        (b"{", (400,), "malformed JSON"),
        (NESTED, (400,), "60,000 nested brackets"),
        (b"[]", (422,), "an array"),
        (js({"notebook": SEM}), (422,), "neither sweep nor parameter_sets"),
        (js({**sweep, "sweep": []}), (422,), "sweep as a list"),
        (js({**sweep, "sweep": {"max_images": []}}), (422,), "an empty value list"),
        (js({**sweep, "sweep": {"max_images": 3}}), (422,), "values that are not a list"),
        (js({**sweep, "sweep": {"max_images": [1, "many"]}}), (422,), "a value of the wrong type"),
        (js({**sweep, "sweep": {"nope": [1]}}), (422,), "an unknown parameter"),
        (js({**sweep, "sweep": {"max_images": list(range(5000))}}), (422,), "5,000 elements"),
        (js({**sweep, "sweep": {"max_images": [2**70]}}), (400,), "a 70-bit integer value"),
        (js({**sweep, "sweep": {"a\x00": [1]}}), (400,), "a NUL in a swept name"),
        (js({**sweep, "parameter_sets": [{"p" * 10_000: 1}]}), (400,), "a 10,000-character name in a set"),
        (js({**sweep, "parameter_sets": "x"}), (422,), "parameter_sets as a string"),
        (js({**sweep, "parameter_sets": [1]}), (422,), "a number as a parameter set"),
        (js({**sweep, "surprise": 1}), (422,), "an unknown field"),
    ]:
        add(Case("submitSweep", "POST", "api/sweeps", expect, why, body=body, headers=JSON))
    add(Case("submitSweep", "POST", "api/sweeps", (413,), "a declared body over the limit",
             body=b" " * (JOB_BODY_LIMIT + 1), headers=JSON))
    add(Case("submitSweep", "POST", "api/sweeps?x=1", (400,), "an unknown query parameter", body=js(sweep)))
    add(Case("submitSweep", "PUT", "api/sweeps", (405,), "method not allowed", body=js(sweep)))
    for value, why in [(NINES, "30 nines"), (str(2**63), "2**63"), ("-1", "negative"), ("many", "a word")]:
        add(Case("listSweeps", "GET", f"api/sweeps?offset={value}", (400,), f"offset: {why}"))
    add(Case("listSweeps", "GET", "api/sweeps?limit=0", (400,), "limit 0"))
    add(Case("listSweeps", "GET", "api/sweeps?limit=501", (400,), "a limit over 500"))
    add(Case("listSweeps", "GET", "api/sweeps?status=QUEUED", (400,), "an unknown query parameter"))
    add(Case("listSweeps", "GET", "api/sweeps", (401,), "no token", token=None))
    add(Case("getSweep", "GET", f"api/sweeps/{'x' * 10_000}", (404,), "a 10,000-character id"))
    add(Case("getSweep", "GET", "api/sweeps/a%00b", (404,), "a NUL in the id"))
    add(Case("getSweep", "GET", f"api/sweeps/{NO_ID}?x=1", (400,), "an unknown query parameter"))
    add(Case("getSweep", "GET", "api/sweeps/{job}", (404,), "a job's id is not a sweep's"))
    add(Case("getSweep", "DELETE", f"api/sweeps/{NO_ID}", (405,), "method not allowed"))
    add(Case("cancelSweep", "POST", f"api/sweeps/{NINES}/cancel", (404,), "no such sweep", body=NESTED))
    add(Case("cancelSweep", "GET", f"api/sweeps/{NO_ID}/cancel", (405,), "method not allowed"))
    add(Case("getJob", "GET", f"api/jobs/{'x' * 10_000}", (404,), "a 10,000-character id"))
    add(Case("getJob", "GET", "api/jobs/a%00b", (404,), "a NUL in the id"))
    add(Case("getJob", "GET", "api/jobs/{job}?x=1", (400,), "an unknown query parameter"))
    add(Case("getJob", "GET", "api/jobs/{job}", (404,), "another user's job", token="bob-token"))
    add(Case("getJob", "DELETE", "api/jobs/{job}", (405,), "method not allowed"))
    add(Case("cancelJob", "POST", f"api/jobs/{NINES}/cancel", (404,), "no such job", body=NESTED))
    add(Case("cancelJob", "GET", "api/jobs/{job}/cancel", (405,), "method not allowed"))
    add(Case("listJobOutputs", "GET", "api/jobs/{job}/outputs?x=1", (400,), "an unknown query parameter"))
    add(Case("listJobOutputs", "GET", "api/jobs/NOPE/outputs", (404,), "no such job"))
    add(Case("downloadJobOutput", "GET", "api/jobs/{job}/outputs/a%00b", (400,), "a NUL in the path"))
    add(Case("downloadJobOutput", "GET", f"api/jobs/{{job}}/outputs/{'o' * 10_000}", (400,), "a 10,000-character name"))
    add(Case("downloadJobOutput", "GET", "api/jobs/{job}/outputs/..%2f..%2fetc%2fpasswd", (404,), "a traversal"))
    add(Case("downloadJobOutput", "GET", "api/jobs/{job}/outputs/%ff", (400,), "invalid UTF-8 in the path"))
    add(Case("getJobNotebook", "GET", "api/jobs/{job}/notebook", (404,), "a queued job has no notebook yet"))
    add(Case("getJobNotebook", "GET", "api/jobs/{job}/notebook?x=1", (400,), "an unknown query parameter"))
    add(Case("verifyJob", "POST", "api/jobs/{job}/verify", (409,), "a queued job has no results"))
    add(Case("verifyJob", "POST", "api/jobs/NOPE/verify", (404,), "no such job"))
    # -- SEM classification
    add(Case("classifyImages", "POST", "api/classify", (415,), "neither JSON nor multipart", body=b"x",
             headers={"Content-Type": "text/plain"}))
    add(Case("classifyImages", "POST", "api/classify", (415,), "no content type", body=b""))
    for body, why in [(b"{", "malformed JSON"), (NESTED, "60,000 nested brackets"), (b"[]", "an array"),
                      (js({"dataset": 5}), "a number as dataset"), (js({"dataset": "p/x", "nope": 1}), "unknown field"),
                      (js({"dataset": "p-2026-001/sem-grains", "paths": "x"}), "paths as a string"),
                      (js({"dataset": "p-2026-001/sem-grains", "paths": [1]}), "a number as path"),
                      (js({"dataset": "a\x00b"}), "a NUL dataset"), (js({"dataset": "d" * 10_000}), "a long dataset"),
                      (js({"dataset": "p-2026-002/stm-movie"}), "a dataset alice may not see")]:
        add(Case("classifyImages", "POST", "api/classify", (400, 404, 413), why, body=body, headers=JSON))
    body, headers = multipart([("files", "a.png", b"\x89PNG")], boundary="xyzzy")
    add(Case("classifyImages", "POST", "api/classify", (400,), "a boundary that is not in the body", body=body,
             headers={"Content-Type": "multipart/form-data; boundary=other"}))
    add(Case("classifyImages", "POST", "api/classify", (400,), "no boundary", body=body,
             headers={"Content-Type": "multipart/form-data"}))
    body, headers = multipart([("proposal", None, b"p-2026-001")])
    add(Case("classifyImages", "POST", "api/classify", (400,), "no files", body=body, headers=headers))
    body, headers = multipart([("files", "a.png", b"x"), ("evil", None, b"1")])
    add(Case("classifyImages", "POST", "api/classify", (400,), "an unknown form field", body=body, headers=headers))
    for proposal in (b"a\x00b", b"p" * 10_000, b"\xff\xfe", b"p-2026-002"):
        body, headers = multipart([("files", "a.png", b"x"), ("proposal", None, proposal)])
        add(Case("classifyImages", "POST", "api/classify", (404,), f"proposal {proposal[:12]!r}", body=body,
                 headers=headers))
    body, headers = multipart([("files", "a.png", b"x" * (CLASSIFY_LIMIT + 10))])
    add(Case("classifyImages", "POST", "api/classify", (413,), "a declared body over the limit", body=body,
             headers=headers))
    add(Case("classifyImages", "POST", "api/classify", (413,), "a chunked body over the limit",
             chunks=[body[i:i + 65536] for i in range(0, len(body), 65536)], headers=headers))
    add(Case("classifyImages", "POST", "api/classify", (401,), "an invalid token and a 2 MB body",
             token="no-such-token", body=b"x" * 2_000_000, headers=headers))
    add(Case("classifyImages", "GET", "api/classify", (405,), "method not allowed"))
    add(Case("getClassifyModel", "GET", "api/classify/model?x=1", (400,), "an unknown query parameter"))
    add(Case("getClassifyModel", "POST", "api/classify/model", (405,), "method not allowed", body=b"{}"))
    add(Case("getCategoryRepresentative", "GET", "api/classify/categories/a%00b/representative", (404,), "a NUL"))
    add(Case("getCategoryRepresentative", "GET", "api/classify/categories/Tips/representative?x=1", (400,),
             "an unknown query parameter"))
    for q, why in [("dataset=p-2026-001/sem-grains&path=a%00b.tif", "a NUL in the path"),
                   (f"dataset=p-2026-001/sem-grains&path={'i' * 10_000}.tif", "a 10,000-character name"),
                   ("dataset=p-2026-001/sem-grains&path=../../p-2026-002/stm-movie/image.tif", "a traversal"),
                   ("dataset=p-2026-001/sem-grains&path=%ff", "invalid UTF-8"),
                   ("dataset=a%00b&path=x.tif", "a NUL dataset"), (f"dataset={'d' * 10_000}&path=x", "a long dataset"),
                   ("dataset=p-2026-002/stm-movie&path=image.tif", "a dataset alice may not see"),
                   ("dataset=p-2026-001/sem-grains&path=image.tif", "a file that is not an image"),
                   ("dataset=p-2026-001/sem-grains", "no path"), ("path=x.tif&nope=1", "an unknown parameter")]:
        add(Case("getImagePreview", "GET", f"api/classify/preview?{q}", (400, 404, 422), f"preview: {why}"))
    add(Case("getImagePreview", "POST", "api/classify/preview", (405,), "method not allowed", body=b"x"))
    add(Case("getClassification", "GET", f"api/classify/{NO_ID}", (404,), "no such classification"))
    add(Case("getClassification", "GET", "api/classify/" + "Z" * 32, (404,), "not a classification id"))
    add(Case("getClassification", "GET", f"api/classify/{NO_ID}?x=1", (400,), "an unknown query parameter"))
    for body, expect, why in [
        (js({"category": None}), (422,), "category null"),
        (js({"category": 5}), (422,), "a number as category"),
        (js({"category": ["Tips"]}), (422,), "a list as category"),
        (js({"category": "\x00"}), (400,), "a NUL category"),
        (js({"category": "Tips", "also": 1}), (400,), "an unknown field"),
        (b"[]", (400,), "an array"),
        (NESTED, (400, 413), "60,000 nested brackets"),
        (b"{", (400,), "malformed JSON"),
        (js({"category": "x" * 70_000}), (413,), "a body over 64 KiB"),
        (js({"category": "Tips"}), (404,), "no such classification"),
    ]:
        add(Case("confirmClassification", "POST", f"api/classify/{NO_ID}/confirm", expect, why, body=body,
                 headers=JSON))
    return c


CASES = _cases()


def send(svc, case: Case, job: str) -> requests.Response:
    headers = dict(case.headers)
    if case.token:
        headers["Authorization"] = f"token {case.token}"
    url = svc.url + case.path.replace("{job}", job)
    data: Any = iter(case.chunks) if case.chunks is not None else case.body
    return requests.request(case.method, url, data=data, headers=headers, timeout=60, allow_redirects=False)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.method}-{i}-{c.why}" for i, c in enumerate(CASES)])
def test_bad_input_is_answered_with_a_4xx_that_says_what_to_fix(hostile, job, case):
    r = send(hostile, case, job)
    assert r.status_code < 500, f"{case.why}: {r.status_code} {r.text[:300]}"
    assert r.status_code in case.expect, f"{case.why}: {r.status_code} {r.text[:300]}"
    if r.status_code < 400:
        return  # harmless input, answered normally (e.g. a NUL in a query: tornado reads a blank)
    if case.path.startswith("api/"):
        assert r.headers["Content-Type"].startswith("application/json"), r.headers
        body = r.json()
        assert set(body) == {"status", "message"} and body["status"] == r.status_code, body
        assert len(body["message"]) > 10 and "Traceback" not in body["message"], body
    else:
        assert r.headers["Content-Type"].startswith("text/html"), r.headers
    if r.status_code == 405:
        allowed = {m.strip() for m in r.headers["Allow"].split(",")}
        assert allowed and case.method not in allowed, r.headers["Allow"]


def test_the_corpus_covers_every_operation():
    doc = yaml.safe_load(OPENAPI_FILE.read_text())
    operations = {op["operationId"] for item in doc["paths"].values() for op in item.values()
                  if isinstance(op, dict) and "operationId" in op}
    assert operations - {c.op for c in CASES} == set()
    assert {c.op for c in CASES} - operations == set()  # no case names an operation that does not exist


def test_405_says_which_methods_the_route_takes(hostile, job):
    r = hostile.request("DELETE", "api/jobs", "alice-token")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    assert "use GET, POST" in r.json()["message"]
    r = hostile.request("PUT", f"api/jobs/{job}/cancel", "alice-token")
    assert r.headers["Allow"] == "POST"


def test_the_service_stays_healthy_and_keeps_the_connection_after_refusals(hostile, job):
    """Refusals given before the body is read still read it, so one connection serves the next
    request (a proxy in front reuses its connections)."""
    with requests.Session() as s:
        s.headers["Authorization"] = "token no-such-token"
        for _ in range(3):
            r = s.post(hostile.url + "api/jobs", data=b"x" * 300_000, headers=JSON, timeout=60)
            assert r.status_code == 401, r.text
        r = s.get(hostile.url + "api/health", timeout=60)
        assert r.status_code == 200 and r.json()["status"] == "ok"


def _raw(svc, request: bytes) -> bytes:
    """Send raw bytes to the service and read the answer until the server stops sending."""
    host, port = "127.0.0.1", svc.app.bound_port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("declared", ["12abc", "-5", "9" * 30])
def test_a_malformed_content_length_is_refused_without_a_traceback(hostile, declared):
    answer = _raw(hostile, (f"POST {PREFIX}api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: token alice-token\r\n"
                            f"Content-Length: {declared}\r\nContent-Type: application/json\r\n\r\n{{}}").encode())
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500 and b"Traceback" not in answer, answer[:300]

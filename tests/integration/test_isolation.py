"""Proposals kept apart for real (issue 11), with two users, on ``file://`` and on S3.

The platform runs as root with per-user Unix accounts, its state in a folder others may enter.
alice runs a job first. Then bob spawns a session with one dataset of his own proposal and
submits a job; both search everything they can see -- their environment, their own and their
parent's command line and environment in ``/proc``, every file of their home (or job folder)
-- for the repository's key and secret and the platform's passwords and tokens; both try to
open the platform's secrets and databases, the repository folder, alice's job folder and the
homes; both try every token they hold on alice's data through the gateway; the session tries
to write into its own read-only dataset view. The same on a ``file://`` repository and on S3
(moto on loopback, with a key and secret of its own).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.support import (
    accounts_platform,
    PlatformProcess,
    shared_session_env,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="per-user Unix accounts need root (useradd, setuid)"),
]

BOB_DS = "p-2026-002/stm-au111-fast"
ALICE_FILE = "p-2026-001/sem-nanowires/dataset.json"

SEARCH = r'''
import json, os, pathlib
found = {"env": dict(os.environ), "proc": {}, "files": {}}
for pid in ("self", str(os.getppid())):
    for what in ("cmdline", "environ"):
        try:
            found["proc"][f"{pid}/{what}"] = open(f"/proc/{pid}/{what}", "rb").read().decode("utf-8", "replace")
        except OSError as e:
            found["proc"][f"{pid}/{what}"] = f"unreadable: {e.strerror}"
for path in pathlib.Path.home().rglob("*"):
    try:
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 2_000_000 and "datasets" not in path.parts:
            found["files"][str(path)] = path.read_text(errors="replace")
    except OSError:
        pass
# every token this process can find, tried on alice's data through the gateway
import requests
url = os.environ["DASS_SERVICE_URL"]
tokens = {v for k, v in os.environ.items() if "TOKEN" in k and v}
found["alice"] = {}
for t in sorted(tokens):
    r = requests.get(url + "api/data/''' + ALICE_FILE + r'''", headers={"Authorization": f"token {t}"}, timeout=30)
    found["alice"][t[:6]] = r.status_code
# the platform's files, alice's job folder, the homes: each must be refused by the system
found["reach"] = {}
for label, kind, path in PLACES:
    try:
        if kind == "list":
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        found["reach"][label] = "allowed"
    except PermissionError:
        found["reach"][label] = "denied"
    except OSError as e:
        found["reach"][label] = f"{type(e).__name__}"
# the read-only view of the session's own dataset (in a job: its inputs' view)
found["write"] = {}
views = pathlib.Path.cwd() / "datasets" if (pathlib.Path.cwd() / "datasets").is_dir() else pathlib.Path.home() / "datasets"
target = next((p for p in sorted(views.rglob("*")) if p.is_file()), None)
for label, act in (("change a file", lambda: open(target, "ab").write(b"x")),
                   ("add a file", lambda: open(target.parent / "new.bin", "wb").write(b"x")),
                   ("remove a file", lambda: os.remove(target))):
    try:
        act()
        found["write"][label] = "allowed"
    except PermissionError:
        found["write"][label] = "denied"
    except Exception as e:
        found["write"][label] = type(e).__name__
'''


def _needles(p: PlatformProcess, options: dict) -> dict[str, str]:
    needles = {f"secrets.{k}": v for k, v in p.secrets.items() if isinstance(v, str) and len(v) >= 8}
    for key in ("key", "secret"):
        if options.get(key):
            needles[f"storage.{key}"] = options[key]
    return needles


def _check(found: dict, needles: dict[str, str], where: str) -> None:
    places = {f"env:{k}": f"{k}={v}" for k, v in found["env"].items()}
    places.update({f"proc:{k}": v for k, v in found["proc"].items()})
    places.update({f"file:{k}": v for k, v in found["files"].items()})
    assert places, where
    leaks = [(name, place) for name, secret in needles.items() for place, text in places.items() if secret in text]
    assert leaks == [], f"{where}: secrets found: {leaks}"
    assert not any(k.startswith(("AWS_", "DASS_STORAGE")) for k in found["env"]), found["env"].keys()
    # no token bob's code holds reads alice's file through the gateway
    assert found["alice"] and set(found["alice"].values()) <= {401, 403, 404}, found["alice"]
    # the system refuses the platform's files, alice's job folder and the homes
    assert found["reach"] and set(found["reach"].values()) == {"denied"}, (where, found["reach"])
    # and writes into the read-only view of bob's own data
    assert set(found["write"].values()) == {"denied"}, (where, found["write"])


def _places(p: PlatformProcess) -> str:
    """``PLACES = [...]``: what bob's code tries to open (paths are no secret)."""
    places = [("secrets", "read", str(p.state / "secrets.json")),
              ("hub database", "read", str(p.state / "jupyterhub.sqlite")),
              ("jobs root", "list", str(p.state / "jobs")),
              ("alice's job folder", "list", str(p.state / "jobs" / p.alice_job)),
              ("alice's job spec", "read", str(p.state / "jobs" / p.alice_job / "spec.json")),
              ("homes root", "list", str(p.state / "homes"))]
    catalog = p.state / "catalog.sqlite"
    if catalog.exists():
        places.append(("catalogue database", "read", str(catalog)))
    if p.storage_url.startswith("file://"):
        repo = p.storage_url.removeprefix("file://")
        places += [("repository", "list", repo),
                   ("alice's dataset file", "read", f"{repo}/{ALICE_FILE}")]
    return f"PLACES = {places!r}\n"


def _search_session(p: PlatformProcess) -> dict:
    r = p.spawn("bob", {"stack": "stm", "size": "small", "datasets": [BOB_DS]})
    assert r.status_code in (201, 202), r.text
    try:
        out = p.run_in_kernel("bob", _places(p) + SEARCH + "\nprint(json.dumps(found))", timeout=120)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        p.stop_server("bob")


def _search_job(p: PlatformProcess) -> dict:
    nb = new_notebook(cells=[new_code_cell(_places(p) + SEARCH), new_code_cell(
        "open(os.path.join(os.environ['DASS_OUTPUT_DIR'], 'found.json'), 'w').write(json.dumps(found))")])
    body = {"notebook": {"upload": nbformat.writes(nb), "name": "search.ipynb"}, "stack": "stm",
            "datasets": [BOB_DS]}
    job = _run_job(p, "bob", body)
    r = p.service("GET", f"api/jobs/{job['id']}/outputs/output/found.json", "bob")
    assert r.status_code == 200, r.text
    return r.json()


def _run_job(p: PlatformProcess, user: str, body: dict) -> dict:
    r = p.service("POST", "api/jobs", user, json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    def done():
        job = p.service("GET", f"api/jobs/{job_id}", user).json()
        return job if job["status"] in ("COMPLETED", "FAILED", "STOPPED") else None

    job = wait_for(done, 180, f"job {job_id}", interval=0.5)
    assert job["status"] == "COMPLETED", job
    return job


@pytest.fixture(scope="module", params=["file", "s3"])
def iso_platform(request, moto):
    """The platform as root with per-user accounts (test prefix and ids), its state in a folder
    every account may enter, the stm stack on a Python every account may run; on S3 with a
    key and secret of its own (moto takes any). alice has run one job."""
    def extra(base: Path) -> str:
        env = shared_session_env(base).parent.parent
        return f"c.StackRegistry.stacks = {{'stm': {{'environment': {str(env)!r}}}}}"

    kwargs: dict = {}
    options: dict = {}
    if request.param == "s3":
        moto.make_bucket("iso-repo")
        options = {**moto.options, "key": "AKIA" + uuid.uuid4().hex[:16].upper(), "secret": uuid.uuid4().hex * 2}
        kwargs = {"storage_url": "s3://iso-repo/repository", "storage_options": options}
    with accounts_platform(f"platform-iso-{request.param}", extra, **kwargs) as p:
        p.options = options
        mine = new_notebook(cells=[new_code_cell("print('alice was here')")])
        p.alice_job = _run_job(p, "alice", {"notebook": {"upload": nbformat.writes(mine), "name": "mine.ipynb"},
                                            "stack": "stm", "datasets": ["p-2026-001/sem-nanowires"]})["id"]
        yield p


def test_bob_reaches_nothing_of_alice_nor_any_secret(iso_platform):
    p = iso_platform
    needles = _needles(p, p.options)
    assert len(needles) >= (4 if p.options else 2)
    _check(_search_session(p), needles, f"bob's session ({p.storage_url.split(':')[0]})")
    _check(_search_job(p), needles, f"bob's job ({p.storage_url.split(':')[0]})")

"""No storage credential, database URL or platform secret reaches a session or a job (issue 11).

bob spawns a session with one dataset of his own proposal and submits a job; both search
everything they can see -- their environment, their own and their parent's command line and
environment in ``/proc``, every file of their home (or job folder) -- for the repository's key
and secret and the platform's passwords and tokens. The same on a ``file://`` repository and on
S3 (moto on loopback, with a key and secret of its own). Then both try to reach alice's data
through the gateway with every token they hold.
"""

from __future__ import annotations

import json
import uuid

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.support import PlatformProcess, wait_for

pytestmark = pytest.mark.integration

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


def _search_session(p: PlatformProcess) -> dict:
    r = p.spawn("bob", {"stack": "stm", "size": "small", "datasets": [BOB_DS]})
    assert r.status_code in (201, 202), r.text
    try:
        out = p.run_in_kernel("bob", SEARCH + "\nprint(json.dumps(found))", timeout=120)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        p.stop_server("bob")


def _search_job(p: PlatformProcess) -> dict:
    nb = new_notebook(cells=[new_code_cell(SEARCH), new_code_cell(
        "open(os.path.join(os.environ['DASS_OUTPUT_DIR'], 'found.json'), 'w').write(json.dumps(found))")])
    body = {"notebook": {"upload": nbformat.writes(nb), "name": "search.ipynb"}, "stack": "stm",
            "datasets": [BOB_DS]}
    r = p.service("POST", "api/jobs", "bob", json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    def done():
        job = p.service("GET", f"api/jobs/{job_id}", "bob").json()
        return job if job["status"] in ("COMPLETED", "FAILED", "STOPPED") else None

    job = wait_for(done, 180, f"job {job_id}", interval=0.5)
    assert job["status"] == "COMPLETED", job
    r = p.service("GET", f"api/jobs/{job_id}/outputs/output/found.json", "bob")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def s3_secret_platform(tmp_path_factory, moto):
    """A platform on S3 whose key and secret are its own random strings (moto takes any)."""
    moto.make_bucket("iso-repo")
    options = {**moto.options, "key": "AKIA" + uuid.uuid4().hex[:16].upper(), "secret": uuid.uuid4().hex * 2}
    p = PlatformProcess(tmp_path_factory.mktemp("platform-iso"), storage_url="s3://iso-repo/repository",
                        storage_options=options, name="platform-iso")
    p.options = options
    yield p
    p.stop()


def test_no_secret_reaches_a_session_or_a_job_on_s3(s3_secret_platform):
    p = s3_secret_platform
    needles = _needles(p, p.options)
    assert len(needles) >= 4
    _check(_search_session(p), needles, "bob's session (s3)")
    _check(_search_job(p), needles, "bob's job (s3)")


def test_no_secret_reaches_a_session_or_a_job_on_file(platform):
    needles = _needles(platform, {})
    _check(_search_session(platform), needles, "bob's session (file)")
    _check(_search_job(platform), needles, "bob's job (file)")

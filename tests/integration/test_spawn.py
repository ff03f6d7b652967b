"""Spawning sessions on the real platform: REST and form, access rules, mounts, S3."""

import json
import re

import pytest

from tests.support import login

pytestmark = pytest.mark.integration

ALICE_DATA = ["p-2026-001/sem-nanowires", "p-2025-900/sem-reference-public"]

INSPECT = r"""
import json, os, hashlib, pathlib
import dass.data
ds = dass.data.datasets()
home = pathlib.Path.home() / "datasets"
mounted = sorted(f"{p.name}/{d.name}" for p in home.iterdir() for d in p.iterdir())
first = ds[0]
names = sorted(n.rsplit("/", 1)[-1] for n in first.fs.ls("", detail=False))
data_file = next(n for n in names if n != "dataset.json")
with first.open(data_file) as f:
    digest = "sha256:" + hashlib.sha256(f.read()).hexdigest()
local = hashlib.sha256((first.path / data_file).read_bytes()).hexdigest()
try:
    first.open(data_file, "wb")
    write = "allowed"
except PermissionError as e:
    write = str(e)
print(json.dumps({
    "ids": [d.id for d in ds], "mounted": mounted, "names": names, "file": data_file,
    "digest": digest, "local": "sha256:" + local, "expected": first.metadata["checksums"].get(data_file),
    "write": write, "stack": os.environ.get("DASS_STACK"), "threads": os.environ.get("OMP_NUM_THREADS"),
    "landing": (pathlib.Path.home() / "notebooks/sem/welcome.ipynb").exists(),
}))
"""


def _check_session(p, user, chosen):
    out = json.loads(p.run_in_kernel(user, INSPECT).strip().splitlines()[-1])
    assert out["ids"] == chosen
    assert out["mounted"] == sorted(chosen)
    assert "dataset.json" in out["names"]
    assert out["digest"] == out["expected"] == out["local"]
    assert "read-only" in out["write"]
    assert out["stack"] == "sem" and out["threads"] == "1"
    assert out["landing"] is True
    return out


def test_rest_spawn_mounts_exactly_the_chosen_datasets(platform):
    r = platform.spawn("alice", {"stack": "sem", "size": "small", "datasets": ALICE_DATA})
    assert r.status_code in (201, 202), r.text
    try:
        _check_session(platform, "alice", ALICE_DATA)
        # JupyterLab opens on the stack's landing notebook
        token = platform.token_for("alice")
        r = platform.api("GET", "/users/alice", token=token)
        assert r.json()["servers"][""]["user_options"] == {
            "stack": "sem", "size": "small", "datasets": ALICE_DATA}
        import requests
        r = requests.get(f"{platform.url}/user/alice/", headers={"Authorization": f"token {token}"},
                         allow_redirects=False, timeout=30)
        assert r.status_code == 302
        assert r.headers["Location"].split("?")[0].endswith("/lab/tree/notebooks/sem/welcome.ipynb")
    finally:
        platform.stop_server("alice")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stack": "sem", "datasets": ["p-2026-001/sem-nanowires"]},
         "'p-2026-001/sem-nanowires' do not exist or you may not use them"),
        ({"stack": "sem", "datasets": ["p-9999/nothing"]}, "'p-9999/nothing' do not exist"),
        ({"stack": "nope"}, "unknown stack 'nope'; choose one of: sem, kmap, stm"),
        ({"stack": "sem", "size": "huge"}, "unknown size 'huge'; choose one of: small, medium, large"),
        ({"stack": "stm", "size": "large"}, "size 'large' is not available for stack 'stm'"),
        ({"stack": "sem", "datasets": [f"p-2026-002/d{i}" for i in range(9)]}, "too many datasets: 9 chosen, at most 8"),
        ({"stack": "sem", "gpu": "yes"}, "unknown option(s) 'gpu'"),
        ({"stack": "sem", "datasets": {"a": 1}}, "datasets must be a list"),
    ],
)
def test_rest_spawn_refuses_bad_options(platform, options, message):
    r = platform.spawn("bob", options)
    assert r.status_code == 400, r.text
    body = r.json()
    assert message in body["message"], body
    assert "Traceback" not in r.text
    model = platform.api("GET", "/users/bob").json()
    assert "" not in model["servers"]


def _form_datasets(html: str) -> set[str]:
    return set(re.findall(r'name="datasets" value="([^"]+)"', html))


def test_form_spawn_offers_only_own_and_public_data(platform):
    s = login(platform.url, "bob", platform.secrets["user_password"])
    form = s.get(f"{platform.url}/hub/spawn/bob", timeout=30)
    assert form.status_code == 200
    offered = _form_datasets(form.text)
    assert "p-2026-002/stm-au111-fast" in offered
    assert "p-2025-900/sem-reference-public" in offered
    assert not any(d.startswith("p-2026-001/") for d in offered)
    for stack in ("sem", "kmap", "stm"):
        assert f'name="stack" value="{stack}"' in form.text
    assert 'value="small"' in form.text and 'value="medium"' in form.text
    xsrf = s.cookies.get("_xsrf")

    # a forged form post with alice's dataset is refused with the message on the form
    r = s.post(f"{platform.url}/hub/spawn/bob", timeout=30, data={
        "_xsrf": xsrf, "stack": "stm", "size": "small", "datasets": ["p-2026-001/sem-nanowires"]})
    assert "p-2026-001/sem-nanowires" in r.text and "may not use them" in r.text
    assert "" not in platform.api("GET", "/users/bob").json()["servers"]

    chosen = ["p-2026-002/stm-au111-fast"]
    r = s.post(f"{platform.url}/hub/spawn/bob", timeout=30, allow_redirects=False,
               data={"_xsrf": xsrf, "stack": "stm", "size": "small", "datasets": chosen})
    assert r.status_code == 302, r.text[:300]
    try:
        platform.wait_ready("bob")
        code = ("import json, dass.data; print(json.dumps([d.id for d in dass.data.datasets()]))")
        assert json.loads(platform.run_in_kernel("bob", code).strip()) == chosen
    finally:
        platform.stop_server("bob")


def test_datasets_api_shows_only_what_the_caller_may_see(platform):
    def ids(user, **params):
        r = platform.service("GET", "api/datasets", user, params=params)
        assert r.status_code == 200, r.text
        return {d["id"] for d in r.json()["datasets"]}

    alice, bob = ids("alice"), ids("bob")
    assert "p-2026-001/sem-nanowires" in alice and "p-2026-001/sem-nanowires" not in bob
    assert "p-2026-002/stm-au111-fast" in bob and "p-2026-002/stm-au111-fast" not in alice
    assert "p-2025-900/sem-reference-public" in alice & bob
    # the public dataset under embargo is seen by its proposal's members only
    assert "p-2026-002/kmap-embargoed-public" in bob
    assert "p-2026-002/kmap-embargoed-public" not in alice
    assert ids("alice", technique="STM") == set()
    assert ids("bob", technique="STM") == {"p-2026-002/stm-au111-fast"}
    r = platform.service("GET", "api/datasets/p-2026-002/stm-au111-fast", "alice")
    assert r.status_code == 404 and r.json()["message"]
    r = platform.service("GET", "api/stacks", "alice")
    assert {s["name"] for s in r.json()["stacks"]} == {"sem", "kmap", "stm"}


def test_s3_repository_mounts_and_reads_the_same(s3_platform):
    r = s3_platform.spawn("alice", {"stack": "sem", "size": "small", "datasets": ALICE_DATA})
    assert r.status_code in (201, 202), r.text
    try:
        _check_session(s3_platform, "alice", ALICE_DATA)
    finally:
        s3_platform.stop_server("alice")


def test_embargoed_dataset_stays_hidden_until_its_date(platform, tmp_path):
    import datetime
    import subprocess
    import sys

    meta_file = platform.state / "repository" / "p-2026-002" / "kmap-embargoed-public" / "dataset.json"
    original = meta_file.read_text()

    def alice_sees():
        r = platform.service("GET", "api/datasets", "alice", params={"technique": "KMAP"})
        return "p-2026-002/kmap-embargoed-public" in {d["id"] for d in r.json()["datasets"]}

    def rescan():
        env = dict(__import__("os").environ, DASS_STATE_DIR=str(platform.state))
        r = subprocess.run([sys.executable, "-m", "dass", "--config", str(platform.config_file),
                            "catalog", "scan"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr

    assert not alice_sees()
    refused = platform.spawn("alice", {"stack": "kmap", "datasets": ["p-2026-002/kmap-embargoed-public"]})
    assert refused.status_code == 400
    try:
        meta = json.loads(original)
        meta["access"]["embargo_until"] = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
        meta_file.write_text(json.dumps(meta))
        rescan()
        assert alice_sees()
    finally:
        meta_file.write_text(original)
        rescan()
    assert not alice_sees()


def test_size_memory_limit_is_enforced(platform):
    r = platform.spawn("alice", {"stack": "stm", "size": "small", "datasets": []})
    assert r.status_code in (201, 202), r.text
    try:
        code = (
            "import resource\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
            "try:\n"
            "    block = bytearray(6 * 1024**3)\n"
            "    print('allocated', soft)\n"
            "except MemoryError:\n"
            "    print('MemoryError', soft)\n"
        )
        out = platform.run_in_kernel("alice", code).split()
        assert out[0] == "MemoryError"
        assert int(out[1]) == (2 + 2) * 1024**3  # size "small" (2 GiB) + headroom (2 GiB)
    finally:
        platform.stop_server("alice")


def _progress_events(platform, user: str) -> list[dict]:
    """The events of JupyterHub's progress API for ``user``'s server, until ready or failed."""
    import requests

    events = []
    with requests.get(f"{platform.url}/hub/api/users/{user}/server/progress", stream=True,
                      headers={"Authorization": f"token {platform.admin_token}"},
                      timeout=platform.spawn_timeout) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if line.startswith(b"data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("failed") or events[-1].get("ready"):
                    break
    return events


def _spawn_failure(platform, user: str, options: dict) -> list[dict]:
    """Spawn, expect a failure and return the progress API's events, the failure last."""
    r = platform.api("POST", f"/users/{user}/server", json=options)
    if r.status_code not in (201, 202):  # it failed within the hub's slow-spawn wait
        assert r.status_code == 500, r.text
        assert "Traceback" not in r.text
        answered = r.json()["message"]
    else:
        answered = None
    events = _progress_events(platform, user)
    failed = events[-1]
    assert failed.get("failed") is True, events
    if answered is not None:
        assert answered in failed["message"]
    assert "" not in platform.api("GET", f"/users/{user}").json()["servers"]
    return events


def test_a_failed_spawn_tells_its_reason(platform):
    from tests.integration.conftest import BROKEN_STACK, TEST_GROUP

    platform.token_for("carol")  # creates the user
    r = platform.api("POST", f"/groups/{TEST_GROUP}")
    assert r.status_code in (201, 409), r.text
    r = platform.api("POST", f"/groups/{TEST_GROUP}/users", json={"users": ["carol"]})
    assert r.status_code == 200, r.text
    env = platform.state / "broken-env"

    # 1. the stack's environment does not exist on this machine
    message = _spawn_failure(platform, "carol", {"stack": BROKEN_STACK})[-1]["message"]
    assert f"the stack '{BROKEN_STACK}' cannot start on this machine" in message, message
    assert f"c.StackRegistry.stacks['{BROKEN_STACK}']['environment']" in message
    assert str(platform.state) not in message  # no internal folder shown to the user

    # 2. it exists, but its server exits while starting, after the hub's slow-spawn wait
    # (10 s), so the REST spawn is accepted and the progress API streams the steps
    (env / "bin").mkdir(parents=True)
    script = env / "bin" / "jupyterhub-singleuser"
    script.write_text("#!/bin/sh\necho 'broken environment: no jupyterlab here' >&2\nsleep 12\nexit 3\n")
    script.chmod(0o755)
    events = _spawn_failure(platform, "carol", {"stack": BROKEN_STACK})
    assert "ended with exit status 3 while starting" in events[-1]["message"], events
    steps = [e["message"] for e in events[:-1]]
    assert any(m.startswith("Starting JupyterLab (stack broken, size small)") for m in steps), events


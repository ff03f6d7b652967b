"""Sessions and jobs in podman containers on one machine, on the real platform.

``dass up`` with ``DassContainerSpawner`` and ``ContainerExecutor``, every stack's image set to
the CI test image (the base image: Debian, Python, JupyterLab, papermill, dass; no torch),
built by :func:`tests.support.build_test_image` once per change of its inputs. alice's session
runs in a container as her own account and reads her dataset through the data gateway from a
kernel; her job runs in a container and completes; bob's container can reach neither her data
(gateway 404), nor the repository, nor any credential. Skipped with the reason where podman
cannot run (not root, not installed: ``make podman``). ``DASS_TEST_STACK_IMAGES=1`` runs sem
and kmap in their own images instead (built by ``make images``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support import (
    ARTIFACTS,
    TEST_ACCOUNT_IDS,
    TEST_ACCOUNT_PREFIX,
    PlatformProcess,
    build_test_image,
    podman_missing,
    remove_test_accounts,
    wait_for,
)

pytestmark = pytest.mark.integration

REASON = podman_missing()
if REASON:
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=REASON)]

ALICE_DATASET = "p-2026-001/sem-nanowires"
MISSING_IMAGE = "localhost/dass-never-built"


def containers(label: str) -> list[str]:
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"],
                         capture_output=True, text=True).stdout
    return out.split()


@pytest.fixture(scope="module")
def test_image():
    ARTIFACTS.mkdir(exist_ok=True)
    tag, seconds = build_test_image(ARTIFACTS / "test-image-build.log")
    print(f"\ntest image {tag}: ready in {seconds:.1f} s")
    return tag


def stack_images() -> bool:
    """``DASS_TEST_STACK_IMAGES=1``: run sem and kmap in their own images (``make images``)
    instead of the test image; the test is skipped when they are not built."""
    return os.environ.get("DASS_TEST_STACK_IMAGES", "") not in ("", "0")


@pytest.fixture(scope="module")
def container_platform(test_image):
    base = Path(tempfile.mkdtemp(prefix="dass-containers-", dir="/tmp"))
    if stack_images():
        from dass.hub.container import _dass_version

        for name in ("sem", "kmap"):
            if subprocess.run(["podman", "image", "exists", f"dass-stack-{name}:{_dass_version()}"]).returncode:
                pytest.skip(f"DASS_TEST_STACK_IMAGES: dass-stack-{name}:{_dass_version()} is not built (make images)")
        stacks = {name: {} for name in ("sem", "kmap")}  # their own images, tagged with the dass version
    else:
        stacks = {name: {"image": test_image} for name in ("sem", "kmap")}
    stacks["stm"] = {"image": MISSING_IMAGE}  # a stack whose image was never built
    extra = "\n".join([
        f"c.UserAccounts.name_prefix = {TEST_ACCOUNT_PREFIX!r}",
        f"c.UserAccounts.uid_min = {TEST_ACCOUNT_IDS[0]}",
        f"c.UserAccounts.uid_max = {TEST_ACCOUNT_IDS[1]}",
        "c.JupyterHub.spawner_class = 'dass.hub.container.DassContainerSpawner'",
        "c.JobManager.executor_class = 'dass.jobs.container.ContainerExecutor'",
        f"c.StackRegistry.stacks = {stacks!r}",
    ])
    p = None
    try:
        p = PlatformProcess(base / "state", name="platform-containers", extra_config=extra, accounts=True)
        yield p
    finally:
        if p is not None:
            for user in ("alice", "bob"):
                try:
                    p.stop_server(user)
                except Exception:  # the platform may be gone: the containers are removed below
                    pass
            p.stop()
        for name in containers("dass.kind"):
            if name.startswith(("dass-session-" + TEST_ACCOUNT_PREFIX, "dass-job-")):
                subprocess.run(["podman", "rm", "--force", name], capture_output=True)
        remove_test_accounts()
        shutil.rmtree(base, ignore_errors=True)


READ_DATASET = """
import json, os
import dass.data
ds = dass.data.datasets()
d = ds[%r]
names = sorted(d.fs.ls("", detail=False))
with d.fs.open(names[0] if not names[0].endswith("dataset.json") else names[1], "rb") as f:
    head = f.read(8)
print(json.dumps({"uid": os.getuid(), "names": names, "bytes": len(head),
                  "home": os.environ["HOME"], "repo": os.path.exists(%r),
                  "env": sorted(os.environ)}))
"""


def test_alice_session_runs_in_a_container_and_reads_her_dataset(container_platform):
    p = container_platform
    started = time.monotonic()
    r = p.spawn("alice", {"stack": "sem", "size": "small", "datasets": [ALICE_DATASET]})
    assert r.status_code in (201, 202), r.text
    print(f"\ncontainer session of alice ready in {time.monotonic() - started:.1f} s")
    names = containers("dass.kind=session")
    assert any(n.startswith(f"dass-session-{TEST_ACCOUNT_PREFIX}alice") for n in names), names
    repository = str(p.state / "repository")
    out = json.loads(p.run_in_kernel("alice", READ_DATASET % (ALICE_DATASET, repository), timeout=120).strip().splitlines()[-1])
    assert TEST_ACCOUNT_IDS[0] <= out["uid"] <= TEST_ACCOUNT_IDS[1]  # her account, not root
    assert out["names"] and out["bytes"] > 0
    assert out["repo"] is False  # the repository is not in the container
    assert not [k for k in out["env"] if k.startswith(("AWS_", "DASS_STORAGE"))]
    # the container's limits are the size's (small: 1 CPU, 2 GiB)
    name = next(n for n in names if n.startswith(f"dass-session-{TEST_ACCOUNT_PREFIX}alice"))
    inspect = json.loads(subprocess.run(["podman", "inspect", name], capture_output=True, text=True).stdout)[0]
    assert inspect["HostConfig"]["Memory"] == 2 * 1024**3
    assert inspect["HostConfig"]["NanoCpus"] == 1_000_000_000


BOB_PROBE = """
import json, os, requests
url = os.environ["DASS_SERVICE_URL"].rstrip("/") + "/api/data/%s/"
r = requests.get(url, params={"op": "ls"}, headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
secrets = [k for k in os.environ if any(w in k.upper() for w in ("SECRET", "AWS", "PASSWORD", "STORAGE", "CRYPT", "PROXY_AUTH"))]
print(json.dumps({"status": r.status_code, "repo": os.path.exists(%r), "state": os.path.exists(%r),
                  "alice_home": os.path.exists(%r), "secrets": secrets}))
"""


def test_bob_container_cannot_reach_alice_data(container_platform):
    p = container_platform
    r = p.spawn("bob", {"stack": "sem", "size": "small"})
    assert r.status_code in (201, 202), r.text
    alice_home = p.state / "homes" / f"{TEST_ACCOUNT_PREFIX}alice"
    code = BOB_PROBE % (ALICE_DATASET, str(p.state / "repository"), str(p.state / "secrets.json"), str(alice_home))
    out = json.loads(p.run_in_kernel("bob", code, timeout=120).strip().splitlines()[-1])
    assert out == {"status": 404, "repo": False, "state": False, "alice_home": False, "secrets": []}, out


def test_job_runs_in_a_container_and_completes(container_platform):
    p = container_platform
    body = {"notebook": "sem/service/image_summary.ipynb",
            "parameters": {"input_dataset": ALICE_DATASET, "max_images": 2, "thumbnail_px": 32}}
    r = p.service("POST", "api/jobs", "alice", json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    seen: set[str] = set()

    def done():
        seen.update(containers("dass.kind=job"))
        job = p.service("GET", f"api/jobs/{job_id}", "alice").json()
        return job if job["status"] in ("COMPLETED", "FAILED", "STOPPED") else None

    job = wait_for(done, 300, f"job {job_id}", interval=0.5)
    log = p.service("GET", f"api/jobs/{job_id}/log", "alice").text
    assert job["status"] == "COMPLETED", (job, log[-3000:])
    assert f"dass-job-{job_id}" in seen  # it ran in its container…
    assert f"dass-job-{job_id}" not in containers("dass.kind=job")  # …which is gone now
    outputs = {o["path"] for o in p.service("GET", f"api/jobs/{job_id}/outputs", "alice").json()["outputs"]}
    assert "output/summary.csv" in outputs


def test_a_stack_without_its_image_says_so(container_platform):
    from tests.integration.test_spawn import _spawn_failure

    p = container_platform
    p.token_for("carol")
    message = _spawn_failure(p, "carol", {"stack": "stm"})[-1]["message"]
    assert "the stack 'stm' cannot start on this machine" in message, message
    assert "make images" in message and MISSING_IMAGE in message
    assert not [n for n in containers("dass.kind=session") if "carol" in n]


LIMITS_PROBE = r"""
import json, multiprocessing, os, time
def spin(seconds):
    end = time.time() + seconds
    while time.time() < end:
        pass
def read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return None
t0 = time.time()
procs = [multiprocessing.Process(target=spin, args=(3,)) for _ in range(2)]
[p.start() for p in procs]; [p.join() for p in procs]
wall = time.time() - t0
cpu = os.times().children_user + os.times().children_system
print(json.dumps({"wall": wall, "cpu": cpu, "pids_max": read("/sys/fs/cgroup/pids/pids.max") or read("/sys/fs/cgroup/pids.max"),
                  "quota": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or read("/sys/fs/cgroup/cpu.max")}))
"""


def test_size_limits_are_enforced_by_the_kernel(test_image):
    """What this machine's kernel enforces of a size in a container: memory (the OOM killer
    ends a process over it), CPU (a CFS quota: two busy processes get at most the size's
    CPUs), processes (pids.max). The figures are printed for the README."""
    from dass.stacks.containers import ContainerRun, podman_run_argv

    def run(name, argv, **limits):
        c = ContainerRun(name=name, image=test_image, argv=argv, user="65534:65534", **limits)
        cmd = [a for a in podman_run_argv(c, detach=False)]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        finally:
            subprocess.run(["podman", "rm", "--force", "--ignore", name], capture_output=True)

    over = run("dass-limits-memory", ("python", "-c", "b = bytearray(400 * 1024**2); print('not limited')"),
               mem_bytes=128 * 1024**2)
    assert over.returncode == 137 and "not limited" not in over.stdout, (over.returncode, over.stderr[-500:])
    within = run("dass-limits-memory-ok", ("python", "-c", "b = bytearray(32 * 1024**2); print('ok')"),
                 mem_bytes=128 * 1024**2)
    assert within.returncode == 0 and "ok" in within.stdout, within.stderr[-500:]

    done = run("dass-limits-cpu", ("python", "-c", LIMITS_PROBE), cpu=0.5, pids_limit=64)
    assert done.returncode == 0, done.stderr[-1000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nlimits in a container (cpu 0.5, pids 64): {out}")
    assert out["pids_max"] == "64"
    assert out["quota"] in ("50000", "50000 100000")
    assert out["cpu"] <= 0.5 * out["wall"] * 1.3 + 0.3, out  # two busy processes, half a CPU


def test_cancel_stops_and_removes_the_job_container(container_platform):
    from tests.integration.test_jobs import SLEEPER, submit, wait_job

    p = container_platform
    job = submit(p, "alice", {"notebook": {"upload": SLEEPER, "name": "sleep.ipynb"},
                              "parameters": {"seconds": 120}, "stack": "kmap"})
    name = f"dass-job-{job['id']}"
    wait_job(p, "alice", job["id"], statuses=("IN_PROGRESS",))
    wait_for(lambda: name in containers("dass.kind=job"), 60, "the job's container")
    r = p.service("POST", f"api/jobs/{job['id']}/cancel", "alice")
    assert r.status_code == 202, r.text
    done = wait_job(p, "alice", job["id"], timeout=90)
    assert done["status"] == "STOPPED" and done["reason"] == "cancelled by alice", done
    assert wait_for(lambda: name not in containers("dass.kind=job"), 30, "the container to be removed") is True

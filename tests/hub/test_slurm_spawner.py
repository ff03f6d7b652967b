"""The Slurm back end of sessions (dass.hub.slurm): the request by value, then a real spawn
through a real hub onto the one-node Slurm cluster, as the user's own Unix account: it waits in
the queue (and says so on the progress stream), becomes ready, runs a kernel as that account,
and stops.
"""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from dass.hub.slurm import slurm_request, slurm_runtime
from dass.stacks.registry import StackRegistry
from dass.stacks.runtime import limits
from dass.stacks.session import SessionSpec
from tests.slurm_support import slurm_cluster  # noqa: F401 - fixture


def _spec(size: str = "small", env=None) -> SessionSpec:
    reg = StackRegistry()
    return SessionSpec(user="alice", server_name="", stack="sem", size=size, datasets=(), image="",
                       environment="", default_url="/lab", limits=limits(reg.all_sizes[size]),
                       service_url="http://127.0.0.1:1/", env=env or {"DASS_STACK": "sem"})


def test_the_size_becomes_the_batch_request():
    small = _spec("small", {"DASS_STACK": "sem", "DASS_SERVICE_URL": "u", "DASS_SIZE": "small"})
    reg = StackRegistry().all_sizes["small"]
    assert slurm_request(small) == {
        "req_partition": "",
        "req_nprocs": str(max(1, int(-(-reg.cpu // 1)))),
        "req_memory": f"{int(reg.mem_gib * 1024)}M",
        "req_runtime": "08:00:00",
        "req_gres": "",
        "req_keepvars_extra": "DASS_SERVICE_URL,DASS_SIZE,DASS_STACK",
    }
    assert slurm_request(small, partition="gpu", gpus=2, hours=0.5)["req_gres"] == "gpu:2"
    assert slurm_runtime(36.5) == "36:30:00"


# ---------------------------------------------------------------- a real spawn


@pytest.fixture(scope="module")
def slurm_platform(slurm_cluster, tmp_path_factory):
    """The platform as root with per-user accounts (test prefix and ids) and the Slurm spawner;
    its state in a folder every account may enter (pytest's own tmp folder is 0700)."""
    from pathlib import Path

    from tests.support import accounts_platform

    from tests.slurm_support import job_python

    python = job_python()
    if not python:
        pytest.skip("no Python the test users may run: make slurm (as root) builds /opt/dass-jobs-venv")
    prefix = Path(python).parent.parent  # the venv whose bin/ has jupyterhub-singleuser
    config = "\n".join([
        'c.JupyterHub.spawner_class = "dass.hub.slurm.DassSlurmSpawner"',
        f"c.DassSlurmSpawner.slurm_conf = {str(slurm_cluster.conf)!r}",
        f"c.DassSlurmSpawner.session_prefix = {str(prefix)!r}",
        'c.DassSlurmSpawner.partitions_by_group = {"beamline": "gpu"}',
        'c.DassSlurmSpawner.partition = "debug"',
        "c.DassSlurmSpawner.startup_poll_interval = 0.5",
        "c.Spawner.start_timeout = 240",
        "c.Spawner.http_timeout = 120",
    ])
    with accounts_platform("platform-slurm", config) as p:
        yield p


def _progress(platform, user: str, seen: list[str], stop: threading.Event) -> None:
    import re

    import requests

    # straight to the hub: a proxy may hold a stream back until it ends
    hub_port = re.search(r"c.Platform.hub_port = (\d+)", platform.config_file.read_text()).group(1)
    url = f"http://127.0.0.1:{hub_port}/hub/api/users/{user}/server/progress"
    with requests.get(url, headers={"Authorization": f"token {platform.admin_token}"}, stream=True,
                      timeout=300) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                seen.append(json.loads(line[5:]).get("message", ""))
            if stop.is_set():
                return


def test_a_session_waits_in_the_queue_starts_as_its_user_and_stops(slurm_platform, slurm_cluster):
    import pwd

    from tests.support import TEST_ACCOUNT_PREFIX

    hub_user = "alice"  # of proposal p-2026-001 in the demo repository
    platform = slurm_platform
    platform.token_for(hub_user)
    # a job holding the whole node's memory: the session must wait in the queue
    blocker = slurm_cluster.run("sbatch", "--parsable", "--mem=0", "--exclusive", "-o", "/dev/null",
                                "--wrap", "sleep 300").strip()
    seen: list[str] = []
    stop = threading.Event()
    try:
        r = platform.api("POST", f"/users/{hub_user}/server",
                         json={"stack": "sem", "size": "small", "datasets": ["p-2026-001/sem-nanowires"]})
        assert r.status_code in (201, 202), r.text
        reader = threading.Thread(target=_progress, args=(platform, hub_user, seen, stop), daemon=True)
        reader.start()
        from tests.support import wait_for

        wait_for(lambda: any("Waiting in the Slurm queue" in m for m in seen), 120,
                 f"a queue message on the progress stream (seen: {seen})")
        slurm_cluster.run("scancel", blocker)
        platform.wait_ready(hub_user, 240)
        account = pwd.getpwnam(f"{TEST_ACCOUNT_PREFIX}{hub_user}")  # made at the first spawn
        user = account.pw_name
        jobs = slurm_cluster.run("squeue", "-h", "-u", user, "-o", "%i %T %P %C %m").split()
        mem_mib = int(StackRegistry().all_sizes["small"].mem_gib * 1024)
        assert jobs[1:4] == ["RUNNING", "debug", "1"]  # partition by group (none: the default), CPUs
        assert jobs[4] in (f"{mem_mib}M", f"{mem_mib // 1024}G")  # the size's memory
        out = platform.run_in_kernel(hub_user, (
            "import os, json, dass.data\n"
            "ds = dass.data.datasets()\n"  # no manifest on the node: the session's grant, from the gateway
            "doc = json.loads(ds[0].fs.cat('dataset.json'))\n"
            "print(os.getuid(), os.environ['DASS_STACK'], ','.join(ds.ids), doc['title'] == ds[0].title)"
        ), timeout=120)
        assert out.split()[:4] == [str(account.pw_uid), "sem", "p-2026-001/sem-nanowires", "True"]
    finally:
        stop.set()
        subprocess.run(["scancel", blocker], env=slurm_cluster.env, capture_output=True)
        platform.stop_server(hub_user, 120)
    assert slurm_cluster.run("squeue", "-h", "-u", f"{TEST_ACCOUNT_PREFIX}{hub_user}").strip() == ""


def test_the_form_reads_the_queue_state_of_a_partition(slurm_cluster):
    from dass.hub.slurm import DassSlurmSpawner

    spawner = DassSlurmSpawner(slurm_conf=str(slurm_cluster.conf))
    assert spawner.queue_state("debug") == {"partition": "debug", "idle_nodes": 1, "waiting_jobs": 0}
    held = slurm_cluster.run("sbatch", "--parsable", "--mem=0", "--exclusive", "-p", "debug", "-o", "/dev/null",
                             "--wrap", "sleep 300").strip()
    waiting = slurm_cluster.run("sbatch", "--parsable", "--mem=0", "--exclusive", "-p", "debug", "-o", "/dev/null",
                                "--wrap", "sleep 300").strip()
    try:
        from tests.support import wait_for

        wait_for(lambda: spawner.queue_state("debug") == {"partition": "debug", "idle_nodes": 0, "waiting_jobs": 1},
                 30, f"the queue state with one job running and one waiting ({spawner.queue_state('debug')})")
    finally:
        slurm_cluster.run("scancel", held, waiting)
    assert DassSlurmSpawner(slurm_conf="/nonexistent/slurm.conf").queue_state("debug") == {}  # no answer: no note

"""dass.slurm: the dask-jobqueue cluster of a Slurm session. The preset by value and its errors,
then the real thing on the one-node Slurm cluster: two users' sessions (batch jobs, as their
own Unix accounts, in two partitions) each build the cluster, scale to one worker, compute on
it and close it; each worker ran as its user in its session's partition, and no job is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dass.slurm
from dass.errors import DassError
from dass.slurm import DaskJobqueueMissing, SlurmSessionError, cluster_options
from tests.slurm_support import job_python, slurm_cluster, unix_user  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
#: seconds for a session job to start, scale out, compute and close on a loaded 2-core machine
SESSION_TIMEOUT = 300
#: seconds the session waits for its worker's batch job to start and connect
WORKER_TIMEOUT = 180

SESSION = {"SLURM_JOB_ID": "17", "SLURM_JOB_PARTITION": "gpu", "SLURM_CPUS_PER_TASK": "3",
           "SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_NODE": "6144"}


def test_the_preset_is_the_sessions_own_job():
    environ = dict(SESSION)
    opts = cluster_options(environ, python="/opt/dass/bin/python", home="/home/alice", host="node3")
    assert opts == {
        "queue": "gpu",
        "cores": 3,
        "processes": 1,
        "memory": "6144MiB",
        "python": "/opt/dass/bin/python",
        "log_directory": "/home/alice/.dass/dask-logs",
        "scheduler_options": {"host": "node3", "dashboard_address": ":0"},
    }
    assert environ == SESSION  # not modified


def test_the_preset_falls_back_on_what_slurm_always_sets():
    env = {"SLURM_JOB_ID": "17", "SLURM_CPUS_ON_NODE": "2", "SLURM_MEM_PER_CPU": "1000"}
    opts = cluster_options(env, python="p", home="/h", host="n")
    # no partition named: Slurm's default (dask-jobqueue's setting, None, passes no -p)
    assert (opts["queue"], opts["cores"], opts["memory"]) == (None, 2, "2000MiB")


def test_every_argument_can_be_overridden():
    opts = cluster_options(SESSION, python="p", home="/h", host="n", cores=8, memory="16GiB", queue="long",
                           walltime="02:00:00", scheduler_options={"dashboard_address": ":8787"})
    assert (opts["cores"], opts["memory"], opts["queue"], opts["walltime"]) == (8, "16GiB", "long", "02:00:00")
    assert opts["scheduler_options"] == {"host": "n", "dashboard_address": ":8787"}


def test_outside_a_slurm_job_the_error_says_so(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(SlurmSessionError, match="outside a Slurm batch job") as err:
        dass.slurm.cluster()
    assert isinstance(err.value, DassError) and "start a session on the Slurm back end" in err.value.user_message


@pytest.mark.parametrize("missing, fix", [("SLURM_MEM_PER_NODE", "memory="), ("SLURM_CPUS_PER_TASK", "cores=")])
def test_a_job_that_names_too_little_asks_for_the_argument(missing, fix):
    env = {k: v for k, v in SESSION.items() if k != missing and not (fix == "cores=" and k == "SLURM_CPUS_ON_NODE")}
    with pytest.raises(SlurmSessionError, match=fix):
        cluster_options(env, python="p", home="/h", host="n")
    assert cluster_options(env, python="p", home="/h", host="n", **{fix[:-1]: 1})[fix[:-1]] == 1


def test_without_dask_jobqueue_the_error_names_the_extra(monkeypatch):
    for name, value in SESSION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed: import fails
    with pytest.raises(DaskJobqueueMissing, match=r"dass\[dask\]") as err:
        dass.slurm.cluster()
    assert isinstance(err.value, ImportError) and isinstance(err.value, DassError)


# ---------------------------------------------------------------- the real thing

#: the notebook's code, run by a session job as its user: scale out to one worker, compute there
NOTEBOOK = textwrap.dedent("""
    import json, os, subprocess, sys
    import dass.slurm
    from distributed import Client

    def where(n):
        return {"sum": sum(range(n)), "uid": os.getuid(), "partition": os.environ["SLURM_JOB_PARTITION"],
                "job": os.environ["SLURM_JOB_ID"]}

    cluster = dass.slurm.cluster()
    cluster.scale(1)
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=float(sys.argv[1]))
        seen = client.submit(where, 1000).result()
    cluster.close()
    seen["session_job"] = os.environ["SLURM_JOB_ID"]
    # jobs that still hold the node (a cancelled one may linger a moment as COMPLETING)
    seen["queue_after_close"] = subprocess.run(["squeue", "-h", "-u", os.environ["USER"], "-t", "PD,CF,R", "-o", "%i"],
                                               capture_output=True, text=True).stdout.split()
    seen["script"] = cluster.job_script()
    print("RESULT " + json.dumps(seen), flush=True)
""")


@pytest.fixture(scope="module")
def dask_python():
    """A Python the test users may run that has the dask extra (this checkout's dass first)."""
    python = job_python()
    if not python:
        pytest.skip("no Python the test users may run: make slurm (as root) builds /opt/dass-jobs-venv")
    probe = subprocess.run(["sudo", "-n", "-u", "nobody", "env", f"PYTHONPATH={_pythonpath()}", python, "-c",
                            "import dask_jobqueue, distributed"], capture_output=True, text=True, cwd="/")
    if probe.returncode:
        pytest.skip(f"{python} has no dask-jobqueue for the test users (make slurm installs the dask extra "
                    f"into /opt/dass-jobs-venv): {probe.stderr.strip().splitlines()[-1:]}")
    return python


def _pythonpath() -> str:
    # this checkout's dass before the job Python's own install (which may be another checkout's)
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def _session(cluster, user, partition: str, python: str) -> str:
    """A session's batch job, as ``user`` in ``partition``, that runs :data:`NOTEBOOK`; its id."""
    home = Path(user.pw_dir)
    script = home / "notebook.py"
    script.write_text(NOTEBOOK)
    os.chown(script, user.pw_uid, user.pw_gid)
    argv = ["sudo", "-n", "-u", user.pw_name, "env", f"SLURM_CONF={cluster.conf}", f"PYTHONPATH={_pythonpath()}",
            f"HOME={home}", f"USER={user.pw_name}",
            "sbatch", "--parsable", "-p", partition, "--cpus-per-task=1", "--mem=512M", "-D", str(home),
            "-o", str(home / "session.out"), "--wrap", f"{python} {script} {WORKER_TIMEOUT}"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split(";")[0]


def test_a_session_scales_out_as_its_user_in_its_partition(slurm_cluster, dask_python):
    from tests.support import wait_for

    with unix_user("dkalice", home=True) as alice, unix_user("dkbob", home=True) as bob:
        placed = {alice.pw_name: (alice, "gpu"), bob.pw_name: (bob, "debug")}
        jobs = {name: _session(slurm_cluster, user, part, dask_python) for name, (user, part) in placed.items()}
        wait_for(lambda: not slurm_cluster.run("squeue", "-h", "-j", ",".join(jobs.values()), "-o", "%i").split(),
                 SESSION_TIMEOUT, f"the sessions {jobs} to scale out and end")
        for name, (user, partition) in placed.items():
            home = Path(user.pw_dir)
            out = (home / "session.out").read_text()
            lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
            assert lines, f"session of {name}:\n{out}"
            seen = json.loads(lines[-1][len("RESULT "):])
            assert seen["sum"] == sum(range(1000))
            assert seen["uid"] == user.pw_uid  # the worker ran as the user's Unix account
            assert seen["partition"] == partition  # ... in the session's partition
            assert seen["job"] != seen["session_job"] == jobs[name]  # as a batch job of its own
            assert seen["queue_after_close"] == [jobs[name]]  # close() cancelled the worker's job
            assert "--cpus-per-task=1" in seen["script"] and f"-p {partition}" in seen["script"]
            logs = list((home / dass.slurm.LOG_FOLDER).glob("*.err"))  # dask's workers log to stderr
            assert logs and all(p.stat().st_uid == user.pw_uid for p in logs), logs
        # no job of theirs is left waiting or running (a cancelled one may still be COMPLETING)
        left = slurm_cluster.run("squeue", "-h", "-u", f"{alice.pw_name},{bob.pw_name}", "-t", "PD,CF,R", "-o", "%i %j")
        assert left.strip() == ""

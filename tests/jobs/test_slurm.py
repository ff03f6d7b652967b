"""The Slurm executor: the batch script by value, then real jobs on a one-node Slurm cluster
(tests/slurm_support.py), each as its owner's own Unix account: complete, fail with a reason,
cancel, two users at once, and a service restart mid-job (0 lost, 0 run twice); parameter
sweeps as one job array (each element as its owner, with its own parameter; cancel of one
element; another user's sweep out of reach; a restart mid-sweep).

Until per-user accounts (dass.data.accounts) and the data gateway land, the test users are
made with useradd (prefix ``dasst``, removed afterwards) and the repository is a file://
folder they may write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dass.jobs.slurm import (
    SlurmExecutor,
    array_tasks,
    build_array_script,
    build_batch_script,
    choose_partition,
    exit_status,
    parse_scontrol,
    slurm_time,
)
from dass.jobs.spec import ExecutionSpec
from tests.jobs.conftest import execution_spec, runner_spec
from tests.slurm_support import job_python, shared_folder, slurm_cluster, unix_user  # noqa: F401 - fixture

SPEC = ExecutionSpec(
    job_id="j1",
    argv=("/opt/py/bin/python", "-m", "dass.jobs.runner", "/jobs/j1"),
    cwd="/jobs/j1",
    env={"HOME": "/jobs/j1", "DASS_TOKEN": "t o'k", "OMP_NUM_THREADS": "2"},
    cpu=1.5,
    mem_limit_bytes=6 * 1024**3,
    timeout_seconds=3601,
    run_as="dass-alice",
)


# ---------------------------------------------------------------- the batch script, by value


def _options(script: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH ")]


def test_batch_script_carries_the_job_id_folder_size_and_time():
    script = build_batch_script(SPEC, partition="short", extra_options=["--account=fac"])
    assert _options(script) == [
        "--job-name=dass-j1",
        "--comment=dass-job:j1",
        "--chdir=/jobs/j1",
        "--output=/jobs/j1/runner.out",
        "--open-mode=append",
        "--export=NONE",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=2",  # 1.5 CPUs: whole CPUs, rounded up
        "--time=0-01:01:00",  # 3601 s: whole minutes, rounded up
        "--mem=6144M",
        "--partition=short",
        "--account=fac",
    ]
    assert script.startswith("#!/bin/sh\n")
    assert "ulimit -v 6291456\n" in script


def test_batch_script_gives_the_job_exactly_its_environment():
    """env -i: no variable of the service or of sbatch reaches the runner; values are quoted."""
    last = build_batch_script(SPEC).splitlines()[-1]
    assert last == (
        "exec /usr/bin/env -i HOME=/jobs/j1 'DASS_TOKEN=t o'\"'\"'k' OMP_NUM_THREADS=2 "
        "/opt/py/bin/python -m dass.jobs.runner /jobs/j1"
    )
    out = subprocess.run(["sh", "-c", last.replace("exec /usr/bin/env -i", "/usr/bin/env -i").replace(
        " /opt/py/bin/python -m dass.jobs.runner /jobs/j1", " /usr/bin/env")],
        capture_output=True, text=True, env={"SECRET": "x"}).stdout
    assert dict(line.split("=", 1) for line in out.splitlines()) == SPEC.env


def test_batch_script_without_memory_limit_or_partition():
    spec = dataclasses.replace(SPEC, mem_limit_bytes=None, timeout_seconds=30)
    script = build_batch_script(spec, export="NIL")
    opts = _options(script)
    assert "--export=NIL" in opts and "--time=0-00:01:00" in opts
    assert not [o for o in opts if o.startswith(("--mem", "--partition"))] and "ulimit" not in script


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cwd": "/jobs/a\n#SBATCH --uid=0"}, "line break"),
        ({"env": {"BAD NAME": "x"}}, "not valid shell names"),
    ],
)
def test_batch_script_refuses_what_would_break_it(change, message):
    with pytest.raises(ValueError, match=message):
        build_batch_script(dataclasses.replace(SPEC, **change))
    with pytest.raises(ValueError, match="NONE or NIL"):
        build_batch_script(SPEC, export="ALL")


def test_partition_by_hub_group_first_match_in_configured_order():
    rules = {"staff": "long", "beamline": "gpu"}
    assert choose_partition(["beamline", "staff"], rules, "short") == "long"
    assert choose_partition(["p-2026-001"], rules, "short") == "short"
    ex = SlurmExecutor(partition="short", partitions_by_group=rules)
    assert ex.partition_for(dataclasses.replace(SPEC, groups=("beamline",))) == "gpu"
    assert ex.partition_for(SPEC) == "short"


def test_one_placement_setting_places_sessions_and_jobs_and_each_may_differ():
    from traitlets.config import Config

    from dass.hub.slurm import DassSlurmSpawner

    config = Config({"SlurmPlacement": {"partition": "short", "partitions_by_group": {"staff": "long"}},
                     "SlurmExecutor": {"partition": "batch"}})
    session, jobs = DassSlurmSpawner(config=config), SlurmExecutor(config=config)
    assert (session.partition, jobs.partition) == ("short", "batch")
    assert session.partition_for_groups(["staff"]) == jobs.partition_for_groups(["staff"]) == "long"
    assert jobs.partition_for(SPEC) == "batch"


def test_slurm_states_map_to_exit_statuses():
    assert [exit_status(s, "0:0") for s in ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED")] == [None] * 4
    assert exit_status("COMPLETED", "0:0") == 0
    assert exit_status("FAILED", "2:0") == 2
    assert exit_status("CANCELLED by 0", "0:9") == -9
    assert exit_status("OUT_OF_MEMORY", "0:125") == -125
    assert exit_status("NODE_FAIL", "0:0") == -1
    assert slurm_time(1) == "0-00:01:00" and slurm_time(90000) == "1-01:00:00"
    jobs = parse_scontrol("JobId=3 JobName=dass-a UserId=dasstx(1001) JobState=RUNNING Comment=dass-job:a\n\n")
    assert jobs["3"]["UserId"] == "dasstx(1001)" and jobs["3"]["Comment"] == "dass-job:a"


def _elements(n: int = 3) -> list[ExecutionSpec]:
    return [dataclasses.replace(SPEC, job_id=f"j{i}", cwd=f"/jobs/j{i}", argv=(*SPEC.argv[:3], f"/jobs/j{i}"),
                                env={**SPEC.env, "HOME": f"/jobs/j{i}", "DASS_JOB_ID": f"j{i}"},
                                sweep_id="s1", sweep_index=i) for i in range(n)]


def test_a_sweep_is_one_array_script_each_task_running_exactly_its_element():
    specs = _elements()
    script = build_array_script(specs, partition="short", max_running=2)
    opts = _options(script)
    assert opts[:5] == ["--job-name=dass-sweep-s1", "--comment=dass-sweep:s1", "--array=0-2%2", "--chdir=/jobs",
                        "--output=/dev/null"]
    assert opts[5:] == _options(build_batch_script(SPEC, partition="short"))[5:]  # same size, time, partition
    # run the script's body as each task would (sh, SLURM_ARRAY_TASK_ID), echoing what it would exec
    body = "\n".join(line for line in script.splitlines() if not line.startswith(("#", "ulimit")))
    body = body.replace("cd /jobs/", ": /jobs/").replace("exec >>", ": ").replace("exec /usr/bin/env -i", "exec /bin/echo")
    for spec in specs:
        out = subprocess.run(["sh", "-c", body], capture_output=True, text=True,
                             env={"SLURM_ARRAY_TASK_ID": str(spec.sweep_index)})
        assert out.returncode == 0 and f"DASS_JOB_ID={spec.job_id} " in out.stdout
        assert out.stdout.rstrip().endswith(f"dass.jobs.runner {spec.cwd}")
    out = subprocess.run(["sh", "-c", body], capture_output=True, text=True, env={"SLURM_ARRAY_TASK_ID": "7"})
    assert out.returncode == 1 and "sweep s1 has no element 7" in out.stderr


def test_an_array_of_some_elements_names_their_indexes_and_refuses_unlike_elements():
    specs = _elements(6)
    assert "--array=0,2-3,5" in _options(build_array_script([specs[i] for i in (5, 0, 2, 3)]))
    with pytest.raises(ValueError, match="differs from job j0 in run_as"):
        build_array_script([specs[0], dataclasses.replace(specs[1], run_as="dass-bob")])
    with pytest.raises(ValueError, match="its own index"):
        build_array_script([specs[0], dataclasses.replace(specs[1], sweep_index=0)])
    with pytest.raises(ValueError, match="not an element of a sweep"):
        build_array_script([SPEC])


def test_array_tasks_are_found_pending_in_their_array_and_then_by_their_own_record():
    text = ("JobId=9 ArrayJobId=9 ArrayTaskId=2-3%2 JobName=dass-sweep-s JobState=PENDING\n"
            "JobId=10 ArrayJobId=9 ArrayTaskId=0 JobName=dass-sweep-s JobState=RUNNING\n"
            "JobId=11 ArrayJobId=9 ArrayTaskId=1 JobName=dass-sweep-s JobState=COMPLETED\n")
    jobs = parse_scontrol(text)
    assert [jobs[f"9_{i}"]["JobState"] for i in range(4)] == ["RUNNING", "COMPLETED", "PENDING", "PENDING"]
    assert array_tasks("0-4:2%1") == [0, 2, 4] and array_tasks("(null)") == []


# ---------------------------------------------------------------- real jobs on a real Slurm


@pytest.fixture(scope="module")
def users():
    with unix_user("alice") as alice, unix_user("bob") as bob:
        yield {"alice": alice, "bob": bob}


@pytest.fixture(scope="module")
def python_for_jobs():
    python = job_python()
    if not python:
        pytest.skip("no Python the test users may run: make slurm (as root) builds /opt/dass-jobs-venv")
    return python


@pytest.fixture(scope="module")
def place(slurm_cluster, users, runner_repo):
    """A jobs folder users may traverse and a repository copy the test users may write."""
    base = shared_folder("dass-slurm-jobs-")
    repo = base / "repository"
    # the seeded datasets only: results other job tests left in the shared repository (some
    # deliberately broken) are not this module's
    shutil.copytree(runner_repo, repo, ignore=lambda folder, names: ["results"] if Path(folder) == Path(runner_repo) else [])
    subprocess.run(["chmod", "-R", "a+rwX", str(repo)], check=True)
    for shared in ("results", "results/.runs"):  # every user's job adds its folder here
        (repo / shared).mkdir(exist_ok=True)
        os.chmod(repo / shared, 0o1777)
    os.chmod(base, 0o755)
    yield base, repo
    shutil.rmtree(base, ignore_errors=True)


def _executor(cluster) -> SlurmExecutor:
    return SlurmExecutor(slurm_conf=str(cluster.conf), status_cache_seconds=0.2, cancel_timeout=60)


@pytest.fixture(scope="module")
def slurm_gateway(place, gateway_loop, gateway_hub, tmp_path_factory):
    """The jobs' data gateway: a real dass service on the Slurm tests' repository."""
    from tests.jobs.conftest import JobGateway, _start_gateway

    _base, repo = place
    url = f"file://{repo}"
    svc = _start_gateway(gateway_loop, gateway_hub, tmp_path_factory.mktemp("slurm-gateway"), url, {})
    yield JobGateway(svc, url)
    svc.stop()


def _job(place, gateway, user, notebook: str, python: str) -> ExecutionSpec:
    base, repo = place
    workdir = base / f"{user.pw_name}-{notebook.split('.')[0]}-{time.monotonic_ns()}"
    runner_spec(workdir, notebook=notebook, gateway=gateway)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(workdir)], check=True)
    os.chmod(workdir, 0o700)
    spec = execution_spec(workdir)
    return dataclasses.replace(spec, argv=(python, *spec.argv[1:]), run_as=user.pw_name)


def _wait_end(ex: SlurmExecutor, handle, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = ex.status(handle)
        if code is not None:
            return code
        time.sleep(0.2)
    raise AssertionError(f"Slurm job {handle.state} still running after {timeout} s")


def _log(workdir) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')}" for p in map(Path(workdir).joinpath, ("job.log", "runner.out"))
        if p.exists()
    )


def test_a_job_completes_as_its_owner_with_exactly_its_environment(slurm_gateway, slurm_cluster, users, place, python_for_jobs,
                                                                     monkeypatch):
    from dass.jobs.runner import load_result

    monkeypatch.setenv("DASS_SERVICE_CANARY", "service-only")  # in sbatch's environment, never the job's
    ex = _executor(slurm_cluster)
    spec = _job(place, slurm_gateway, users["alice"], "runner_env.ipynb", python_for_jobs)
    handle = asyncio.run(ex.start(spec))
    assert handle.state["slurm_id"].isdigit()
    assert _wait_end(ex, handle) == 0, _log(spec.cwd)
    result = load_result(spec.cwd)
    assert result["status"] == "COMPLETED", _log(spec.cwd)
    record = ex.record(handle, fresh=True)
    assert record["JobState"] == "COMPLETED" and record["UserId"].startswith("dasstalice(")
    assert record["JobName"] == f"dass-{spec.job_id}"
    for name in ("job.log", "runner.out"):
        assert Path(spec.cwd, name).stat().st_uid == users["alice"].pw_uid
    env_file = Path(spec.cwd) / "output" / "env.json"
    seen = json.loads(env_file.read_text())
    assert seen["cwd"] == spec.cwd and seen["home"] == spec.env["HOME"] and seen["job"] == spec.job_id
    assert any(o["path"].endswith("env.json") for o in result["outputs"])  # written to the repository too
    assert env_file.stat().st_uid == users["alice"].pw_uid
    assert ex.read_log(handle) == Path(spec.cwd, "job.log").read_bytes() != b""


def test_the_job_process_sees_no_variable_but_its_own(slurm_gateway, slurm_cluster, users, place, python_for_jobs, monkeypatch):
    """The process Slurm starts has exactly spec.env (no SLURM_*, nothing of the service)."""
    monkeypatch.setenv("DASS_SERVICE_CANARY", "service-only")
    ex = _executor(slurm_cluster)
    spec = _job(place, slurm_gateway, users["bob"], "runner_env.ipynb", python_for_jobs)
    probe = Path(spec.cwd) / "environ.json"
    spec = dataclasses.replace(spec, argv=(python_for_jobs, "-c",
                               f"import json, os; json.dump(dict(os.environ), open({str(probe)!r}, 'w'))"))
    handle = asyncio.run(ex.start(spec))
    assert _wait_end(ex, handle) == 0, _log(spec.cwd)
    assert json.loads(probe.read_text()) == spec.env
    assert probe.stat().st_uid == users["bob"].pw_uid


def test_a_failing_job_ends_failed_with_its_reason(slurm_gateway, slurm_cluster, users, place, python_for_jobs):
    from dass.jobs.runner import load_result

    ex = _executor(slurm_cluster)
    spec = _job(place, slurm_gateway, users["bob"], "runner_raise.ipynb", python_for_jobs)
    handle = asyncio.run(ex.start(spec))
    _wait_end(ex, handle)
    result = ex.local_result(handle, spec.cwd)
    assert result == load_result(spec.cwd)
    assert result["status"] == "FAILED" and "ValueError: bad value" in result["reason"], _log(spec.cwd)


def test_cancel_ends_the_job_and_everything_it_started(slurm_gateway, slurm_cluster, users, place, python_for_jobs):
    ex = _executor(slurm_cluster)
    alice = users["alice"]
    spec = _job(place, slurm_gateway, alice, "runner_sleep.ipynb", python_for_jobs)
    handle = asyncio.run(ex.start(spec))
    deadline = time.monotonic() + 120
    while "about to sleep" not in ex.read_log(handle).decode(errors="replace"):
        assert time.monotonic() < deadline and ex.status(handle) is None, _log(spec.cwd)
        time.sleep(0.2)
    asyncio.run(ex.cancel(handle))
    assert ex.status(handle) is not None
    assert ex.record(handle, fresh=True)["JobState"].startswith("CANCELLED")
    left = subprocess.run(["pgrep", "-u", str(alice.pw_uid), "-f", spec.cwd], capture_output=True, text=True).stdout
    assert left == "", f"processes of the cancelled job left: {left}"


def test_two_users_run_at_once_each_as_their_own_uid(slurm_gateway, slurm_cluster, users, place, python_for_jobs):
    ex = _executor(slurm_cluster)
    specs = [_job(place, slurm_gateway, users[u], "runner_env.ipynb", python_for_jobs) for u in ("alice", "bob")]

    async def both():
        return await asyncio.gather(*(ex.start(s) for s in specs))

    handles = asyncio.run(both())
    for spec, handle, user in zip(specs, handles, ("alice", "bob")):
        assert _wait_end(ex, handle) == 0, _log(spec.cwd)
        assert ex.record(handle, fresh=True)["UserId"].startswith(f"dasst{user}(")
        assert Path(spec.cwd, "job.log").stat().st_uid == users[user].pw_uid
    # each job's folder is its owner's alone
    bob_reads_alice = subprocess.run(["sudo", "-n", "-u", "dasstbob", "ls", specs[0].cwd], capture_output=True)
    assert bob_reads_alice.returncode != 0


# ---------------------------------------------------------------- the manager over Slurm: restarts



def _sleep_notebook(seconds: float) -> dict:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(
        "import os, time\n"
        f"time.sleep({seconds})\n"
        "open(os.path.join(os.environ['DASS_OUTPUT_DIR'], 'done.txt'), 'w').write(str(os.getuid()))"
    )])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


@pytest.fixture
def slurm_manager_factory(slurm_cluster, users, place, python_for_jobs, tmp_path, gateway_loop, gateway_hub):
    """Makes JobManagers (one per "service start") sharing one database and jobs folder, whose
    executor is the SlurmExecutor and whose jobs run as the test user of their owner.

    The test subclass stands in for per-user accounts (dass.data.accounts) until they land:
    it names the Unix account and hands the job's folder to it."""
    import fsspec  # noqa: F401
    from traitlets.config import Config

    from dass.data.access import Identity
    from dass.data.catalog import Catalog
    from dass.data.storage import Storage
    from dass.jobs.manager import JobManager
    from dass.stacks.registry import StackRegistry

    from tests.jobs.conftest import _start_gateway

    base, repo = place
    jobs = shared_folder("dass-slurm-mgr-")
    # the jobs' data gateway: a real service on the same repository and database (the job
    # tokens the managers make are in it); its own queue stays idle
    (tmp_path / "gateway").mkdir()
    gateway = _start_gateway(gateway_loop, gateway_hub, tmp_path / "gateway", f"file://{repo}", {})
    cfg = Config()
    cfg.Storage.url = f"file://{repo}"
    cfg.Catalog.db_url = f"sqlite:///{tmp_path / 'gateway' / 'catalog.sqlite'}"
    cfg.JobManager.gateway_url = gateway.url
    cfg.JobManager.jobs_dir = str(jobs)
    cfg.JobManager.poll_interval = 0.2
    cfg.JobManager.executor_class = "dass.jobs.slurm.SlurmExecutor"
    cfg.SlurmExecutor.slurm_conf = str(slurm_cluster.conf)
    cfg.SlurmExecutor.status_cache_seconds = 0.2
    identities = {"alice": Identity("alice", frozenset({"p-2026-001"})),
                  "bob": Identity("bob", frozenset({"p-2026-002"}))}

    class AccountsStandIn(JobManager):
        def _prepare(self, job, identity):
            spec = super()._prepare(job, identity)
            user = users[job.owner]
            subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", job.workdir], check=True)
            env = dict(spec.env)
            if os.environ.get("PYTHONPATH"):
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            return dataclasses.replace(spec, argv=(python_for_jobs, *spec.argv[1:]), env=env,
                                       run_as=user.pw_name)

    async def identity_for(name):
        return identities[name]

    def make():
        catalog, storage = Catalog(config=cfg), Storage(config=cfg)
        catalog.upgrade()
        catalog.scan(storage)
        return AccountsStandIn(config=cfg, catalog=catalog, storage=storage, registry=StackRegistry(config=cfg),
                               identity_for=identity_for)

    make.identities = identities
    yield make
    gateway.stop()
    shutil.rmtree(jobs, ignore_errors=True)


async def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("handle_kept", [True, False], ids=["handle-kept", "died-before-keeping-the-handle"])
def test_a_service_restart_mid_job_loses_nothing_and_runs_nothing_twice(slurm_manager_factory, slurm_cluster,
                                                                        handle_kept):
    from dass.jobs.model import Job

    alice = slurm_manager_factory.identities["alice"]

    async def scenario():
        first = slurm_manager_factory()
        first.start()
        job, _ = first.submit(alice, {"notebook": {"upload": _sleep_notebook(6), "name": "sleepy.ipynb"}})
        await _until(lambda: job["id"] in first._running, 60, "the job submitted to Slurm")
        first._task.cancel()  # the service dies: no stop(), nothing cancelled
        if not handle_kept:
            with first._db() as db, db.begin():
                db.get(Job, job["id"]).executor_handle = None
        second = slurm_manager_factory()
        second.start()
        assert second.get(alice, job["id"])["status"] == "IN_PROGRESS"
        assert job["id"] in second._running  # adopted, not queued again
        await _until(lambda: second.get(alice, job["id"])["status"] not in ("QUEUED", "IN_PROGRESS"), 180,
                     "the adopted job's end")
        await second.stop()
        return job["id"], second.get(alice, job["id"]), second

    job_id, done, manager = asyncio.run(scenario())
    wd = manager.workdir(job_id)
    assert done["status"] == "COMPLETED", _log(wd)
    assert [o["path"] for o in done["outputs"] if o["path"].endswith("done.txt")]
    runs = [r for r in parse_scontrol(slurm_cluster.run("scontrol", "-o", "show", "job")).values()
            if r.get("JobName") == f"dass-{job_id}"]
    assert len(runs) == 1 and runs[0]["JobState"] == "COMPLETED"  # submitted once, ran once
    assert (wd / "output" / "done.txt").read_text() == str(pwd_uid("dasstalice"))


def pwd_uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def test_a_run_slurm_ends_fails_with_slurms_reason(slurm_gateway, slurm_cluster, users, place, python_for_jobs):
    """A run ended by Slurm itself (here: scancel by an administrator, outside dass) before the
    runner could write a result fails with what Slurm said."""
    ex = _executor(slurm_cluster)
    spec = _job(place, slurm_gateway, users["bob"], "runner_sleep.ipynb", python_for_jobs)
    spec = dataclasses.replace(spec, argv=(python_for_jobs, "-c", "import time; time.sleep(120)"))
    handle = asyncio.run(ex.start(spec))
    deadline = time.monotonic() + 60
    while (ex.record(handle, fresh=True) or {}).get("JobState") != "RUNNING":
        assert time.monotonic() < deadline, ex.record(handle, fresh=True)
        time.sleep(0.2)
    slurm_cluster.run("scancel", handle.state["slurm_id"])
    code = _wait_end(ex, handle, 60)
    assert code != 0
    result = ex.local_result(handle, spec.cwd)
    assert result["status"] == "FAILED"
    assert result["reason"].startswith("the job was cancelled in Slurm (scancel)")
    assert f"Slurm job {handle.state['slurm_id']}, CANCELLED" in result["reason"]


# ---------------------------------------------------------------- sweeps: one job array


def _param_notebook() -> dict:
    """A notebook with parameters ``value`` and ``seconds``: it sleeps, then writes its value
    and the uid it ran as to ``value.txt``."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell("value = 0\nseconds = 0.0")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell(
        "import os, time\n"
        "time.sleep(seconds)\n"
        "open(os.path.join(os.environ['DASS_OUTPUT_DIR'], 'value.txt'), 'w').write(f'{value} {os.getuid()}')"
    )])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


def _array_records(cluster, sweep_id: str) -> dict[int, dict[str, str]]:
    """Slurm's records of the tasks of a sweep's job arrays, by task id."""
    jobs = parse_scontrol(cluster.run("scontrol", "-o", "show", "job"))
    return {int(r["ArrayTaskId"]): r for r in jobs.values()
            if r.get("JobName") == f"dass-sweep-{sweep_id}" and r.get("ArrayTaskId", "").isdigit()}


def _sweep_done(manager, who, sweep_id):
    return manager.get_sweep(who, sweep_id)["finished"]


def test_a_sweep_is_one_sbatch_whose_tasks_run_as_the_owner_each_with_its_parameter(slurm_manager_factory,
                                                                                      slurm_cluster):
    """Three elements, one sbatch: the tasks share one array job id (scontrol's ArrayJobId:
    this cluster keeps no accounting for sacct), each ran as dasstalice and wrote its own value.
    Bob neither sees nor cancels the sweep, through dass or through Slurm."""
    alice, bob = (slurm_manager_factory.identities[u] for u in ("alice", "bob"))

    async def scenario():
        manager = slurm_manager_factory()
        manager.start()
        sweep, _ = manager.submit_sweep(alice, {"notebook": {"upload": _param_notebook(), "name": "sweep.ipynb"},
                                                "sweep": {"value": [11, 22, 33]}})
        await _until(lambda: all(j in manager._running for j in sweep["jobs"]), 60, "the sweep submitted")
        for call in (lambda: manager.get_sweep(bob, sweep["id"]), lambda: manager.cancel_sweep(bob, sweep["id"])):
            with pytest.raises(JobRequestError) as e:
                call()
            assert e.value.status == 404
        array_id = manager._running[sweep["jobs"][0]].state["array_id"]
        refused = subprocess.run(["sudo", "-n", "-u", "dasstbob", "scancel", array_id], capture_output=True,
                                 text=True, env=slurm_cluster.env)
        assert refused.returncode != 0 or "Access/permission denied" in refused.stderr, refused
        await _until(lambda: _sweep_done(manager, alice, sweep["id"]), 300, "the sweep's end")
        await manager.stop()
        return manager, sweep["id"]

    from dass.jobs.manager import JobRequestError

    manager, sweep_id = asyncio.run(scenario())
    sweep = manager.get_sweep(alice, sweep_id)
    jobs, _ = manager.list_jobs(alice, sweep=sweep_id)
    assert sweep["counts"]["COMPLETED"] == 3, [(j["status"], j["reason"], _log(manager.workdir(j["id"]))) for j in jobs]
    records = _array_records(slurm_cluster, sweep_id)
    assert sorted(records) == [0, 1, 2]
    assert len({r["ArrayJobId"] for r in records.values()}) == 1  # one sbatch
    assert all(r["JobState"] == "COMPLETED" and r["UserId"].startswith("dasstalice(") for r in records.values())
    uid = pwd_uid("dasstalice")
    for job in jobs:
        assert (manager.workdir(job["id"]) / "output" / "value.txt").read_text() == f"{job['parameters']['value']} {uid}"
        assert job["parameters"]["value"] == [11, 22, 33][job["sweep_index"]]
        assert any(o["path"].endswith("value.txt") for o in job["outputs"])  # its own results, as any job
        meta = json.loads((Path(manager.storage.root) / "results" / f"job-{job['id']}" / "dataset.json").read_text())
        assert meta["domain"]["job"]["sweep"] == {"id": sweep_id, "index": job["sweep_index"]}
        assert manager.log_chunk(alice, job["id"])[0]  # its own log


def test_cancel_of_one_element_stops_only_its_task(slurm_manager_factory, slurm_cluster):
    alice = slurm_manager_factory.identities["alice"]

    async def scenario():
        manager = slurm_manager_factory()
        manager.start()
        sweep, _ = manager.submit_sweep(alice, {"notebook": {"upload": _param_notebook(), "name": "sweep.ipynb"},
                                                "parameter_sets": [{"value": 1}, {"value": 2, "seconds": 600}]})
        long_job = sweep["jobs"][1]
        await _until(lambda: long_job in manager._running, 60, "the sweep submitted")
        handle = manager._running[long_job]
        await _until(lambda: (manager.executor.record(handle, fresh=True) or {}).get("JobState") == "RUNNING", 120,
                     "the long element running")
        assert manager.cancel(alice, long_job)["status"] == "STOPPING"
        await _until(lambda: _sweep_done(manager, alice, sweep["id"]), 300, "the sweep's end")
        await manager.stop()
        return manager, sweep["id"], handle

    manager, sweep_id, handle = asyncio.run(scenario())
    jobs, _ = manager.list_jobs(alice, sweep=sweep_id)
    assert [j["status"] for j in jobs] == ["COMPLETED", "STOPPED"], [(j["reason"], _log(manager.workdir(j["id"])))
                                                                     for j in jobs]
    assert jobs[1]["reason"] == "cancelled by alice"
    records = _array_records(slurm_cluster, sweep_id)
    assert records[0]["JobState"] == "COMPLETED" and records[1]["JobState"].startswith("CANCELLED")
    assert handle.state["slurm_id"] == f"{records[1]['ArrayJobId']}_1"


@pytest.mark.parametrize("handle_kept", [True, False], ids=["handles-kept", "died-before-keeping-the-handles"])
def test_a_service_restart_mid_sweep_loses_no_element_and_runs_none_twice(slurm_manager_factory, slurm_cluster,
                                                                          handle_kept):
    from dass.jobs.model import Job

    alice = slurm_manager_factory.identities["alice"]

    async def scenario():
        first = slurm_manager_factory()
        first.start()
        sweep, _ = first.submit_sweep(alice, {"notebook": {"upload": _param_notebook(), "name": "sweep.ipynb"},
                                              "parameters": {"seconds": 4}, "sweep": {"value": [1, 2]}})
        await _until(lambda: all(j in first._running for j in sweep["jobs"]), 60, "the sweep submitted")
        first._task.cancel()  # the service dies: no stop(), nothing cancelled
        if not handle_kept:
            with first._db() as db, db.begin():
                for job_id in sweep["jobs"]:
                    db.get(Job, job_id).executor_handle = None
        second = slurm_manager_factory()
        second.start()
        assert all(j in second._running for j in sweep["jobs"])  # adopted, not queued again
        assert second.get_sweep(alice, sweep["id"])["counts"]["QUEUED"] == 0
        await _until(lambda: _sweep_done(second, alice, sweep["id"]), 300, "the adopted sweep's end")
        await second.stop()
        return second, sweep["id"]

    manager, sweep_id = asyncio.run(scenario())
    jobs, _ = manager.list_jobs(alice, sweep=sweep_id)
    assert [j["status"] for j in jobs] == ["COMPLETED", "COMPLETED"], [_log(manager.workdir(j["id"])) for j in jobs]
    records = _array_records(slurm_cluster, sweep_id)
    assert sorted(records) == [0, 1] and len({r["ArrayJobId"] for r in records.values()}) == 1  # ran once each
    for job in jobs:
        value = (manager.workdir(job["id"]) / "output" / "value.txt").read_text().split()[0]
        assert value == str(job["parameters"]["value"])

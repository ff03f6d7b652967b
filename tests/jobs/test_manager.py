"""The job manager against a real catalogue, repository and database (no hub, no processes
except where a test says so): submission checks, access checked again at start, cancel,
idempotency, and what a restart does with jobs it finds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
from traitlets.config import Config

from dass.data.access import Identity
from dass.data.catalog import Catalog
from dass.data.storage import Storage
from dass.demo import seed
from dass.stacks.registry import StackRegistry
from dass.jobs.manager import JobManager, JobRequestError
from dass.jobs.model import Job, Status
from dass.jobs.spec import build_execution_spec

ALICE = Identity("alice", frozenset({"p-2026-001"}))
SEM = "sem/service/image_summary.ipynb"
NANOWIRES = "p-2026-001/sem-nanowires"
GATEWAY = "http://127.0.0.1:8000/services/dass/"


@pytest.fixture
def manager(tmp_path):
    seed(fsspec.filesystem("file"), str(tmp_path / "repo"))
    cfg = Config()
    cfg.Storage.url = f"file://{tmp_path / 'repo'}"
    cfg.Catalog.db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cfg.JobManager.jobs_dir = str(tmp_path / "jobs")
    cfg.JobManager.home_dir_template = str(tmp_path / "homes" / "{username}")
    cfg.JobManager.gateway_url = GATEWAY  # set by the service to where it listens; no service here
    catalog, storage = Catalog(config=cfg), Storage(config=cfg)
    catalog.upgrade()
    assert not catalog.scan(storage).errors
    identities = {"alice": ALICE}

    async def identity_for(name):
        return identities[name]

    m = JobManager(config=cfg, catalog=catalog, storage=storage, registry=StackRegistry(config=cfg),
                   identity_for=identity_for)
    m.identities = identities
    return m


def test_submit_queues_a_validated_job(manager):
    job, created = manager.submit(ALICE, {"notebook": SEM, "parameters": {
        "input_dataset": "p-2026-001/sem-nanowires", "max_images": 2}})
    assert created and job["status"] == "QUEUED" and job["stack"] == "sem" and job["size"] == "small"
    assert job["datasets"] == ["p-2026-001/sem-nanowires"]  # the dataset parameter is an input
    assert (manager.workdir(job["id"]) / "input.ipynb").exists()
    assert job["notebook_sha256"].startswith("sha256:")


def test_idempotency_key_returns_the_first_job(manager):
    first, created = manager.submit(ALICE, {"notebook": SEM, "idempotency_key": "k1"})
    again, created_again = manager.submit(ALICE, {"notebook": SEM, "idempotency_key": "k1"})
    assert created and not created_again and again["id"] == first["id"]
    assert manager.list_jobs(ALICE)[1] == 1


def test_idempotency_key_reused_with_another_request_is_refused(manager):
    first, _ = manager.submit(ALICE, {"notebook": SEM, "idempotency_key": "k2", "parameters": {"max_images": 2}})
    for other in ({"notebook": SEM, "idempotency_key": "k2", "parameters": {"max_images": 3}},
                  {"notebook": "no/such.ipynb", "idempotency_key": "k2"}):
        with pytest.raises(JobRequestError) as e:
            manager.submit(ALICE, other)
        assert e.value.status == 422 and e.value.field == "idempotency_key"
        assert "different request" in str(e.value) and first["id"] in str(e.value)
    # the same request again still answers with the first job; another user's key is theirs
    again, created = manager.submit(ALICE, {"notebook": SEM, "parameters": {"max_images": 2}, "idempotency_key": "k2"})
    assert not created and again["id"] == first["id"]
    _, created_bob = manager.submit(Identity("bob", frozenset({"p-2026-002"})), {"notebook": SEM, "idempotency_key": "k2"})
    assert created_bob
    assert manager.list_jobs(ALICE)[1] == 1


def test_access_is_checked_again_when_the_job_starts(manager):
    job, _ = manager.submit(ALICE, {"notebook": SEM, "parameters": {"input_dataset": "p-2026-001/sem-nanowires"}})
    manager.identities["alice"] = Identity("alice", frozenset())  # left the proposal meanwhile
    asyncio.run(manager.tick())
    done = manager.get(ALICE, job["id"])
    assert done["status"] == "FAILED"
    assert "access checked again at start" in done["reason"] and "p-2026-001/sem-nanowires" in done["reason"]


def test_cancel_a_queued_job(manager):
    job, _ = manager.submit(ALICE, {"notebook": SEM})
    stopped = manager.cancel(ALICE, job["id"])
    assert stopped["status"] == "STOPPED" and stopped["reason"] == "cancelled by alice before it started"
    with pytest.raises(JobRequestError) as e:
        manager.cancel(ALICE, job["id"])
    assert e.value.status == 409
    with pytest.raises(JobRequestError) as e:
        manager.cancel(Identity("bob", frozenset()), job["id"])
    assert e.value.status == 404


def _set(manager, job_id, **values):
    with manager._db() as db, db.begin():
        job = db.get(Job, job_id)
        for k, v in values.items():
            setattr(job, k, v)


def test_restart_requeues_never_started_and_finishes_ended_runs(manager, tmp_path):
    never, _ = manager.submit(ALICE, {"notebook": SEM})
    ended, _ = manager.submit(ALICE, {"notebook": SEM})
    now = dt.datetime.now(dt.timezone.utc)
    _set(manager, never["id"], status=Status.IN_PROGRESS.value, started_at=now)
    # a runner that ran and ended while the service was away: its pid is gone, result.json is there
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    wd = manager.workdir(ended["id"])
    (wd / "runner.json").write_text(json.dumps({"pid": int(dead.stdout), "started": now.isoformat()}))
    (wd / "result.json").write_text(json.dumps({"status": "FAILED", "reason": "cell 2 raised ValueError: x",
                                                "results_url": None, "outputs": []}))
    _set(manager, ended["id"], status=Status.IN_PROGRESS.value, started_at=now)
    manager.reconcile()
    assert manager.get(ALICE, never["id"])["status"] == "QUEUED"
    done = manager.get(ALICE, ended["id"])
    assert done["status"] == "FAILED" and done["reason"] == "cell 2 raised ValueError: x"


def test_execution_spec_is_built_from_values_only():
    reg = StackRegistry()
    spec = build_execution_spec(job_id="j1", workdir="/w/j1", stack=reg.get("kmap"), size=reg.all_sizes["medium"],
                                timeout_seconds=60, base_env={"PATH": "/usr/bin"},
                                memory_headroom_bytes=2 * 1024**3)
    assert spec.argv == (sys.executable, "-m", "dass.jobs.runner", "/w/j1")
    assert spec.cwd == "/w/j1" and spec.timeout_seconds == 60 and spec.cpu == 2
    assert spec.mem_limit_bytes == (4 + 2) * 1024**3
    assert spec.env["OMP_NUM_THREADS"] == "2" and spec.env["HOME"] == "/w/j1" and spec.env["DASS_JOB_ID"] == "j1"
    assert spec.env["PATH"] == "/usr/bin" and spec.env["DASS_STACK"] == "kmap"


def test_the_service_token_never_reaches_a_job(manager, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-secret")
    job, _ = manager.submit(ALICE, {"notebook": SEM})
    with manager._db() as db:
        row = db.get(Job, job["id"])
        spec = manager._prepare(row, ALICE)
    assert "JUPYTERHUB_API_TOKEN" not in spec.env and "service-secret" not in json.dumps(spec.env)


def test_a_job_gets_its_own_token_and_the_gateway_never_storage(manager):
    """The job's environment has the gateway's address and a job token whose grant reads its
    inputs and writes its results; spec.json names no storage location or option."""
    job, _ = manager.submit(ALICE, {"notebook": SEM, "parameters": {"input_dataset": NANOWIRES}})
    with manager._db() as db:
        spec = manager._prepare(db.get(Job, job["id"]), ALICE)
    token = spec.env["DASS_TOKEN"]
    assert token.startswith("dassjob_") and spec.env["DASS_SERVICE_URL"] == GATEWAY
    grant = manager.grants.get(token)
    assert (grant.kind, grant.owner, grant.ref) == ("job", "alice", job["id"])
    assert grant.read == {NANOWIRES} and grant.write == {f"results/job-{job['id']}"}
    assert grant.expires_at > dt.datetime.now(dt.timezone.utc)
    runner_spec = json.loads((manager.workdir(job["id"]) / "spec.json").read_text())
    assert runner_spec["gateway"] == {"url": GATEWAY}
    assert not {"storage", "results_url", "result_url"} & set(runner_spec)
    text = json.dumps(runner_spec) + json.dumps(spec.env)
    assert manager.storage.url not in text and manager.storage.root not in text
    assert token not in json.dumps(runner_spec)  # the token is in the environment only


def test_a_local_job_gets_a_read_only_view_that_ends_with_it(manager):
    """file:// storage and a local run: the inputs are hard links in a read-only view of the
    job's folder; when the job ends its token is revoked and the view removed."""
    job, _ = manager.submit(ALICE, {"notebook": SEM, "parameters": {"input_dataset": NANOWIRES}})
    with manager._db() as db:
        spec = manager._prepare(db.get(Job, job["id"]), ALICE)
    view = manager.workdir(job["id"]) / "datasets" / NANOWIRES
    source = Path(manager.storage.root) / NANOWIRES / "dataset.json"
    assert (view / "dataset.json").stat().st_ino == source.stat().st_ino  # a link, not a copy
    assert not view.stat().st_mode & 0o222
    if os.geteuid() != 0:  # root writes through any mode
        with pytest.raises(PermissionError):
            (view / "new.txt").write_text("x")
    token = spec.env["DASS_TOKEN"]
    assert manager.grants.get(token) is not None
    with manager._db() as db, db.begin():
        row = db.get(Job, job["id"])
        row.status = Status.IN_PROGRESS.value
        manager._finish(db, row, 0)
    assert manager.grants.get(token) is None
    assert not view.exists()
    assert source.exists()  # the repository's file is untouched


def test_the_service_says_where_results_are_and_keeps_the_result_it_was_handed(manager):
    """result.json reaches the service through PUT api/jobs/<id>/result (store_result); the
    job's results_url is the service's own (results/job-<id>), whatever the run claims."""
    job, _ = manager.submit(ALICE, {"notebook": SEM})
    now = dt.datetime.now(dt.timezone.utc)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    handle = {"executor": "local", "state": {"pid": int(dead.stdout), "workdir": str(manager.workdir(job["id"]))}}
    _set(manager, job["id"], status=Status.IN_PROGRESS.value, started_at=now, executor_handle=handle)
    manager.store_result(job["id"], {"status": "COMPLETED", "reason": None, "results_url": "file:///etc",
                                     "outputs": [{"path": "output/a.txt", "sha256": "0" * 64, "size": 1}]})
    manager.reconcile()
    done = manager.get(ALICE, job["id"])
    assert done["status"] == "COMPLETED"
    assert done["results_url"] == manager.storage.url_of(manager.storage.join("results", f"job-{job['id']}"))


def test_restart_reads_the_result_from_repository_storage(manager):
    """A run's result.json is read from repository storage, wherever the run ran: the job's
    working folder need not hold it."""
    job, _ = manager.submit(ALICE, {"notebook": SEM})
    now = dt.datetime.now(dt.timezone.utc)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    handle = {"executor": "local", "state": {"pid": int(dead.stdout), "workdir": str(manager.workdir(job["id"]))}}
    _set(manager, job["id"], status=Status.IN_PROGRESS.value, started_at=now, executor_handle=handle)
    manager.store_result(job["id"], {"status": "FAILED", "reason": "cell 3 raised KeyError: 'x'",
                                     "results_url": None, "outputs": []})
    assert not (manager.workdir(job["id"]) / "result.json").exists()
    manager.reconcile()
    done = manager.get(ALICE, job["id"])
    assert done["status"] == "FAILED" and done["reason"] == "cell 3 raised KeyError: 'x'"


def test_restart_adopts_a_runner_that_had_no_time_to_write_its_pid(manager):
    """The service died between launching a runner and storing its handle, and the runner had
    not yet written runner.json: it is found by its command line, adopted, not run twice."""
    job, _ = manager.submit(ALICE, {"notebook": SEM})
    wd = manager.workdir(job["id"])
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(120)", "dass.jobs.runner", str(wd)])
    try:
        _set(manager, job["id"], status=Status.IN_PROGRESS.value, started_at=dt.datetime.now(dt.timezone.utc))
        manager.reconcile()
        assert manager.get(ALICE, job["id"])["status"] == "IN_PROGRESS"
        handle = manager._running[job["id"]]
        assert handle.executor == "local" and handle.state["pid"] == proc.pid
        with manager._db() as db:
            assert db.get(Job, job["id"]).executor_handle == handle.to_json()
        asyncio.run(manager.executor.cancel(handle))
        assert proc.wait(timeout=30) is not None
    finally:
        proc.kill()


def test_a_stack_checks_its_parameters_at_submission(manager):
    """The STM stack's recipe check runs when the job is submitted: 422 naming step and field."""
    movie = "stm/service/fast_movie.ipynb"
    with pytest.raises(JobRequestError) as e:
        manager.submit(ALICE, {"notebook": movie, "parameters": {"recipe": {"steps": [
            {"name": "drift", "params": {"stepsize": 0}}]}}})
    assert e.value.status == 422 and e.value.field == "recipe"
    assert "recipe step 'drift', field 'stepsize'" in str(e.value)
    assert manager.list_jobs(ALICE)[1] == 0  # nothing queued
    job, created = manager.submit(ALICE, {"notebook": movie, "parameters": {"recipe": {"steps": [
        {"name": "align_rows", "params": {"method": "mean"}}]}}})
    assert created and job["parameters"]["recipe"] == {"steps": [{"name": "align_rows", "params": {"method": "mean"}}]}


def _without_python(manager, tmp_path):
    """The sem stack's environment set to a folder with no Python: the local executor's start
    fails with an OSError, not with one of dass's own errors."""
    from traitlets.config import Config

    cfg = Config(manager.registry.config)
    cfg.StackRegistry.stacks = {"sem": {"environment": str(tmp_path / "no-such-environment")}}
    manager.registry = StackRegistry(config=cfg)


def test_a_job_whose_run_cannot_be_started_fails_and_says_why(manager, tmp_path):
    _without_python(manager, tmp_path)
    job, _ = manager.submit(ALICE, {"notebook": SEM, "parameters": {"input_dataset": NANOWIRES}})
    asyncio.run(manager.tick())  # before: the job stayed IN_PROGRESS with nothing running
    done = manager.get(ALICE, job["id"])
    assert done["status"] == "FAILED", done
    assert "local executor could not start the job (FileNotFoundError)" in done["reason"]
    assert str(tmp_path) not in done["reason"]  # the machine's paths are for the operator's log
    assert manager.list_jobs(ALICE, status="IN_PROGRESS")[1] == 0
    assert not (manager.workdir(job["id"]) / "datasets" / NANOWIRES).exists()  # its inputs' view is gone


def test_the_elements_of_a_sweep_that_cannot_be_started_fail_each(manager, tmp_path):
    _without_python(manager, tmp_path)
    sweep, _ = manager.submit_sweep(ALICE, {"notebook": SEM, "parameters": {"input_dataset": NANOWIRES},
                                            "sweep": {"max_images": [1, 2]}})
    asyncio.run(manager.tick())
    jobs, _ = manager.list_jobs(ALICE, sweep=sweep["id"])
    assert [j["status"] for j in jobs] == ["FAILED", "FAILED"]
    assert all("could not start the job (FileNotFoundError)" in j["reason"] for j in jobs)

"""Fixtures of the job tests: a seeded demo repository (file:// and S3), a real dass service
as the job's data gateway, and a real runner.

The runner is started as the local executor starts it: ``python -m dass.jobs.runner WORKDIR``
in a session of its own, ``cwd=WORKDIR``, ``HOME=WORKDIR``, with the size's memory limit
(``RLIMIT_AS`` = memory + 2 GiB headroom) and thread counts: the same builder and launch.

As under the job manager, the runner holds no storage credential: it reads its inputs and
writes its results through the data gateway of a real dass service (``tests/service``'s
``start_service``, with the small stand-in hub ``FakeHub``) whose ``c.Storage`` is the test
repository, with a job token (``$DASS_TOKEN``) whose grant :func:`runner_spec` records in that
service's database, as :meth:`dass.jobs.manager.JobManager._prepare` does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
OWNER = "alice"
#: memory of the "small" size in the tests; the runner gets it + 2 GiB of address space
SIZE = {"name": "small", "cpu": 1, "mem_gib": 2}
#: where the results of a job go (``c.JobManager.results_prefix``)
RESULTS = "results"
#: job id -> the job's token (given to the runner in its environment, never in spec.json)
JOB_TOKENS: dict[str, str] = {}


@dataclass
class JobGateway:
    """A running dass service whose ``c.Storage`` is the test repository: the jobs' gateway."""

    service: Any  # tests.service.service_support.RunningService
    storage_url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def grants(self) -> Any:
        """The grants of the service's database (:class:`dass.data.grants.Grants`)."""
        return self.service.app.grants

    @property
    def is_local(self) -> bool:
        return self.storage_url.startswith("file://")

    def storage(self) -> Any:
        from dass.data.storage import Storage

        return Storage(url=self.storage_url, options=dict(self.storage_options))

    def results(self, job_id: str) -> tuple[Any, str]:
        """``(fs, root)`` of the results of job ``job_id`` in repository storage."""
        import fsspec.core

        return fsspec.core.url_to_fs(self.results_url(job_id), **self.storage_options)

    def results_url(self, job_id: str) -> str:
        """The storage URL of the results of job ``job_id`` (what the manager records)."""
        return f"{self.storage_url.rstrip('/')}/{RESULTS}/job-{job_id}"

    def grant(self, job_id: str, read: list[str], *, write: list[str] | None = None,
              minutes: int = 60) -> str:
        """Record a job grant as the job manager does; returns the job's new token."""
        from dass.data.grants import JOB, new_job_token

        token = new_job_token()
        self.grants.put(
            token, kind=JOB, owner=OWNER, ref=job_id, read=read,
            write=[f"{RESULTS}/job-{job_id}"] if write is None else write,
            expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes),
        )
        return token


def runner_spec(
    workdir: Path,
    *,
    notebook: str,
    gateway: JobGateway,
    datasets: list[str] = (),
    parameters: dict[str, Any] | None = None,
    cell_timeout: int | None = 600,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Prepare a job folder as the service does: write ``workdir/spec.json`` (the gateway's
    address, no storage location or credential) and ``workdir/input.ipynb``, record the job's
    grant (its inputs, its results) in the gateway's database, and, for ``file://`` storage,
    make the read-only view of the inputs the service makes for a local run. Returns the spec;
    the job's token is in :data:`JOB_TOKENS` (:func:`execution_spec` puts it in the
    environment)."""
    from dass.data.mount import mount_datasets

    job_id = job_id or uuid.uuid4().hex[:12]
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NOTEBOOKS / notebook, workdir / "input.ipynb")
    storage = gateway.storage()
    records = []
    for ds_id in datasets:
        proposal, name = ds_id.split("/")
        try:
            metadata = json.loads(storage.fs.cat_file(f"{storage.dataset_path(proposal, name)}/dataset.json"))
        except FileNotFoundError:
            metadata = {}
        records.append(
            {"id": ds_id, "proposal": proposal, "name": name, "title": metadata.get("title", ds_id), "metadata": metadata}
        )
    spec = {
        "job_id": job_id,
        "owner": OWNER,
        "notebook": "input.ipynb",
        "notebook_source": f"upload:{notebook}",
        "parameters": dict(parameters or {}),
        "datasets": records,
        "gateway": {"url": gateway.url},
        "derived": {
            "proposal": RESULTS,
            "name": f"job-{job_id}",
            "title": f"Results of {notebook} for {OWNER}",
            "access_groups": [],
            "access_users": [OWNER],
            "licence": "CC-BY-4.0",
        },
        "stack": "sem",
        "size": dict(SIZE),
        "kernel_name": "python3",
        "cell_timeout": cell_timeout,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
    if gateway.is_local:  # what the manager does for file:// storage and a local executor
        existing = [SimpleNamespace(**r) for r in records if r["metadata"]]
        mount_datasets(storage, existing, workdir)
    JOB_TOKENS[job_id] = gateway.grant(job_id, [r["id"] for r in records])
    return spec


def execution_spec(workdir: Path):
    """The ExecutionSpec the service would build for the job of ``workdir`` (stack sem, small):
    with the gateway's address and the job's token, as :meth:`JobManager._prepare` gives them."""
    from dass.jobs.spec import build_execution_spec
    from dass.stacks.registry import StackRegistry

    spec = json.loads((workdir / "spec.json").read_text())
    registry = StackRegistry()
    # PYTHONPATH: a developer running the tests of another checkout runs its runner too
    base_env = {k: os.environ[k] for k in ("PATH", "LANG", "PYTHONPATH") if k in os.environ}
    return build_execution_spec(
        job_id=spec["job_id"],
        workdir=str(workdir),
        stack=registry.get("sem"),
        size=registry.all_sizes[SIZE["name"]],
        timeout_seconds=3600,
        base_env=base_env,
        gateway_url=spec["gateway"]["url"],
        token=JOB_TOKENS[spec["job_id"]],
    )


def start_runner(workdir: Path) -> subprocess.Popen:
    """Start the runner exactly as the local executor does (same builder, same launch)."""
    from dass.jobs.executor import launch

    return launch(execution_spec(workdir))


def stop_tree(proc: subprocess.Popen) -> None:
    """Kill a runner and everything it started (like the executor's cancel), if still there."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        tree = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(10)


def run_runner(workdir: Path, timeout: float = 120) -> tuple[int, dict[str, Any] | None, float]:
    """Run the runner to its end; returns (exit status, result.json, seconds)."""
    from dass.jobs.runner import load_result

    t0 = time.monotonic()
    proc = start_runner(workdir)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_tree(proc)
        raise AssertionError(f"runner still running after {timeout} s; job.log:\n{read_log(workdir)}") from None
    return rc, load_result(workdir), time.monotonic() - t0


def read_log(workdir: Path) -> str:
    parts = []
    for name in ("job.log", "runner.out"):
        path = workdir / name
        if path.exists():
            parts.append(f"--- {name}\n{path.read_text(errors='replace')}")
    return "\n".join(parts)


def wait_for_log(workdir: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = workdir / "job.log"
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in job.log after {timeout} s:\n{read_log(workdir)}")


@pytest.fixture(scope="session")
def runner_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic demo repository in a local folder (``file://``)."""
    import fsspec

    from dass.demo import seed

    root = tmp_path_factory.mktemp("runner-repo") / "repository"
    seed(fsspec.filesystem("file"), str(root))
    return root


@pytest.fixture(scope="session")
def runner_moto() -> Iterator[Any]:
    """A real S3 endpoint (moto server) with the demo repository in ``s3://runner-bucket/repo``.

    ``runner_moto.options`` hold a key and secret of their own, distinct from anything else a
    job could see, so that a test can search for them."""
    import fsspec

    from dass.demo import seed
    from tests.support import MotoServer

    if not Path(sys.executable).with_name("moto_server").exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    server = MotoServer()
    try:
        server.make_bucket("runner-bucket")
        options = {**server.options, "key": f"dasskey{secrets.token_hex(8)}",
                   "secret": f"dasssecret{secrets.token_hex(16)}"}
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
        seed(fs, "runner-bucket/repo")
        yield SimpleNamespace(server=server, options=options)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway_loop() -> Iterator[Any]:
    from tests.service.service_support import LoopThread

    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def gateway_hub(gateway_loop) -> Iterator[Any]:
    """The stand-in hub API of the service tests (the gateway's job tokens never reach it)."""
    from tests.service.service_support import FakeHub

    hub = FakeHub()
    gateway_loop.run(hub.start())
    yield hub
    gateway_loop.run(hub.stop())


def _start_gateway(loop: Any, hub: Any, tmp: Path, storage_url: str, options: dict[str, Any]) -> Any:
    """A dass service on ``storage_url``, its catalogue scanned from it, its job queue idle."""
    from dass.data.catalog import Catalog
    from dass.data.storage import Storage
    from tests.service.service_support import start_service

    db_url = f"sqlite:///{tmp / 'catalog.sqlite'}"
    catalog = Catalog(db_url=db_url)
    report = catalog.scan(Storage(url=storage_url, options=dict(options)))
    catalog.dispose()
    assert not report.errors, str(report)
    extra = "\n".join([
        f"c.Storage.options = {dict(options)!r}",
        "c.JobManager.max_concurrency = 0",  # the runners of these tests are started by the tests
        f"c.JobManager.jobs_dir = {str(tmp / 'jobs')!r}",
    ])
    return start_service(loop, tmp, hub.api_url, db_url=db_url, repo_url=storage_url, extra_config=extra)


@pytest.fixture(scope="session")
def runner_gateway(runner_repo, gateway_loop, gateway_hub, tmp_path_factory) -> Iterator[JobGateway]:
    """The data gateway of a real dass service on the ``file://`` repository."""
    url = f"file://{runner_repo}"
    svc = _start_gateway(gateway_loop, gateway_hub, tmp_path_factory.mktemp("gateway-file"), url, {})
    yield JobGateway(svc, url)
    svc.stop()


@pytest.fixture(scope="session")
def runner_s3_gateway(runner_moto, gateway_loop, gateway_hub, tmp_path_factory) -> Iterator[JobGateway]:
    """The data gateway of a real dass service on the S3 repository (moto)."""
    url = "s3://runner-bucket/repo"
    svc = _start_gateway(gateway_loop, gateway_hub, tmp_path_factory.mktemp("gateway-s3"), url, runner_moto.options)
    yield JobGateway(svc, url, dict(runner_moto.options))
    svc.stop()

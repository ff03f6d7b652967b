"""Fixtures of the job tests: a seeded demo repository (file:// and S3) and a real runner.

The runner is started as the local executor starts it: ``python -m dass.jobs.runner WORKDIR``
in a session of its own, ``cwd=WORKDIR``, ``HOME=WORKDIR``, with the size's memory limit
(``RLIMIT_AS`` = memory + 2 GiB headroom) and thread counts: the same builder and launch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
OWNER = "alice"
#: memory of the "small" size in the tests; the runner gets it + 2 GiB of address space
SIZE = {"name": "small", "cpu": 1, "mem_gib": 2}


def runner_spec(
    workdir: Path,
    *,
    notebook: str,
    storage_url: str,
    storage_options: dict[str, Any] | None = None,
    datasets: list[str] = (),
    parameters: dict[str, Any] | None = None,
    cell_timeout: int | None = 600,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Write ``workdir/spec.json`` and ``workdir/input.ipynb`` as the service does; return the spec."""
    import fsspec.core

    job_id = job_id or uuid.uuid4().hex[:12]
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NOTEBOOKS / notebook, workdir / "input.ipynb")
    fs, root = fsspec.core.url_to_fs(storage_url, **(storage_options or {}))
    records = []
    for ds_id in datasets:
        proposal, name = ds_id.split("/")
        try:
            metadata = json.loads(fs.cat_file(f"{root.rstrip('/')}/{ds_id}/dataset.json"))
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
        "storage": {"url": storage_url, "options": dict(storage_options or {})},
        "results_url": f"{storage_url.rstrip('/')}/results/job-{job_id}",
        "derived": {
            "proposal": "results",
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
    return spec


def start_runner(workdir: Path) -> subprocess.Popen:
    """Start the runner exactly as the local executor does (same builder, same launch)."""
    from dass.stacks.registry import StackRegistry
    from dass.jobs.executor import launch
    from dass.jobs.spec import build_execution_spec

    registry = StackRegistry()
    # PYTHONPATH: a developer running the tests of another checkout runs its runner too
    base_env = {k: os.environ[k] for k in ("PATH", "LANG", "PYTHONPATH") if k in os.environ}
    spec = build_execution_spec(
        job_id=json.loads((workdir / "spec.json").read_text())["job_id"],
        workdir=str(workdir),
        stack=registry.get("sem"),
        size=registry.all_sizes[SIZE["name"]],
        timeout_seconds=3600,
        base_env=base_env,
    )
    return launch(spec)


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
    """A real S3 endpoint (moto server) with the demo repository in ``s3://runner-bucket/repo``."""
    import fsspec

    from dass.demo import seed
    from tests.support import MotoServer

    if not Path(sys.executable).with_name("moto_server").exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    server = MotoServer()
    try:
        server.make_bucket("runner-bucket")
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **server.options)
        seed(fs, "runner-bucket/repo")
        yield server
    finally:
        server.stop()

"""Standby runners: a job handed to a runner started ahead (imports done, kernel running)
runs exactly as a fresh one would, in its own folder and environment."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psutil
import pytest

from dass.jobs.executor import LocalExecutor
from dass.jobs.runner import load_result
from dass.jobs.standby import READY_SUFFIX

from .conftest import execution_spec, read_log, runner_spec

#: a loaded 2-core machine: a standby imports papermill and nbconvert and starts a kernel
READY_TIMEOUT = 240
RUN_TIMEOUT = 240


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _run(executor: LocalExecutor, workdir: Path) -> tuple[dict, dict]:
    handle = asyncio.run(executor.start(execution_spec(workdir)))
    _wait(lambda: executor.status(handle) is not None, RUN_TIMEOUT, f"the job in {workdir}")
    result = load_result(workdir)
    assert result and result["status"] == "COMPLETED", read_log(workdir)
    return handle.state, json.loads((workdir / "output" / "env.json").read_text())


@pytest.fixture
def executor():
    ex = LocalExecutor()
    yield ex
    ex.close()


def test_the_second_job_runs_on_the_standby_runner(runner_gateway, tmp_path, executor):
    jobs = tmp_path / "jobs"
    first = jobs / "a"
    runner_spec(first, notebook="runner_env.ipynb", gateway=runner_gateway, parameters={"x": 2})
    state1, env1 = _run(executor, first)
    assert "kernel started ahead" not in read_log(first)

    pool = jobs / ".standby"
    _wait(lambda: any(pool.glob(f"*{READY_SUFFIX}")), READY_TIMEOUT, "a ready standby runner")
    standby_pid = int(next(pool.glob(f"*{READY_SUFFIX}")).name.split(".")[0])
    # started before its job is known, it holds no job's token (the job's comes through its pipe)
    assert "DASS_TOKEN" not in psutil.Process(standby_pid).environ()

    second = jobs / "b"
    spec2 = runner_spec(second, notebook="runner_env.ipynb", gateway=runner_gateway, parameters={"x": 3})
    state2, env2 = _run(executor, second)
    assert state2["pid"] == standby_pid
    assert "using the kernel started ahead of the job" in read_log(second)
    # the kernel started before its job lives in the job's folder and environment
    assert env2["cwd"] == str(second.resolve()) and env2["home"] == str(second)
    assert env2["job"] == spec2["job_id"] and env2["output"] == str(second.resolve() / "output")
    assert env2["manifest"] == str(second.resolve() / ".dass" / "session.json")
    assert env2["x"] == 3 and env1["x"] == 2
    # it wrote its results through the gateway with the second job's own token
    fs, root = runner_gateway.results(spec2["job_id"])
    assert fs.exists(f"{root}/output/env.json") and fs.exists(f"{root}/dataset.json")
    assert not any(p for p in pool.glob(f"{standby_pid}*"))  # it left the pool


def test_standby_runners_end_when_the_service_lets_them_go(runner_gateway, tmp_path, executor):
    workdir = tmp_path / "jobs" / "a"
    runner_spec(workdir, notebook="runner_env.ipynb", gateway=runner_gateway)
    _run(executor, workdir)
    pool = workdir.parent / ".standby"
    _wait(lambda: any(pool.glob(f"*{READY_SUFFIX}")), READY_TIMEOUT, "a ready standby runner")
    pid = int(next(pool.glob(f"*{READY_SUFFIX}")).name.split(".")[0])
    proc = psutil.Process(pid)
    kernels = [c for c in proc.children(recursive=True) if any("ipykernel" in a for a in c.cmdline())]
    assert kernels, "the standby runner has its kernel running"
    executor.close()
    gone, alive = psutil.wait_procs([proc, *kernels], timeout=60)
    assert not alive, [p.pid for p in alive]

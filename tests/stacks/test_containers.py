"""The pure builders of a container run by value: names, images, binds and the ``podman run``
command line, with no secret on it. The back ends' renderings are in tests/hub/test_container.py
and tests/jobs/test_container.py; the real runs in tests/integration/test_containers.py."""

from __future__ import annotations

import pytest

from dass.stacks.containers import Bind, ContainerRun, container_name, podman_run_argv


def test_podman_argv_by_value():
    run = ContainerRun(
        name="dass-job-1", image="dass-stack-sem:0.1.0", argv=("python", "-m", "dass.jobs.runner", "/j/1"),
        user="64101:64101", env={"DASS_TOKEN": "t0ps3cret", "OMP_NUM_THREADS": "2"}, workdir="/j/1",
        binds=(Bind("/j/1"), Bind("/srv/x", "/data", read_only=True)), cpu=2, mem_bytes=4 * 1024**3,
        pids_limit=100, labels={"dass.kind": "job"},
    )
    assert podman_run_argv(run) == [
        "podman", "run", "--detach", "--name", "dass-job-1", "--replace", "--pull", "never", "--network", "host", "--init",
        "--user", "64101:64101", "--cap-drop", "all", "--security-opt", "no-new-privileges", "--read-only",
        "--workdir", "/j/1", "--cpus", "2", "--memory", str(4 * 1024**3), "--memory-swap", str(4 * 1024**3),
        "--pids-limit", "100", "--label", "dass.kind=job",
        "--mount", "type=bind,source=/j/1,target=/j/1",
        "--mount", "type=bind,source=/srv/x,target=/data,ro=true",
        "--env", "DASS_TOKEN", "--env", "OMP_NUM_THREADS",
        "dass-stack-sem:0.1.0", "python", "-m", "dass.jobs.runner", "/j/1",
    ]
    assert run.process_env({"PATH": "/usr/bin"}) == {"PATH": "/usr/bin", "DASS_TOKEN": "t0ps3cret", "OMP_NUM_THREADS": "2"}


def test_names_and_binds():
    assert container_name("dass-session", "dtst-alice", "gpu box") == "dass-session-dtst-alice-gpu-box"
    with pytest.raises(ValueError, match="not allowed"):
        Bind("/srv/a,b").option()

"""ContainerExecutor renders a job's ExecutionSpec into its container by value (the real run
is in tests/integration/test_containers.py)."""

from __future__ import annotations

from dass.jobs.container import ContainerExecutor
from dass.jobs.spec import build_execution_spec
from dass.stacks.containers import Bind, podman_run_argv
from dass.stacks.registry import Size, Stack

STACK = Stack("sem", "SEM", "", "sem/welcome.ipynb", "small", ("small",), image="dass-stack-sem")
SIZE = Size("medium", "medium", cpu=2, mem_gib=4)


def test_job_container_from_the_execution_spec():
    spec = build_execution_spec(
        job_id="0" * 32, workdir="/srv/jobs/" + "0" * 32, stack=STACK, size=SIZE, timeout_seconds=60,
        base_env={"PATH": "/host/venv/bin:/usr/bin", "LANG": "C.UTF-8"}, gateway_url="http://127.0.0.1:9/services/dass/",
        token="job-token", owner="alice",
    )
    assert (spec.owner, spec.image, spec.mem_bytes) == ("alice", "dass-stack-sem", 4 * 1024**3)
    run = ContainerExecutor(image_tag="9.9").container_run(spec, 64101, 64102)
    assert run.image == "dass-stack-sem:9.9" and run.user == "64101:64102"
    assert run.argv == ("python", "-m", "dass.jobs.runner", spec.cwd)
    assert run.binds == (Bind(spec.cwd),) and run.workdir == spec.cwd
    assert (run.cpu, run.mem_bytes) == (2, 4 * 1024**3)  # the size's, not the address-space limit
    assert "PATH" not in run.env  # the image's own PATH applies
    assert run.env["DASS_TOKEN"] == "job-token" and run.env["DASS_SERVICE_URL"].startswith("http://127.0.0.1")
    assert "job-token" not in " ".join(podman_run_argv(run))


def test_a_job_runs_as_the_account_the_spec_names():
    import os
    import pwd

    from dataclasses import replace

    spec = build_execution_spec(job_id="1" * 32, workdir="/srv/jobs/x", stack=STACK, size=SIZE, timeout_seconds=60,
                                base_env={}, owner="alice")
    me = pwd.getpwuid(os.geteuid()).pw_name
    account = ContainerExecutor()._account(replace(spec, run_as=me))
    assert (account.name, account.uid) == (me, os.geteuid())
    assert ContainerExecutor(as_owner=False)._account(spec) is None

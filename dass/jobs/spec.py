"""Pure builders: a job and its choices → what the runner reads and how the executor runs it.

Nothing here touches processes, files or the database, so the ``kubernetes`` executor can map
the same :class:`ExecutionSpec` to a ``batch/v1`` Job, and tests compare values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..stacks.registry import Size, Stack
from ..stacks.runtime import address_space_limit, thread_env

RUNNER_MODULE = "dass.jobs.runner"


@dataclass(frozen=True)
class ExecutionSpec:
    """How to run one job: a command in a working directory with limits."""

    job_id: str
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    cpu: float = 1.0
    mem_limit_bytes: int | None = None
    #: the size's memory itself (containers and pods limit resident memory by it)
    mem_bytes: int = 0
    timeout_seconds: int = 3600
    #: the Unix account the job runs as (None: the platform's own account)
    run_as: str | None = None
    #: hub groups of the job's owner: where a back end places the run (e.g. a Slurm partition)
    groups: tuple[str, ...] = ()
    #: the stack's container image (container and Kubernetes executors)
    image: str = ""
    #: the stack's name, and the size's GPUs (Kubernetes requests them)
    stack: str = ""
    gpus: int = 0
    #: the hub user the job belongs to (a container executor runs it as their account)
    owner: str = ""
    #: the parameter sweep the job is an element of ("" for none), and its index in it
    sweep_id: str = ""
    sweep_index: int | None = None


def build_execution_spec(
    *,
    job_id: str,
    workdir: str,
    stack: Stack,
    size: Size,
    timeout_seconds: int,
    base_env: dict[str, str],
    memory_headroom_bytes: int = 2 * 1024**3,
    enforce_memory_limit: bool = True,
    gateway_url: str = "",
    token: str = "",
    run_as: str | None = None,
    groups: tuple[str, ...] = (),
    owner: str = "",
    sweep_id: str = "",
    sweep_index: int | None = None,
) -> ExecutionSpec:
    """The command, environment and limits of a job run.

    The environment is built from ``base_env`` (a few harmless variables such as ``PATH`` and
    ``LANG``), never from the service's own environment: the service's hub token and the
    storage credentials must not reach user code. The job gets only the data gateway's
    address (``DASS_SERVICE_URL``) and its own token (``DASS_TOKEN``, see
    :mod:`dass.data.grants`).
    """
    env = dict(base_env)
    env.update(thread_env(size))
    env.update(
        {
            "HOME": workdir,
            "DASS_JOB_ID": job_id,
            "DASS_STACK": stack.name,
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
        }
    )
    if gateway_url:
        env["DASS_SERVICE_URL"] = gateway_url
    if token:
        env["DASS_TOKEN"] = token
    return ExecutionSpec(
        job_id=job_id,
        argv=(stack.python, "-m", RUNNER_MODULE, workdir),
        cwd=workdir,
        env=env,
        cpu=size.cpu,
        mem_limit_bytes=address_space_limit(
            size.mem_bytes, headroom_bytes=memory_headroom_bytes, enforce=enforce_memory_limit
        ),
        mem_bytes=size.mem_bytes,
        timeout_seconds=timeout_seconds,
        run_as=run_as,
        groups=tuple(sorted(groups)),
        image=stack.image,
        stack=stack.name,
        gpus=size.gpus,
        owner=owner,
        sweep_id=sweep_id,
        sweep_index=sweep_index,
    )


def build_runner_spec(
    *,
    job: dict[str, Any],
    notebook: str,
    datasets: list[dict[str, Any]],
    gateway_url: str,
    derived: dict[str, Any],
    stack_url: str = "",
    size: Size,
    cell_timeout: int | None,
    kernel_name: str = "python3",
) -> dict[str, Any]:
    """The ``spec.json`` the runner reads (see :mod:`dass.jobs.runner`): no storage location
    or credential, only the data gateway's address (the job's token is in its environment)."""
    return {
        "job_id": job["id"],
        "owner": job["owner"],
        "notebook": notebook,
        "notebook_source": job["notebook"],
        "parameters": job["parameters"],
        "datasets": datasets,
        "gateway": {"url": gateway_url},
        "derived": derived,
        "stack": job["stack"],
        "stack_url": stack_url,
        "size": {"name": size.name, "cpu": size.cpu, "mem_gib": size.mem_gib},
        "kernel_name": kernel_name,
        "cell_timeout": cell_timeout,
        "created": job["created_at"],
        # the parameter sweep the job is an element of (the results' dataset.json records it)
        **({"sweep": {"id": job["sweep_id"], "index": job["sweep_index"]}} if job.get("sweep_id") else {}),
    }

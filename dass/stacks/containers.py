"""Pure builders of a container run: what sessions and jobs become on the container back end.

A session (:class:`~dass.stacks.session.SessionSpec`) and a job
(``dass.jobs.spec.ExecutionSpec``) are both rendered into one :class:`ContainerRun` — the
stack's image, the user's ``uid:gid``, the size's CPU and memory, the folders to bind, the
environment *names* to pass — and :func:`podman_run_argv` turns that into the ``podman run``
command line. Nothing here starts a process; :func:`podman` and :func:`container_state` are
the two small calls to the engine both back ends share.

Secrets never go on a command line (``ps`` shows it to every user): the argv carries
``--env NAME`` without a value, and the caller passes the values in podman's own environment
(:meth:`ContainerRun.process_env`), which only root reads.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from typing import Mapping, Sequence

#: the label every dass container carries: ``session`` or ``job``
KIND_LABEL = "dass.kind"
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]+")


def container_name(*parts: str) -> str:
    """A container name podman accepts, from ``parts`` (``dass-session-alice``).

    Examples
    --------
    >>> container_name("dass-session", "alice@lab", "")
    'dass-session-alice-lab'
    """
    words = [_NAME_BAD.sub("-", p).strip("-.") for p in parts if p]
    return "-".join(w for w in words if w)[:200]


@dataclass(frozen=True)
class Bind:
    """A host folder bound into the container (at the same path unless ``target`` is set)."""

    source: str
    target: str = ""
    read_only: bool = False

    def option(self) -> str:
        target = self.target or self.source
        for path in (self.source, target):
            if "," in path or "=" in path:
                raise ValueError(f"cannot bind {path!r} into a container: ',' and '=' are not allowed in its path")
        return f"type=bind,source={self.source},target={target}" + (",ro=true" if self.read_only else "")


@dataclass(frozen=True)
class ContainerRun:
    """One container: image, identity, limits, folders and environment (values kept apart)."""

    name: str
    image: str
    argv: tuple[str, ...]
    #: ``uid:gid`` the processes run as
    user: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    workdir: str = ""
    binds: tuple[Bind, ...] = ()
    #: CPUs (a CFS quota); 0: none
    cpu: float = 0
    #: memory (and memory + swap: no swap beyond it) in bytes; 0: none
    mem_bytes: int = 0
    pids_limit: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    #: the image's file system read-only (podman then mounts tmpfs on /tmp, /var/tmp, /run)
    read_only: bool = True

    def process_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """podman's own environment: ``base`` (PATH…) plus the values of :attr:`env`."""
        return {**base, **self.env}


def podman_run_argv(run: ContainerRun, *, podman: Sequence[str] = ("podman",), detach: bool = True) -> list[str]:
    """The ``podman run`` command line of ``run``: a leftover container of the same name
    replaced, the image never pulled, host network (it listens on 127.0.0.1), an
    init process (catatonit reaps the kernels' children), no capabilities, no new privileges,
    the limits, the binds, the labels and ``--env NAME`` for each variable (values in the
    environment, see :meth:`ContainerRun.process_env`).

    Examples
    --------
    >>> run = ContainerRun(name="dass-job-1", image="dass-stack-sem:0.1.0", argv=("python", "-V"),
    ...                    user="61001:61001", env={"DASS_TOKEN": "secret"}, cpu=1, mem_bytes=2**31,
    ...                    binds=(Bind("/srv/jobs/1"),), workdir="/srv/jobs/1")
    >>> argv = podman_run_argv(run)
    >>> "secret" in " ".join(argv), argv[argv.index("--env") + 1], argv[argv.index("--memory") + 1]
    (False, 'DASS_TOKEN', '2147483648')
    >>> argv[-3:]
    ['dass-stack-sem:0.1.0', 'python', '-V']
    """
    argv = [*podman, "run"]
    if detach:
        argv.append("--detach")
    argv += [
        "--name", run.name,
        "--replace",  # a leftover of the same name (a service or hub killed mid-stop) goes
        "--pull", "never",  # images are built here (make images); never fetched from a registry
        "--network", "host",
        "--init",
        "--user", run.user,
        "--cap-drop", "all",
        "--security-opt", "no-new-privileges",
    ]
    if run.read_only:
        argv.append("--read-only")
    if run.workdir:
        argv += ["--workdir", run.workdir]
    if run.cpu:
        argv += ["--cpus", f"{float(run.cpu):g}"]
    if run.mem_bytes:
        argv += ["--memory", str(int(run.mem_bytes)), "--memory-swap", str(int(run.mem_bytes))]
    if run.pids_limit:
        argv += ["--pids-limit", str(int(run.pids_limit))]
    for key, value in sorted(run.labels.items()):
        argv += ["--label", f"{key}={value}"]
    for bind in run.binds:
        argv += ["--mount", bind.option()]
    for key in sorted(run.env):
        argv += ["--env", key]
    argv += [run.image, *run.argv]
    return argv


def podman(command: Sequence[str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``podman ARGS`` (``command`` is the podman command line, e.g. ``["podman"]``)."""
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)


def container_state(command: Sequence[str], name: str) -> dict | None:
    """``State`` of container ``name`` as ``podman inspect`` reports it (``Running``,
    ``ExitCode``, ``Status``…), or None when there is no such container."""
    done = podman(command, "container", "inspect", "--format", "{{json .State}}", name, timeout=60)
    if done.returncode != 0:
        return None
    try:
        state = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return state if isinstance(state, dict) else None

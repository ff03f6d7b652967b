"""Jobs in containers on one machine: the stack's image, run by podman as the job's owner.

:class:`ContainerExecutor` (``c.JobManager.executor_class =
"dass.jobs.container.ContainerExecutor"``) renders a job's
:class:`~dass.jobs.spec.ExecutionSpec` into one :class:`~dass.stacks.containers.ContainerRun`:
``python -m dass.jobs.runner WORKDIR`` in the stack's image (tagged with the dass version when
it names no tag), as the Unix account of the job's owner (``c.UserAccounts``), with the size's
CPUs and memory as container limits, on the host network (the data gateway on 127.0.0.1), the
job's folder bound at its own path (and nothing else of the host), and only the spec's
environment (the job's token among it, passed through podman's environment, never its
command line).

The handle's state is the container's name and the job folder. A ``podman wait`` per running
container (a subprocess, no thread held) records its exit status, keeps its output as
``runner.out``, removes it and wakes the manager; ``status`` answers from that record, so the
service's event loop never waits for podman. ``adopt`` finds a job's container again by its
name after a restart, and ``status`` then watches it the same way.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from traitlets import Bool, Integer, List, Unicode, default

from ..stacks.containers import (
    KIND_LABEL,
    Bind,
    ContainerRun,
    container_name,
    container_state,
    podman,
    podman_run_argv,
)
from ..stacks.container import image_ref
from .executor import LOG_FILE, Executor, Handle, read_job_log
from .spec import RUNNER_MODULE, ExecutionSpec

#: variables of a job's environment that belong to the host (the image has its own PATH)
_HOST_ONLY = ("PATH",)
#: what podman itself needs of the service's environment (the job's values are added to it)
_PODMAN_ENV = ("PATH", "HOME", "LANG", "XDG_RUNTIME_DIR", "CONTAINERS_CONF")


def _dass_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dass")
    except PackageNotFoundError:  # pragma: no cover
        return "latest"


class ContainerExecutor(Executor):
    """Jobs as podman containers of the stack's image (see the module docstring)."""

    name = "container"
    #: the job folder is bound into the container at its own path
    shares_files = True

    podman_command = List(Unicode(), ["podman"], help="The podman command line (rootful podman).").tag(config=True)

    image_tag = Unicode(
        help="""Tag added to a stack's image name when it names none. Default: the installed dass
        version, the tag ``make images`` gives.""",
    ).tag(config=True)

    @default("image_tag")
    def _default_image_tag(self) -> str:
        return _dass_version()

    python = Unicode(
        "python", help="The Python that runs the job's runner inside the image (on the image's PATH)."
    ).tag(config=True)

    pids_limit = Integer(4096, help="The most processes and threads one job's container may run.").tag(config=True)

    read_only_image = Bool(
        True, help="Run jobs on a read-only image file system (tmpfs /tmp); the job folder stays writable."
    ).tag(config=True)

    kill_grace_seconds = Integer(
        5, help="Seconds between SIGTERM and SIGKILL when a job's container is cancelled or times out."
    ).tag(config=True)

    as_owner = Bool(
        True,
        help="""Run each job as the Unix account of its owner (the spec's ``run_as``, else the
        owner's account of ``c.UserAccounts``; the job folder is given to that account). False:
        as the platform's own account.""",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: exit statuses of ended containers (they are removed once it is known)
        self._exits: dict[str, int] = {}
        #: ``podman wait`` of each running container: status() answers from these without
        #: calling podman in the service's event loop
        self._watching: dict[str, asyncio.Task] = {}

    # -- rendering ------------------------------------------------------------------------------
    def _account(self, spec: ExecutionSpec):
        """The account the job runs as: ``spec.run_as`` when the manager named one, else the
        account of the job's owner (``c.UserAccounts``, made at first use); None: the
        platform's own (``as_owner`` off, or no owner)."""
        from ..data.accounts import Account, UserAccounts

        if not self.as_owner:
            return None
        if spec.run_as:
            import pwd

            entry = pwd.getpwnam(spec.run_as)
            return Account(hub_name=spec.owner or entry.pw_name, name=entry.pw_name, uid=entry.pw_uid,
                           gid=entry.pw_gid, home=Path(entry.pw_dir))
        if not spec.owner:
            return None
        return UserAccounts(parent=self).ensure(spec.owner)

    def container_run(self, spec: ExecutionSpec, uid: int, gid: int) -> ContainerRun:
        """The container of the job of ``spec`` run as ``uid:gid`` (pure)."""
        if not spec.image:
            raise ValueError(f"job {spec.job_id}: its stack has no container image (c.StackRegistry.stacks[…]['image'])")
        env = {k: v for k, v in spec.env.items() if k not in _HOST_ONLY}
        return ContainerRun(
            name=container_name("dass-job", spec.job_id),
            image=image_ref(spec.image, tag=self.image_tag),
            argv=(self.python, "-m", RUNNER_MODULE, spec.cwd),
            user=f"{uid}:{gid}",
            env=env,
            workdir=spec.cwd,
            binds=(Bind(spec.cwd),),
            cpu=spec.cpu,
            mem_bytes=_size_memory(spec),
            pids_limit=self.pids_limit,
            labels={KIND_LABEL: "job", "dass.job": spec.job_id, "dass.owner": spec.owner},
            read_only=self.read_only_image,
        )

    def _give_folder(self, spec: ExecutionSpec, account) -> None:
        """The job folder and the files the service wrote in it to the owner's account; the
        read-only view of the inputs (``datasets/``) stays the platform's."""
        if account is None or account.is_platform:
            return
        folder = Path(spec.cwd)
        account.chown(folder)
        for entry in folder.iterdir():
            if entry.name != "datasets":
                account.chown(entry, recursive=True)

    # -- the Executor interface -----------------------------------------------------------------
    async def start(self, spec: ExecutionSpec) -> Handle:
        account = await asyncio.to_thread(self._account, spec)
        uid, gid = (account.uid, account.gid) if account is not None else (os.geteuid(), os.getegid())
        await asyncio.to_thread(self._give_folder, spec, account)
        run = self.container_run(spec, uid, gid)
        argv = podman_run_argv(run, podman=self.podman_command)
        base = {k: os.environ[k] for k in _PODMAN_ENV if k in os.environ}
        done = await asyncio.to_thread(_run, argv, run.process_env(base))
        handle = Handle(job_id=spec.job_id, executor=self.name, state={"container": run.name, "workdir": spec.cwd})
        if done.returncode != 0:
            self.log.error("job %s: podman run failed (%s): %s", spec.job_id, done.returncode, done.stderr.strip()[-2000:])
            Path(spec.cwd, LOG_FILE).write_text(f"the job's container could not start: {done.stderr.strip()[-2000:]}\n")
            self._exits[run.name] = 125
        else:
            self.log.info("job %s: started container %s (%s as %s)", spec.job_id, run.name, run.image, run.user)
            self._watch_later(run.name, spec.cwd)
        return handle

    def _watch_later(self, name: str, workdir: str) -> None:
        self._watching[name] = asyncio.get_running_loop().create_task(self._watch(name, workdir))

    async def _watch(self, name: str, workdir: str) -> None:
        """Wait for the container's end (``podman wait``, no thread held), keep its output,
        remove it, record its exit status and tell the manager at once."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.podman_command, "wait", name, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            out, _ = await proc.communicate()
            text = out.decode().strip()
            code = int(text.splitlines()[-1]) if proc.returncode == 0 and text else None
            if code is None:  # podman wait failed: ask for the state once
                state = await asyncio.to_thread(container_state, self.podman_command, name)
                code = -1 if state is None else int(state.get("ExitCode") or 0)
            await asyncio.to_thread(self._keep_output, name, workdir)
            await asyncio.to_thread(podman, self.podman_command, "rm", "--force", "--ignore", name)
            self._exits[name] = code
        finally:
            self._watching.pop(name, None)
        if self.on_exit is not None:
            self.on_exit()

    def status(self, handle: Handle) -> int | None:
        name = str(handle.state.get("container") or "")
        if name in self._exits:
            return self._exits[name]
        if name in self._watching:
            return None
        # a container this executor did not start (adopted after a restart): look once, then watch
        state = container_state(self.podman_command, name)
        if state is None:
            return -1  # gone (removed by someone else, or never started)
        try:
            self._watch_later(name, str(handle.state.get("workdir") or ""))
        except RuntimeError:  # no running event loop: answer from the state alone
            if state.get("Running") or state.get("Status") in ("created", "configured", "initialized"):
                return None
            return int(state.get("ExitCode") or 0)
        return None

    def _keep_output(self, name: str, workdir: str) -> None:
        """The container's own output (the runner's stdout/stderr) as ``runner.out``."""
        done = podman(self.podman_command, "logs", name)
        if workdir and (done.stdout or done.stderr):
            try:
                with open(Path(workdir) / "runner.out", "a") as f:
                    f.write(done.stdout + done.stderr)
            except OSError as e:
                self.log.warning("container %s: output not kept: %s", name, e)

    def read_log(self, handle: Handle, offset: int = 0, limit: int = 1024**2) -> bytes:
        return read_job_log(handle, offset, limit)

    async def cancel(self, handle: Handle) -> None:
        name = str(handle.state.get("container") or "")
        self.log.info("job %s: stopping container %s", handle.job_id, name)
        await asyncio.to_thread(podman, self.podman_command, "stop", "--ignore", "--time",
                                str(self.kill_grace_seconds), name, timeout=self.kill_grace_seconds + 60)
        watch = self._watching.get(name)
        if watch is not None:
            await asyncio.wait([watch], timeout=30)
        else:
            self.status(handle)

    def adopt(self, job_id: str, workdir: str, stored: Handle | None) -> Handle | None:
        if stored is not None and stored.state.get("container"):
            return stored
        name = container_name("dass-job", job_id)
        if container_state(self.podman_command, name) is None:
            return None
        return Handle(job_id=job_id, executor=self.name, state={"container": name, "workdir": workdir})

    def local_result(self, handle: Handle | None, workdir: str) -> dict[str, Any] | None:
        from .runner import load_result

        return load_result(workdir)


def _size_memory(spec: ExecutionSpec) -> int:
    """The container's memory limit: the size's own memory (a container limits resident
    memory; ``mem_limit_bytes`` is the address-space limit of the local executor)."""
    return int(spec.mem_bytes or spec.mem_limit_bytes or 0)


def _run(argv: list[str], env: dict[str, str]):
    import subprocess

    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

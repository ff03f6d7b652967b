"""Executors run a job's :class:`~dass.jobs.spec.ExecutionSpec` somewhere.

``local`` runs the runner as a process on this machine, in a session (process group) of its
own with the size's memory limit; cancel and timeouts kill the whole process tree (the kernel
papermill starts lives in a session of its own, so the tree is walked, not only the group).
A ``kubernetes`` executor will implement the same interface with batch/v1 Jobs.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable

from traitlets import Float
from traitlets.config import LoggingConfigurable

from .spec import ExecutionSpec


@dataclass
class Handle:
    """What an executor needs to find a run again, also after a restart (JSON-able)."""

    job_id: str
    pid: int
    workdir: str


def launch(spec: ExecutionSpec) -> subprocess.Popen:
    """Start the runner of ``spec`` locally: its own session (process group), its working
    directory, the built environment, the memory limit; output to ``runner.out``."""
    limit = spec.mem_limit_bytes

    def preexec() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = open(os.path.join(spec.cwd, "runner.out"), "ab")
    try:
        return subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
    finally:
        out.close()


class Executor(LoggingConfigurable):
    """The interface every executor implements.

    ``on_exit`` (optional) is called, from any thread, as soon as a run ends, so the manager
    need not wait for its next look.
    """

    def __init__(self, on_exit: Callable[[], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.on_exit = on_exit

    async def start(self, spec: ExecutionSpec) -> Handle:
        raise NotImplementedError

    def poll(self, handle: Handle) -> int | None:
        """None while running, else an exit status (-1 when unknown, e.g. an adopted run)."""
        raise NotImplementedError

    async def kill(self, handle: Handle) -> None:
        raise NotImplementedError


class LocalExecutor(Executor):
    """Jobs as local processes."""

    kill_grace_seconds = Float(
        5.0,
        help="Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._procs: dict[int, subprocess.Popen] = {}

    async def start(self, spec: ExecutionSpec) -> Handle:
        proc = launch(spec)
        self._procs[proc.pid] = proc
        self.log.info("job %s: started runner pid %s", spec.job_id, proc.pid)
        if self.on_exit is not None:
            threading.Thread(target=self._notify, args=(proc,), name=f"job-{spec.job_id[:8]}", daemon=True).start()
        return Handle(job_id=spec.job_id, pid=proc.pid, workdir=spec.cwd)

    def _notify(self, proc: subprocess.Popen) -> None:
        proc.wait()
        self.on_exit()

    def _process(self, handle: Handle):
        """The psutil process of a run, or None when it is gone (or the pid was reused)."""
        import psutil

        try:
            p = psutil.Process(handle.pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            if handle.workdir not in " ".join(p.cmdline()):
                return None  # the pid now belongs to something else
            return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def poll(self, handle: Handle) -> int | None:
        proc = self._procs.get(handle.pid)
        if proc is not None:
            status = proc.poll()
            if status is not None:
                self._procs.pop(handle.pid, None)
            return status
        return None if self._process(handle) is not None else -1

    def alive(self, handle: Handle) -> bool:
        return self.poll(handle) is None

    async def kill(self, handle: Handle) -> None:
        import psutil

        root = self._process(handle)
        if root is None:
            self.poll(handle)
            return
        try:
            tree = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            tree = [root]
        self.log.info("job %s: stopping %d processes", handle.job_id, len(tree))
        for p in tree:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = await asyncio.to_thread(psutil.wait_procs, tree, self.kill_grace_seconds)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        await asyncio.to_thread(psutil.wait_procs, alive, 5)
        self.poll(handle)

"""Executors run a job's :class:`~dass.jobs.spec.ExecutionSpec` somewhere.

The :class:`Executor` interface is the seam every back end implements: ``start`` a run and get
an opaque :class:`Handle` (JSON-able state only the executor reads: a pid and folder here, a
Slurm job id or a Kubernetes Job name elsewhere), ask its ``status``, read its ``log``,
``cancel`` it, and ``adopt`` it again after the service restarted, from the stored handle or,
when the service died before storing one, from the executor's own records. The manager keeps
the handle in the job's row and never looks inside it. The elements of a parameter sweep
(:mod:`dass.jobs.sweep`) go through ``start_sweep``: by default each is started like a job; a
back end with a queue of its own (``sweep_at_once``) submits the whole sweep together (Slurm:
one job array), and ``adopt_element`` finds an element's run in the whole's records.

:class:`LocalExecutor` runs the runner as a process on this machine, in a session (process
group) of its own with the size's memory limit; cancel and timeouts kill the whole process
tree (the kernel papermill starts lives in a session of its own, so the tree is walked, not
only the group). It keeps standby runners (:mod:`dass.jobs.standby`: imports done, kernel
running) for the stacks and sizes jobs use, so a job starts without waiting for either.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from traitlets import Bool, Float, Integer
from traitlets.config import LoggingConfigurable

from ..errors import DassError
from .spec import ExecutionSpec

#: the runner's first act is writing this file in its working directory (see dass.jobs.runner)
RUNNER_FILE = "runner.json"
LOG_FILE = "job.log"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Handle:
    """How an executor finds one run again, also after a restart; opaque to the manager."""

    job_id: str
    executor: str
    state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"executor": self.executor, "state": dict(self.state)}

    @classmethod
    def from_json(cls, job_id: str, doc: Any) -> "Handle | None":
        if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict):
            return None
        return cls(job_id=job_id, executor=str(doc.get("executor") or ""), state=dict(doc["state"]))


def launch(spec: ExecutionSpec) -> subprocess.Popen:
    """Start the runner of ``spec`` locally: its own session (process group), its working
    directory, the built environment, the memory limit, as ``spec.run_as``; output to
    ``runner.out``."""
    return _popen(list(spec.argv), cwd=spec.cwd, env=spec.env, limit=spec.mem_limit_bytes,
                  out_path=os.path.join(spec.cwd, "runner.out"), run_as=spec.run_as)


def read_job_log(handle: Handle, offset: int = 0, limit: int = 1024**2) -> bytes:
    """Bytes of ``job.log`` in the run's folder (``handle.state["workdir"]``) from ``offset``;
    b"" when there is none yet (executors whose runs write into a folder the service sees)."""
    path = Path(str(handle.state.get("workdir") or "")) / LOG_FILE
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


def switch_user(name: str | None) -> Callable[[], None]:
    """A ``preexec_fn`` step that makes the child the Unix account ``name`` (its groups, group
    and user); nothing for None or the platform's own account."""
    if not name:
        return lambda: None
    import pwd

    entry = pwd.getpwnam(name)
    if entry.pw_uid == os.geteuid():
        return lambda: None

    def become() -> None:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return become


def _popen(argv: list[str], *, cwd: str, env: dict[str, str], limit: int | None, out_path: str,
           stdin: Any = subprocess.DEVNULL, run_as: str | None = None) -> subprocess.Popen:
    become = switch_user(run_as)

    def preexec() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        become()

    out = open(out_path, "ab")
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
    finally:
        out.close()


#: variables of a job's environment that belong to the job, not to its stack and size (the
#: token goes to a standby runner through its input pipe, never in an argument)
_PER_JOB_ENV = ("HOME", "DASS_JOB_ID", "DASS_TOKEN")


def standby_key(spec: ExecutionSpec) -> tuple:
    """Jobs whose runners are interchangeable before the job is known: same interpreter,
    same memory limit, same Unix account, same environment but for the job's own variables."""
    env = tuple(sorted((k, v) for k, v in spec.env.items() if k not in _PER_JOB_ENV))
    return (spec.argv[0], spec.mem_limit_bytes, spec.run_as, env)


class Executor(LoggingConfigurable):
    """The interface every executor implements.

    ``on_exit`` (optional) is called, from any thread, as soon as a run ends, so the manager
    need not wait for its next look.
    """

    #: the name stored in handles (``Handle.executor``)
    name = "abstract"
    #: whether runs see this machine's folders (the job folder the service prepares): the
    #: service then gives a job a read-only view of its inputs in its folder; otherwise the
    #: runner fetches them through the data gateway
    shares_files = False
    #: whether :meth:`start_sweep` hands a whole sweep to a queue of the back end's own (a
    #: Slurm job array): the manager then gives it every queued element of a sweep at once,
    #: beyond ``c.JobManager.max_concurrency``, and the back end decides how many run at once;
    #: otherwise it gives it as many elements as may run now
    sweep_at_once = False

    def __init__(self, on_exit: Callable[[], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.on_exit = on_exit

    async def start(self, spec: ExecutionSpec) -> Handle:
        """Launch the run of ``spec``; returns its handle."""
        raise NotImplementedError

    async def start_sweep(self, specs: list[ExecutionSpec]) -> list["Handle | DassError"]:
        """Launch the runs of elements of one parameter sweep (same owner, stack, size and
        timeout; ``spec.sweep_index`` tells each one's place). Returns one entry per spec, in
        order: its handle, or the error that refused it (the others run all the same).

        This default starts each with :meth:`start`; a back end with a queue of its own may
        submit them together (:class:`~dass.jobs.slurm.SlurmExecutor`: one job array)."""
        outcomes: list[Handle | DassError] = []
        for spec in specs:
            try:
                outcomes.append(await self.start(spec))
            except DassError as e:
                outcomes.append(e)
            except Exception as e:  # not dass's own (an OS error, a bug): this one fails, the rest start
                self.log.exception("job %s: the %s executor failed while starting it", spec.job_id, self.name)
                outcomes.append(StartFailed.of(self.name, e))
        return outcomes

    async def refresh(self, handles: list[Handle]) -> None:
        """Learn the state of the runs of ``handles`` (the manager calls it once per scheduling
        tick, before ``status``). Executors that ask a remote system (the Kubernetes API) read
        it here, so that ``status`` and ``read_log`` answer without waiting; local ones need not."""

    def status(self, handle: Handle) -> int | None:
        """None while the run goes on, else its exit status (-1 when unknown, e.g. adopted)."""
        raise NotImplementedError

    def read_log(self, handle: Handle, offset: int = 0, limit: int = 1024**2) -> bytes:
        """Bytes of the run's log (``job.log``) from ``offset``; b"" when there is none yet."""
        raise NotImplementedError

    async def cancel(self, handle: Handle) -> None:
        """End the run and everything it started."""
        raise NotImplementedError

    def adopt(self, job_id: str, workdir: str, stored: Handle | None) -> Handle | None:
        """Find a run again after a restart: from ``stored`` when the manager kept its handle,
        else from the executor's own records. None: the run never started."""
        raise NotImplementedError

    def adopt_element(self, job_id: str, workdir: str, stored: Handle | None, sweep_id: str,
                      sweep_index: int) -> Handle | None:
        """:meth:`adopt` for the element ``sweep_index`` of sweep ``sweep_id`` (a back end that
        submitted the sweep together finds the element's run in the whole's records)."""
        return self.adopt(job_id, workdir, stored)

    def local_result(self, handle: Handle | None, workdir: str) -> dict[str, Any] | None:
        """The run's result where the runner could not write it to repository storage
        (the manager reads results from storage first); None when there is none."""
        return None

    def close(self) -> None:
        """The service stops: release what the executor holds (running jobs go on)."""


class StartFailed(DassError):
    """An executor failed to start a run with an error that is not dass's own (an OS error, a
    bug): the job fails with this reason instead of staying IN_PROGRESS with nothing running."""

    @classmethod
    def of(cls, executor: str, error: BaseException) -> "StartFailed":
        """The error for ``error``, raised by the executor named ``executor``: the job's owner is
        told its kind, the service's log has the rest (it may name the machine's paths)."""
        return cls(f"the {executor} executor could not start the job: {type(error).__name__}: {error}",
                   user_message=f"the {executor} executor could not start the job ({type(error).__name__}); "
                                "the service's log has the details for the operator")


class LocalExecutor(Executor):
    """Jobs as local processes (handle state: the runner's pid and working directory)."""

    name = "local"
    shares_files = True

    kill_grace_seconds = Float(
        5.0,
        help="Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.",
    ).tag(config=True)

    standby = Bool(
        True,
        help="""Keep a runner on standby (imports done, Python kernel running) for every stack
        and size jobs have used, so that the next such job starts at once. Each costs an
        idle interpreter and kernel (about 150 MB). A standby is replaced when its job ends.""",
    ).tag(config=True)

    standby_per_kind = Integer(
        1,
        help="Standby runners kept per stack and size (see ``standby``).",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._procs: dict[int, subprocess.Popen] = {}
        self._standby: dict[tuple, list[subprocess.Popen]] = {}
        self._lock = threading.Lock()

    def _handle(self, job_id: str, pid: int, workdir: str) -> Handle:
        import psutil

        state: dict[str, Any] = {"pid": int(pid), "workdir": str(workdir)}
        try:
            state["created"] = psutil.Process(pid).create_time()
        except psutil.Error:
            pass
        return Handle(job_id=job_id, executor=self.name, state=state)

    async def start(self, spec: ExecutionSpec) -> Handle:
        proc = self._take_standby(spec) if self.standby else None
        if proc is None:
            proc = launch(spec)
            how = "started runner"
        else:
            how = "handed to standby runner"
        self._procs[proc.pid] = proc
        self.log.info("job %s: %s pid %s", spec.job_id, how, proc.pid)
        threading.Thread(target=self._notify, args=(proc, spec), name=f"job-{spec.job_id[:8]}", daemon=True).start()
        return self._handle(spec.job_id, proc.pid, spec.cwd)

    def _notify(self, proc: subprocess.Popen, spec: ExecutionSpec) -> None:
        proc.wait()
        if self.standby:
            self._fill_standby(spec)  # after the job, so a warming runner never slows it down
        if self.on_exit is not None:
            self.on_exit()

    # -- standby runners ----------------------------------------------------------------------

    @staticmethod
    def _pool(spec: ExecutionSpec) -> Path:
        """The standby runners' folder of ``spec``'s Unix account (theirs alone)."""
        return Path(spec.cwd).parent / (f".standby-{spec.run_as}" if spec.run_as else ".standby")

    def _take_standby(self, spec: ExecutionSpec) -> subprocess.Popen | None:
        """A ready standby runner for ``spec``'s kind, given the job; None when there is none."""
        from .standby import READY_SUFFIX

        pool = self._pool(spec)
        with self._lock:
            waiting = self._standby.get(standby_key(spec), [])
            for proc in list(waiting):
                if proc.poll() is not None:
                    waiting.remove(proc)
                    continue
                if not (pool / f"{proc.pid}{READY_SUFFIX}").exists():
                    continue  # still warming
                waiting.remove(proc)
                break
            else:
                return None
        # the runner's first act, written now so a restart finds the job even before it runs
        Path(spec.cwd, RUNNER_FILE).write_text(json.dumps({"pid": proc.pid, "standby": True}))
        order = json.dumps({"workdir": spec.cwd, "env": {k: spec.env[k] for k in _PER_JOB_ENV if k in spec.env}})
        try:
            assert proc.stdin is not None
            proc.stdin.write((order + "\n").encode())
            proc.stdin.close()
        except (OSError, ValueError, AssertionError) as e:
            self.log.warning("job %s: standby runner %s lost (%s); starting a fresh one", spec.job_id, proc.pid, e)
            Path(spec.cwd, RUNNER_FILE).unlink(missing_ok=True)
            return None
        return proc

    def _fill_standby(self, spec: ExecutionSpec) -> None:
        """Start standby runners of ``spec``'s kind up to ``standby_per_kind``."""
        pool = self._pool(spec)
        key = standby_key(spec)
        with self._lock:
            waiting = [p for p in self._standby.get(key, []) if p.poll() is None]
            self._standby[key] = waiting
            missing = self.standby_per_kind - len(waiting)
            for _ in range(max(0, missing)):
                pool.mkdir(mode=0o700, exist_ok=True)
                if spec.run_as:
                    import pwd

                    entry = pwd.getpwnam(spec.run_as)
                    os.chown(pool, entry.pw_uid, entry.pw_gid)
                env = {k: v for k, v in spec.env.items() if k not in _PER_JOB_ENV}
                env["HOME"] = str(pool)
                argv = [spec.argv[0], "-m", "dass.jobs.standby", str(pool)]
                proc = _popen(argv, cwd=str(pool), env=env, limit=spec.mem_limit_bytes,
                              out_path=str(pool / "standby.out"), stdin=subprocess.PIPE, run_as=spec.run_as)
                waiting.append(proc)
                self.log.info("standby runner %s started for %s", proc.pid, spec.env.get("DASS_STACK", "?"))

    def warm_up(self, spec: ExecutionSpec) -> None:
        """Start standby runners for the kind of ``spec`` now (e.g. at service start)."""
        if self.standby:
            self._fill_standby(spec)

    def close(self) -> None:
        """Let the standby runners go (they end when their input closes)."""
        with self._lock:
            for waiting in self._standby.values():
                for proc in waiting:
                    try:
                        if proc.stdin is not None:
                            proc.stdin.close()
                    except OSError:
                        pass
            self._standby.clear()

    def _process(self, handle: Handle):
        """The psutil process of a run, or None when it is gone (or the pid was reused)."""
        import psutil

        try:
            p = psutil.Process(int(handle.state["pid"]))
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            created = handle.state.get("created")
            if created is not None:
                if abs(p.create_time() - float(created)) > 0.05:
                    return None  # the pid now belongs to something else
            elif str(handle.state["workdir"]) not in " ".join(p.cmdline()):
                return None  # the pid now belongs to something else
            return p
        except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError, TypeError):
            return None

    def status(self, handle: Handle) -> int | None:
        pid = int(handle.state.get("pid") or 0)
        proc = self._procs.get(pid)
        if proc is not None:
            code = proc.poll()
            if code is not None:
                self._procs.pop(pid, None)
            return code
        return None if self._process(handle) is not None else -1

    def alive(self, handle: Handle) -> bool:
        return self.status(handle) is None

    def read_log(self, handle: Handle, offset: int = 0, limit: int = 1024**2) -> bytes:
        return read_job_log(handle, offset, limit)

    async def cancel(self, handle: Handle) -> None:
        import psutil

        root = self._process(handle)
        if root is None:
            self.status(handle)
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
        self.status(handle)

    def adopt(self, job_id: str, workdir: str, stored: Handle | None) -> Handle | None:
        if stored is not None and stored.state.get("pid"):
            return stored
        pid = _runner_pid(workdir) or _find_runner(workdir)
        return None if pid is None else self._handle(job_id, pid, workdir)

    def local_result(self, handle: Handle | None, workdir: str) -> dict[str, Any] | None:
        from .runner import load_result

        return load_result(workdir)


def _runner_pid(workdir: str) -> int | None:
    """The pid the runner wrote into ``runner.json`` (its first act), or None."""
    try:
        return int(json.loads((Path(workdir) / RUNNER_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _find_runner(workdir: str) -> int | None:
    """A live runner process of ``workdir`` that had no time to write ``runner.json``."""
    import psutil

    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "dass.jobs.runner" in cmd and str(workdir) in cmd:
            return int(p.info["pid"])
    return None

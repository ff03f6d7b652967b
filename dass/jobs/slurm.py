"""Jobs on a Slurm cluster: ``sbatch`` of the same runner every executor runs.

The batch scripts are built by the pure builders of :mod:`dass.jobs.slurm_script`
(:func:`build_batch_script`, :func:`build_array_script`), which also read Slurm's answers
(:func:`parse_scontrol`, :func:`exit_status`); their names are importable from here too.

:class:`SlurmExecutor` submits as ``spec.run_as``: as root with ``sbatch --uid/--gid``, else
through ``exec_prefix`` (``sudo -n -u {run_as}``, as batchspawner does), the partition from
:class:`~dass.stacks.placement.SlurmPlacement` (shared with the session back end). Its handle
state is ``{"slurm_id", "workdir"}``;
``status`` reads one cached ``scontrol -o show job`` per ``status_cache_seconds`` for all runs
(and ``sacct`` when the cluster keeps accounting).

A parameter sweep is one job array: :meth:`SlurmExecutor.start_sweep` submits the script of
:func:`build_array_script` with one ``sbatch``. An element's handle names its task,
``slurm_id = "<array job id>_<index>"``, which ``scontrol``, ``sacct`` and ``scancel`` take as
they take a job id (:func:`parse_scontrol` files pending tasks under that name too).
"""

from __future__ import annotations

import asyncio
import math
import os
import pwd
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Integer, List, Unicode

from ..errors import DassError
from ..stacks.placement import SlurmPlacement, choose_partition
from .executor import LOG_FILE, RESULT_FILE, RUNNER_FILE, Executor, Handle, read_job_log
from .slurm_script import (
    ACTIVE_STATES,
    ENDED_BY_SLURM,
    LOG_NAME,
    array_tasks,
    build_array_script,
    build_batch_script,
    exit_status,
    job_name,
    parse_scontrol,
    slurm_time,
    task_ranges,
)
from .spec import ExecutionSpec

__all__ = [
    "ACTIVE_STATES", "ENDED_BY_SLURM", "LOG_NAME", "SlurmError", "SlurmExecutor", "array_tasks",
    "build_array_script", "build_batch_script", "choose_partition", "exit_status", "job_name",
    "parse_scontrol", "slurm_time", "task_ranges",
]


class SlurmError(DassError):
    """A Slurm command failed; the message says which and why."""


class SlurmExecutor(SlurmPlacement, Executor):
    """Jobs as Slurm batch jobs (``sbatch``), each as its owner's Unix account.

    Select it with ``c.JobManager.executor_class = "dass.jobs.slurm.SlurmExecutor"``.
    """

    name = "slurm"
    #: runs happen on cluster nodes: they fetch their inputs through the data gateway, not
    #: from a view in their folder (the folder itself must be on a filesystem the nodes share)
    shares_files = False
    #: a sweep is one job array, submitted whole; Slurm's queue decides how many tasks run
    sweep_at_once = True

    array_max_running = Integer(
        0,
        help="""The most tasks of one sweep's job array that Slurm runs at the same time
        (``sbatch --array=0-99%N``); 0 leaves it to the cluster's limits. A whole sweep is
        submitted at once, beyond ``c.JobManager.max_concurrency``.""",
    ).tag(config=True)

    extra_options = List(
        Unicode(),
        help="""More ``sbatch`` options for every job, one per item (``--account=facility``,
        ``--qos=normal``, ``--gres=gpu:1``, ``--constraint=…``).""",
    ).tag(config=True)

    export = Unicode(
        "NONE",
        help="""``sbatch --export`` mode: ``NONE`` or ``NIL``. Either way the job's processes get
        exactly the job's variables (the batch script starts the runner with ``env -i``); with
        ``NIL`` Slurm also skips loading the user's login environment on the node.""",
    ).tag(config=True)

    slurm_conf = Unicode(
        "",
        help="""``slurm.conf`` of the cluster, given to the Slurm commands as ``SLURM_CONF``
        ("": the Slurm client's own default, usually ``/etc/slurm/slurm.conf``).""",
    ).tag(config=True)

    bin_dir = Unicode(
        "",
        help='Folder of ``sbatch``, ``scontrol``, ``squeue``, ``scancel`` ("": found on PATH).',
    ).tag(config=True)

    exec_prefix = List(
        Unicode(),
        ["sudo", "-n", "-u", "{run_as}"],
        help="""Command prefix that runs ``sbatch`` and ``scancel`` as the job's Unix account
        when the service is not root (``{run_as}`` is replaced), as batchspawner's
        ``exec_prefix``; needs a sudo rule for those two commands. As root the service uses
        ``sbatch --uid/--gid`` instead.""",
    ).tag(config=True)

    use_sacct = Bool(
        False,
        help="""Ask ``sacct`` for runs that ``scontrol`` no longer knows (finished longer than
        the cluster's ``MinJobAge`` ago). Needs Slurm accounting (slurmdbd).""",
    ).tag(config=True)

    status_cache_seconds = Float(
        1.0, help="Seconds one ``scontrol show job`` answer serves the status of every run."
    ).tag(config=True)

    command_timeout = Float(
        30.0, help="Seconds a Slurm command (sbatch, scontrol, scancel) may take before it counts as failed."
    ).tag(config=True)

    cancel_timeout = Float(
        60.0,
        help="""Seconds ``cancel`` waits for Slurm to end a cancelled run (Slurm sends SIGTERM,
        then SIGKILL after the cluster's ``KillWait``).""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._snapshot: dict[str, dict[str, str]] = {}
        self._snapshot_at = -math.inf

    # -- commands ---------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SBATCH_")}
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env

    def _as_user(self, run_as: str | None, argv: list[str], *, sbatch: bool) -> list[str]:
        if not run_as or run_as == pwd.getpwuid(os.geteuid()).pw_name:
            return argv
        if os.geteuid() == 0 and sbatch:
            import grp

            account = pwd.getpwnam(run_as)
            return [argv[0], f"--uid={account.pw_uid}", f"--gid={grp.getgrgid(account.pw_gid).gr_name}", *argv[1:]]
        if os.geteuid() == 0:
            return argv  # root may scancel any job
        return [p.format(run_as=run_as) for p in self.exec_prefix] + argv

    def _run(self, argv: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True, env=self._env(),
                               timeout=self.command_timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SlurmError(f"{argv[0]} failed: {e}") from None
        if check and r.returncode != 0:
            raise SlurmError(f"{' '.join(argv[:1])} exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
        return r

    # -- the interface ----------------------------------------------------------------------

    def partition_for(self, spec: ExecutionSpec) -> str:
        return self.partition_for_groups(spec.groups)

    async def start(self, spec: ExecutionSpec) -> Handle:
        script = build_batch_script(spec, partition=self.partition_for(spec), extra_options=self.extra_options,
                                    export=self.export)
        argv = self._as_user(spec.run_as, [self._bin("sbatch"), "--parsable"], sbatch=True)
        r = await asyncio.to_thread(self._run, argv, input=script)
        slurm_id = r.stdout.strip().split(";")[0]
        if not slurm_id.isdigit():
            raise SlurmError(f"job {spec.job_id}: sbatch answered {r.stdout.strip()!r}, not a job id")
        self._snapshot_at = -math.inf
        self.log.info("job %s: submitted as Slurm job %s (user %s, partition %s)", spec.job_id, slurm_id,
                      spec.run_as or "service", self.partition_for(spec) or "default")
        return Handle(job_id=spec.job_id, executor=self.name,
                      state={"slurm_id": slurm_id, "workdir": spec.cwd, "run_as": spec.run_as or ""})

    async def start_sweep(self, specs: list[ExecutionSpec]) -> list[Handle | DassError]:
        """Submit the elements as one job array (one ``sbatch --array``); each element's handle
        names its task, ``<array job id>_<sweep index>``, for status, log and ``scancel``."""
        first = specs[0]
        try:
            script = build_array_script(specs, partition=self.partition_for(first), extra_options=self.extra_options,
                                        export=self.export, max_running=self.array_max_running)
        except ValueError as e:
            return [SlurmError(f"sweep {first.sweep_id}: no batch script: {e}")] * len(specs)
        argv = self._as_user(first.run_as, [self._bin("sbatch"), "--parsable"], sbatch=True)
        try:
            r = await asyncio.to_thread(self._run, argv, input=script)
        except SlurmError as e:
            return [e] * len(specs)
        array_id = r.stdout.strip().split(";")[0]
        if not array_id.isdigit():
            return [SlurmError(f"sweep {first.sweep_id}: sbatch answered {r.stdout.strip()!r}, not a job id")] * len(specs)
        self._snapshot_at = -math.inf
        self.log.info("sweep %s: %d jobs submitted as Slurm job array %s (user %s, partition %s)", first.sweep_id,
                      len(specs), array_id, first.run_as or "service", self.partition_for(first) or "default")
        return [self._element_handle(spec.job_id, spec.cwd, array_id, spec.sweep_index, spec.run_as or "")
                for spec in specs]

    def _element_handle(self, job_id: str, workdir: str, array_id: str, task: int, run_as: str) -> Handle:
        return Handle(job_id=job_id, executor=self.name,
                      state={"slurm_id": f"{array_id}_{task}", "array_id": array_id, "task": task,
                             "workdir": workdir, "run_as": run_as})

    def _jobs(self, fresh: bool = False) -> dict[str, dict[str, str]]:
        """Every job slurmctld still holds, by Slurm id (cached ``status_cache_seconds``)."""
        now = time.monotonic()
        if fresh or now - self._snapshot_at > self.status_cache_seconds:
            r = self._run([self._bin("scontrol"), "-o", "show", "job"], check=False)
            if r.returncode != 0 and "No jobs in the system" not in (r.stdout + r.stderr):
                raise SlurmError(f"scontrol show job exited {r.returncode}: {r.stderr.strip()}")
            self._snapshot = parse_scontrol(r.stdout)
            self._snapshot_at = now
        return self._snapshot

    def record(self, handle: Handle, fresh: bool = False) -> dict[str, str] | None:
        """Slurm's record of the run (``JobState``, ``Reason``, ``ExitCode``, …); None when
        Slurm no longer knows it."""
        slurm_id = str(handle.state.get("slurm_id") or "")
        if not slurm_id:
            return None
        rec = self._jobs(fresh).get(slurm_id)
        if rec is None and self.use_sacct:
            r = self._run([self._bin("sacct"), "-n", "-P", "-X", "-j", slurm_id, "-o", "State,ExitCode"], check=False)
            line = r.stdout.strip().splitlines()[:1]
            if r.returncode == 0 and line:
                state, _, code = line[0].partition("|")
                rec = {"JobId": slurm_id, "JobState": state.split()[0], "ExitCode": code, "Reason": "None"}
        return rec

    def status(self, handle: Handle) -> int | None:
        try:
            rec = self.record(handle)
        except SlurmError as e:
            self.log.warning("job %s: Slurm not reachable (%s); still counted as running", handle.job_id, e)
            return None
        if rec is None:
            return -1  # Slurm forgot it: it ended; the result says how
        return exit_status(rec.get("JobState", ""), rec.get("ExitCode", ""))

    def read_log(self, handle: Handle, offset: int = 0, limit: int = 1024**2) -> bytes:
        return read_job_log(handle, offset, limit)

    async def cancel(self, handle: Handle) -> None:
        slurm_id = str(handle.state.get("slurm_id") or "")
        if not slurm_id:
            return
        argv = self._as_user(handle.state.get("run_as") or None, [self._bin("scancel"), slurm_id], sbatch=False)
        await asyncio.to_thread(self._run, argv, check=False)
        self.log.info("job %s: scancel %s", handle.job_id, slurm_id)
        deadline = time.monotonic() + self.cancel_timeout
        while time.monotonic() < deadline:
            rec = await asyncio.to_thread(self.record, handle, True)
            if rec is None or exit_status(rec.get("JobState", ""), rec.get("ExitCode", "")) is not None:
                return
            await asyncio.sleep(0.2)
        self.log.warning("job %s: Slurm job %s still running %s s after scancel", handle.job_id, slurm_id,
                         self.cancel_timeout)

    def find(self, job_id: str) -> dict[str, str] | None:
        """Slurm's newest record of a dass job, by its job name and comment."""
        mine = [rec for rec in self._jobs(fresh=True).values()
                if rec.get("JobName") == job_name(job_id) and rec.get("Comment") == f"dass-job:{job_id}"]
        return max(mine, key=lambda r: int(r["JobId"]), default=None)

    def adopt(self, job_id: str, workdir: str, stored: Handle | None) -> Handle | None:
        if stored is not None and stored.state.get("slurm_id"):
            return stored
        rec = self.find(job_id)
        if rec is not None:
            self.log.info("job %s: found as Slurm job %s (%s)", job_id, rec["JobId"], rec.get("JobState"))
            user = re.sub(r"\(.*$", "", rec.get("UserId", ""))
            return Handle(job_id=job_id, executor=self.name,
                          state={"slurm_id": rec["JobId"], "workdir": workdir, "run_as": user})
        if any((Path(workdir) / name).exists() for name in (RUNNER_FILE, RESULT_FILE, LOG_FILE)):
            # it ran, and Slurm has forgotten it: finished; its result tells how
            return Handle(job_id=job_id, executor=self.name, state={"slurm_id": "", "workdir": workdir})
        return None

    def find_element(self, sweep_id: str, task: int) -> dict[str, str] | None:
        """Slurm's newest record of element ``task`` of a sweep's job array (its own, or its
        array's while it is pending), by the array's job name and comment."""
        jobs = self._jobs(fresh=True)
        mine = [rec for key, rec in jobs.items()
                if key.endswith(f"_{task}") and rec.get("JobName") == f"dass-sweep-{sweep_id}"
                and rec.get("Comment") == f"dass-sweep:{sweep_id}"]
        return max(mine, key=lambda r: int(r["ArrayJobId"]), default=None)

    def adopt_element(self, job_id: str, workdir: str, stored: Handle | None, sweep_id: str,
                      sweep_index: int) -> Handle | None:
        if stored is not None and stored.state.get("slurm_id"):
            return stored
        rec = self.find_element(sweep_id, sweep_index)
        if rec is not None:
            self.log.info("job %s: found as task %s of Slurm job array %s (%s)", job_id, sweep_index,
                          rec["ArrayJobId"], rec.get("JobState"))
            user = re.sub(r"\(.*$", "", rec.get("UserId", ""))
            return self._element_handle(job_id, workdir, rec["ArrayJobId"], sweep_index, user)
        return self.adopt(job_id, workdir, None)

    def local_result(self, handle: Handle | None, workdir: str) -> dict[str, Any] | None:
        from .runner import load_result

        result = load_result(workdir)
        if result is not None or handle is None:
            return result
        try:
            rec = self.record(handle, fresh=True)
        except SlurmError:
            return None
        state = (rec or {}).get("JobState", "")
        if state in ENDED_BY_SLURM:
            why = ENDED_BY_SLURM[state]
            slurm_id = handle.state.get("slurm_id") or rec["JobId"]
            return {"status": "FAILED", "reason": f"{why} (Slurm job {slurm_id}, {state}, reason {rec.get('Reason', '?')})"}
        return None

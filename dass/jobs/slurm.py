"""Jobs on a Slurm cluster: ``sbatch`` of the same runner every executor runs.

:func:`build_batch_script` is the pure builder: an :class:`~dass.jobs.spec.ExecutionSpec` (and
the partition chosen for it) becomes the text of a batch script, tested by value. It carries
everything in ``#SBATCH`` lines, and the script is handed to ``sbatch`` on its standard input,
so nothing of the job (its token included) appears in a process's arguments:

- ``--job-name=dass-<job id>`` and ``--comment=dass-job:<job id>``: how :meth:`SlurmExecutor.adopt`
  finds the run in Slurm's own records when the service died before it kept the handle;
- ``--chdir`` the job's folder, ``--output`` its ``runner.out`` (the runner writes ``job.log``);
- ``--export=NONE`` and ``env -i``: the job gets exactly ``spec.env``, never the service's
  environment (nor the ``SLURM_*`` variables of the submitting process);
- size → ``--cpus-per-task``/``--mem`` (and ``ulimit -v``, the same address-space limit the
  local executor sets), timeout → ``--time``, partition from :attr:`SlurmExecutor.partitions_by_group`.

:class:`SlurmExecutor` submits as ``spec.run_as``: as root with ``sbatch --uid/--gid``, else
through ``exec_prefix`` (``sudo -n -u {run_as}``, as batchspawner does). Its handle state is
``{"slurm_id", "workdir"}``; ``status`` reads one cached ``scontrol -o show job`` per
``status_cache_seconds`` for all runs (and ``sacct`` when the cluster keeps accounting).
"""

from __future__ import annotations

import asyncio
import math
import os
import pwd
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from traitlets import Bool, Dict, Float, Integer, List, Unicode

from ..errors import DassError
from ..stacks.placement import choose_partition
from .executor import LOG_FILE, RESULT_FILE, RUNNER_FILE, Executor, Handle, read_job_log
from .spec import ExecutionSpec

#: Slurm job states in which the batch script may still run (or has yet to)
ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
     "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT"}
)
#: what a run ended by Slurm (not by itself) tells its owner
ENDED_BY_SLURM = {
    "TIMEOUT": "Slurm ended the job at its time limit",
    "OUT_OF_MEMORY": "Slurm ended the job: it used more memory than its size allows",
    "NODE_FAIL": "the Slurm node running the job failed",
    "BOOT_FAIL": "the Slurm node for the job failed to boot",
    "PREEMPTED": "Slurm preempted the job",
    "DEADLINE": "Slurm ended the job at its deadline",
    "CANCELLED": "the job was cancelled in Slurm (scancel)",
}
LOG_NAME = "runner.out"
_SAFE = re.compile(r"^[^\n\r\0]+$")


class SlurmError(DassError):
    """A Slurm command failed; the message says which and why."""


def job_name(job_id: str) -> str:
    return f"dass-{job_id}"


def slurm_time(seconds: int) -> str:
    """``--time`` of a timeout: whole minutes, rounded up (Slurm's granularity), as D-HH:MM:SS."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes * 60, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}"


def build_batch_script(
    spec: ExecutionSpec,
    *,
    partition: str = "",
    extra_options: Sequence[str] = (),
    export: str = "NONE",
) -> str:
    """The batch script that runs ``spec`` on Slurm.

    Parameters
    ----------
    spec : ExecutionSpec
        The job's command, folder, environment and limits.
    partition : str
        Slurm partition ("" leaves Slurm's default).
    extra_options : sequence of str
        More ``sbatch`` options (``--account=…``, ``--qos=…``, ``--gres=gpu:1``), one per item.
    export : str
        ``--export`` mode: ``NONE`` (the spec's variables only) or ``NIL`` (the same, and Slurm
        does not try to load the user's login environment).

    Examples
    --------
    >>> from dass.jobs.spec import ExecutionSpec
    >>> spec = ExecutionSpec(job_id="abc", argv=("/usr/bin/python3", "-m", "dass.jobs.runner", "/j/abc"),
    ...                      cwd="/j/abc", env={"HOME": "/j/abc"}, cpu=2, mem_limit_bytes=3 * 1024**3,
    ...                      timeout_seconds=90)
    >>> print(build_batch_script(spec, partition="short"))
    #!/bin/sh
    #SBATCH --job-name=dass-abc
    #SBATCH --comment=dass-job:abc
    #SBATCH --chdir=/j/abc
    #SBATCH --output=/j/abc/runner.out
    #SBATCH --open-mode=append
    #SBATCH --export=NONE
    #SBATCH --nodes=1
    #SBATCH --ntasks=1
    #SBATCH --cpus-per-task=2
    #SBATCH --time=0-00:02:00
    #SBATCH --mem=3072M
    #SBATCH --partition=short
    ulimit -v 3145728
    exec /usr/bin/env -i HOME=/j/abc /usr/bin/python3 -m dass.jobs.runner /j/abc
    <BLANKLINE>
    """
    _check(spec, partition, extra_options, export)
    opts = [
        f"--job-name={job_name(spec.job_id)}",
        f"--comment=dass-job:{spec.job_id}",
        f"--chdir={spec.cwd}",
        f"--output={os.path.join(spec.cwd, LOG_NAME)}",
        "--open-mode=append",
        *_resources(spec, partition, extra_options, export),
    ]
    lines = ["#!/bin/sh", *(f"#SBATCH {o}" for o in opts)]
    if spec.mem_limit_bytes:
        lines.append(f"ulimit -v {math.ceil(spec.mem_limit_bytes / 1024)}")
    lines.append(_exec_line(spec))
    return "\n".join(lines) + "\n"


def build_array_script(
    specs: Sequence[ExecutionSpec],
    *,
    partition: str = "",
    extra_options: Sequence[str] = (),
    export: str = "NONE",
    max_running: int = 0,
) -> str:
    """The batch script that runs elements of one parameter sweep as one Slurm job array.

    The array's task ids are the elements' ``sweep_index`` (``--array=0-2``; ``%max_running``
    when given), and each task picks its element by ``$SLURM_ARRAY_TASK_ID``: it enters the
    element's folder, appends its output to the element's ``runner.out`` and runs exactly the
    command and environment :func:`build_batch_script` would run for it alone. The elements
    must share owner, size, timeout and sweep (the manager hands over one sweep at a time).

    ``--job-name=dass-sweep-<sweep id>`` and ``--comment=dass-sweep:<sweep id>`` let
    :meth:`SlurmExecutor.adopt_element` find an element's task in Slurm's own records.

    Examples
    --------
    >>> import dataclasses
    >>> from dass.jobs.spec import ExecutionSpec
    >>> specs = [ExecutionSpec(job_id=j, argv=("/usr/bin/python3", "-m", "dass.jobs.runner", f"/j/{j}"),
    ...                        cwd=f"/j/{j}", env={"HOME": f"/j/{j}"}, timeout_seconds=60,
    ...                        sweep_id="s1", sweep_index=i) for i, j in enumerate(("a", "b"))]
    >>> print(build_array_script(specs, max_running=4))
    #!/bin/sh
    #SBATCH --job-name=dass-sweep-s1
    #SBATCH --comment=dass-sweep:s1
    #SBATCH --array=0-1%4
    #SBATCH --chdir=/j
    #SBATCH --output=/dev/null
    #SBATCH --export=NONE
    #SBATCH --nodes=1
    #SBATCH --ntasks=1
    #SBATCH --cpus-per-task=1
    #SBATCH --time=0-00:01:00
    case "$SLURM_ARRAY_TASK_ID" in
    0)
      cd /j/a || exit 1
      exec >>/j/a/runner.out 2>&1
      exec /usr/bin/env -i HOME=/j/a /usr/bin/python3 -m dass.jobs.runner /j/a ;;
    1)
      cd /j/b || exit 1
      exec >>/j/b/runner.out 2>&1
      exec /usr/bin/env -i HOME=/j/b /usr/bin/python3 -m dass.jobs.runner /j/b ;;
    esac
    echo "dass: sweep s1 has no element $SLURM_ARRAY_TASK_ID in this array" >&2
    exit 1
    <BLANKLINE>
    """
    if not specs:
        raise ValueError("a job array needs at least one element")
    first = specs[0]
    if not first.sweep_id:
        raise ValueError(f"job {first.job_id} is not an element of a sweep (spec.sweep_id is empty)")
    indexes = [s.sweep_index for s in specs]
    if any(i is None or i < 0 for i in indexes) or len(set(indexes)) != len(indexes):
        raise ValueError(f"sweep {first.sweep_id}: every element needs its own index, got {indexes}")
    common = ("sweep_id", "run_as", "cpu", "mem_limit_bytes", "timeout_seconds", "groups")
    for spec in specs:
        _check(spec, partition, extra_options, export)
        differ = [name for name in common if getattr(spec, name) != getattr(first, name)]
        if differ:
            raise ValueError(f"sweep {first.sweep_id}: job {spec.job_id} differs from job {first.job_id} in "
                             f"{', '.join(differ)}; one array runs elements alike")
    throttle = f"%{max_running}" if max_running > 0 else ""
    opts = [
        f"--job-name=dass-sweep-{first.sweep_id}",
        f"--comment=dass-sweep:{first.sweep_id}",
        f"--array={task_ranges(indexes)}{throttle}",
        f"--chdir={os.path.commonpath([s.cwd for s in specs])}",
        "--output=/dev/null",  # each task appends to its own element's runner.out
        *_resources(first, partition, extra_options, export),
    ]
    lines = ["#!/bin/sh", *(f"#SBATCH {o}" for o in opts)]
    if first.mem_limit_bytes:
        lines.append(f"ulimit -v {math.ceil(first.mem_limit_bytes / 1024)}")
    lines.append('case "$SLURM_ARRAY_TASK_ID" in')
    for spec in sorted(specs, key=lambda s: s.sweep_index):
        cwd = shlex.quote(spec.cwd)
        lines += [
            f"{spec.sweep_index})",
            f"  cd {cwd} || exit 1",
            f"  exec >>{shlex.quote(os.path.join(spec.cwd, LOG_NAME))} 2>&1",
            f"  {_exec_line(spec)} ;;",
        ]
    lines += [
        "esac",
        f'echo "dass: sweep {first.sweep_id} has no element $SLURM_ARRAY_TASK_ID in this array" >&2',
        "exit 1",
    ]
    return "\n".join(lines) + "\n"


def task_ranges(indexes: Sequence[int]) -> str:
    """Array task ids as Slurm writes them: sorted, runs of consecutive ids as ranges.

    >>> task_ranges([0, 1, 2]), task_ranges([5, 0, 2, 3])
    ('0-2', '0,2-3,5')
    """
    out: list[str] = []
    ordered = sorted(set(indexes))
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


def array_tasks(expression: str) -> list[int]:
    """The task ids of a Slurm ``ArrayTaskId`` (``3``, ``0-3%2``, ``1,4-6``, ``0-10:5``).

    >>> array_tasks("3"), array_tasks("0-3%2"), array_tasks("1,4-6"), array_tasks("0-10:5")
    ([3], [0, 1, 2, 3], [1, 4, 5, 6], [0, 5, 10])
    >>> array_tasks("N/A")
    []
    """
    tasks: list[int] = []
    for part in expression.split("%", 1)[0].split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            return []
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
        tasks.extend(range(first, last + 1, int(m.group(3) or 1)))
    return tasks


def _check(spec: ExecutionSpec, partition: str, extra_options: Sequence[str], export: str) -> None:
    if export not in ("NONE", "NIL"):
        raise ValueError(f"export must be NONE or NIL, not {export!r}: the job gets exactly spec.env")
    for value in (spec.cwd, spec.job_id, spec.sweep_id, partition, *extra_options):
        if value and not _SAFE.match(value):
            raise ValueError(f"job {spec.job_id}: a line break in {value!r} would break the batch script")
    bad = [k for k in spec.env if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
    if bad:
        raise ValueError(f"job {spec.job_id}: environment names {bad} are not valid shell names")


def _resources(spec: ExecutionSpec, partition: str, extra_options: Sequence[str], export: str) -> list[str]:
    """The ``sbatch`` options of the environment mode, size, time, partition and extras."""
    opts = [
        f"--export={export}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={max(1, math.ceil(spec.cpu))}",
        f"--time={slurm_time(spec.timeout_seconds)}",
    ]
    if spec.mem_limit_bytes:
        opts.append(f"--mem={math.ceil(spec.mem_limit_bytes / 1024**2)}M")
    if partition:
        opts.append(f"--partition={partition}")
    opts.extend(extra_options)
    return opts


def _exec_line(spec: ExecutionSpec) -> str:
    """``exec`` of the runner with exactly ``spec.env`` (``env -i``), every word quoted."""
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in spec.env.items())
    command = " ".join(shlex.quote(a) for a in spec.argv)
    return f"exec /usr/bin/env -i {env} {command}".replace("  ", " ")


def parse_scontrol(text: str) -> dict[str, dict[str, str]]:
    """``scontrol -o show job`` output → {slurm job id: {field: value}}.

    A task of a job array is found under ``<array job id>_<task id>`` as well: a task that
    runs or ran has a record of its own; tasks still pending share their array's record
    (``ArrayTaskId=2-3%2``), found under each of their ids.

    >>> parse_scontrol("JobId=7 JobName=dass-x JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 Comment=a b")
    {'7': {'JobId': '7', 'JobName': 'dass-x', 'JobState': 'FAILED', 'Reason': 'NonZeroExitCode', 'ExitCode': '1:0', 'Comment': 'a b'}}
    """
    jobs: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields: dict[str, str] = {}
        key = None
        for word in line.split(" "):
            m = re.match(r"^([A-Za-z/:_]+)=(.*)$", word)
            if m:
                key = m.group(1)
                fields[key] = m.group(2)
            elif key is not None and word:
                fields[key] += " " + word  # a value with spaces (Comment, Command)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    pending, own = [], []
    for rec in list(jobs.values()):
        if rec.get("ArrayJobId") and rec.get("ArrayTaskId"):
            (own if rec["ArrayTaskId"].isdigit() else pending).append(rec)
    for rec in pending + own:  # a task's own record wins over its array's
        for task in array_tasks(rec["ArrayTaskId"]):
            jobs[f"{rec['ArrayJobId']}_{task}"] = rec
    return jobs


def exit_status(state: str, exit_code: str) -> int | None:
    """A Slurm state and ``ExitCode=rc:signal`` → the executor's status (None: still running).

    >>> exit_status("RUNNING", "0:0"), exit_status("COMPLETED", "0:0"), exit_status("FAILED", "3:0")
    (None, 0, 3)
    >>> exit_status("CANCELLED", "0:15"), exit_status("TIMEOUT", "0:0")
    (-15, -1)
    """
    state = state.split()[0] if state else ""
    if state in ACTIVE_STATES:
        return None
    try:
        rc, sig = (int(x) for x in exit_code.split(":"))
    except ValueError:
        return -1
    if sig:
        return -sig
    if state == "COMPLETED" or rc:
        return rc
    return -1


class SlurmExecutor(Executor):
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

    partition = Unicode(
        "",
        help="""Slurm partition of jobs whose owner is in none of ``partitions_by_group``
        ("" leaves Slurm's default partition).""",
    ).tag(config=True)

    partitions_by_group = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""Partition by hub group, e.g. ``{"staff": "long", "beamline-x": "gpu"}``: a job
        goes to the partition of the first entry (in this order) naming one of its owner's
        groups, else to ``partition``.""",
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
        return choose_partition(spec.groups, self.partitions_by_group, self.partition)

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

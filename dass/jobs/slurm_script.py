"""Slurm's side of the jobs, pure: batch scripts built from values, and Slurm's answers read.

Nothing here runs a command; :mod:`dass.jobs.slurm` (the executor) calls these, and tests
compare their values.

:func:`build_batch_script`: an :class:`~dass.jobs.spec.ExecutionSpec` (and the partition chosen
for it) becomes the text of a batch script. It carries everything in ``#SBATCH`` lines, and the
script is handed to ``sbatch`` on its standard input, so nothing of the job (its token included)
appears in a process's arguments:

- ``--job-name=dass-<job id>`` and ``--comment=dass-job:<job id>``: how
  :meth:`~dass.jobs.slurm.SlurmExecutor.adopt` finds the run in Slurm's own records when the
  service died before it kept the handle;
- ``--chdir`` the job's folder, ``--output`` its ``runner.out`` (the runner writes ``job.log``);
- ``--export=NONE`` and ``env -i``: the job gets exactly ``spec.env``, never the service's
  environment (nor the ``SLURM_*`` variables of the submitting process);
- size → ``--cpus-per-task``/``--mem`` (and ``ulimit -v``, the same address-space limit the
  local executor sets), timeout → ``--time``, and the partition it is given.

:func:`build_array_script`: the elements of one parameter sweep become one job array, whose task
``$SLURM_ARRAY_TASK_ID`` runs the element of that ``sweep_index`` exactly as above.
:func:`parse_scontrol` reads ``scontrol -o show job`` (array tasks filed under
``<array job id>_<task id>``), :func:`exit_status` maps a Slurm state to an exit status.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Sequence

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

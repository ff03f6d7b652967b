"""Scale a notebook out from a Slurm session: :func:`cluster`, a dask-jobqueue ``SLURMCluster``
preset from the session's own batch job.

A session on the Slurm back end (:class:`dass.hub.slurm.DassSlurmSpawner`) is a batch job, so
Slurm itself tells the session where it runs and what it holds: ``SLURM_JOB_PARTITION``, the
partition it was placed in; ``SLURM_CPUS_PER_TASK`` and ``SLURM_MEM_PER_NODE``, the CPUs and
memory of its size (``--cpus-per-task`` and ``--mem`` of the request). :func:`cluster_options`
(pure, tested by value) turns those into the cluster's settings: each worker is one more batch
job of the same partition and the same size, run by the session's Python as the user's own
Unix account, its scheduler inside the session, its logs in the user's home. Headless jobs on
the ``SlurmExecutor`` are batch jobs too, and scale out the same way.

dask-jobqueue comes with the ``dask`` extra (``pip install 'dass[dask]'``); it is imported only
when :func:`cluster` is called.

Examples
--------
In a notebook of a Slurm session::

    import dass.slurm
    from distributed import Client

    cluster = dass.slurm.cluster()          # the session's partition and size, per worker
    cluster.scale(4)                        # four workers, four batch jobs
    client = Client(cluster)
    client.submit(sum, range(10)).result()
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Mapping

from .errors import DassError

__all__ = ["SlurmSessionError", "DaskJobqueueMissing", "cluster_options", "cluster", "LOG_FOLDER"]

#: the workers' log folder, under the user's home
LOG_FOLDER = ".dass/dask-logs"
#: what the extra installs, named in the error when it is missing
EXTRA_HINT = "pip install 'dass[dask]' (the dask extra: dask-jobqueue and distributed)"


class SlurmSessionError(DassError, RuntimeError):
    """:func:`cluster` was called outside a Slurm batch job, or the job says too little."""

    status = 409


class DaskJobqueueMissing(DassError, ImportError):
    """dask-jobqueue (or distributed) is not installed in the session's Python."""

    status = 501


def cluster_options(
    environ: Mapping[str, str], *, python: str, home: str | Path, host: str, **overrides: Any
) -> dict[str, Any]:
    """The keyword arguments of ``dask_jobqueue.SLURMCluster`` for a session whose batch job
    has the variables ``environ``.

    Parameters
    ----------
    environ : mapping
        The session's environment (``os.environ``); Slurm's ``SLURM_JOB_ID``,
        ``SLURM_JOB_PARTITION``, ``SLURM_CPUS_PER_TASK`` (else ``SLURM_CPUS_ON_NODE``) and
        ``SLURM_MEM_PER_NODE`` (else ``SLURM_MEM_PER_CPU`` times the CPUs; MiB) are read.
    python : str
        The Python the workers run (the session's own).
    home : str or Path
        The user's home; the workers' logs go to ``<home>/.dass/dask-logs``.
    host : str
        The session's host, where the scheduler listens.
    **overrides
        Any ``SLURMCluster`` argument, which replaces the preset one (``scheduler_options``
        is merged into the preset's; an ``interface`` there replaces the preset ``host``).

    Returns
    -------
    dict
        ``queue``, ``cores``, ``processes``, ``memory``, ``python``, ``log_directory``,
        ``scheduler_options`` and the overrides. ``environ`` is not modified.

    Raises
    ------
    SlurmSessionError
        Outside a batch job (no ``SLURM_JOB_ID``), or when neither the job nor ``overrides``
        give the CPUs or the memory of a worker.

    Examples
    --------
    >>> env = {"SLURM_JOB_ID": "42", "SLURM_JOB_PARTITION": "short", "SLURM_CPUS_PER_TASK": "2",
    ...        "SLURM_MEM_PER_NODE": "4096"}
    >>> opts = cluster_options(env, python="/opt/dass/bin/python", home="/home/alice", host="node7")
    >>> opts["queue"], opts["cores"], opts["processes"], opts["memory"]
    ('short', 2, 1, '4096MiB')
    >>> opts["log_directory"], opts["scheduler_options"]
    ('/home/alice/.dass/dask-logs', {'host': 'node7', 'dashboard_address': ':0'})
    >>> cluster_options(env, python="p", home="/h", host="n", cores=8, memory="16GiB",
    ...                 scheduler_options={"dashboard_address": ":8787"})["scheduler_options"]
    {'host': 'n', 'dashboard_address': ':8787'}
    >>> cluster_options(env, python="p", home="/h", host="n",
    ...                 scheduler_options={"interface": "ib0"})["scheduler_options"]
    {'dashboard_address': ':0', 'interface': 'ib0'}
    """
    if not environ.get("SLURM_JOB_ID"):
        raise SlurmSessionError(
            "dass.slurm.cluster() scales out from a session (or job) on the Slurm cluster, and this "
            "Python runs outside a Slurm batch job (no SLURM_JOB_ID): start a session on the Slurm "
            "back end, or build dask_jobqueue.SLURMCluster yourself with queue=, cores= and memory="
        )
    cores = overrides.pop("cores", None)
    if cores is None:
        cpus = environ.get("SLURM_CPUS_PER_TASK") or environ.get("SLURM_CPUS_ON_NODE")
        if not cpus:
            raise SlurmSessionError(
                f"Slurm job {environ['SLURM_JOB_ID']} names no CPUs (SLURM_CPUS_PER_TASK, "
                "SLURM_CPUS_ON_NODE): pass cores= to dass.slurm.cluster()"
            )
        cores = int(cpus)
    memory = overrides.pop("memory", None)
    if memory is None:
        if environ.get("SLURM_MEM_PER_NODE"):
            memory = f"{int(environ['SLURM_MEM_PER_NODE'])}MiB"
        elif environ.get("SLURM_MEM_PER_CPU"):
            memory = f"{int(environ['SLURM_MEM_PER_CPU']) * int(cores)}MiB"
        else:
            raise SlurmSessionError(
                f"Slurm job {environ['SLURM_JOB_ID']} names no memory (SLURM_MEM_PER_NODE, "
                "SLURM_MEM_PER_CPU): pass memory= (e.g. memory='4GiB') to dass.slurm.cluster()"
            )
    scheduler = {"host": host, "dashboard_address": ":0", **overrides.pop("scheduler_options", {})}
    if "interface" in scheduler:  # the scheduler's address from a network interface instead
        del scheduler["host"]
    options: dict[str, Any] = {
        # Slurm's default partition when the job names none ("": dask-jobqueue's own setting)
        "queue": environ.get("SLURM_JOB_PARTITION") or None,
        "cores": cores,
        "processes": 1,
        "memory": memory,
        "python": python,
        "log_directory": str(Path(home) / LOG_FOLDER),
        # workers on other nodes reach the scheduler at the session's host; a random
        # dashboard port, as several sessions may share a node
        "scheduler_options": scheduler,
    }
    options.update(overrides)
    return options


def cluster(**overrides: Any):
    """A ``dask_jobqueue.SLURMCluster`` whose workers are batch jobs like this session: its
    partition, its size's CPUs and memory per worker, its Python, as its user.

    Parameters
    ----------
    **overrides
        Any ``SLURMCluster`` argument (``cores``, ``memory``, ``walltime``, ``queue``,
        ``job_extra_directives``…), replacing the preset value (:func:`cluster_options`).

    Returns
    -------
    dask_jobqueue.SLURMCluster
        With no worker yet: ``cluster.scale(n)`` or ``cluster.adapt(maximum=n)`` asks for them;
        ``cluster.close()`` (or the end of the session) cancels their jobs.

    Raises
    ------
    DaskJobqueueMissing
        When dask-jobqueue or distributed is not installed in this Python.
    SlurmSessionError
        Outside a Slurm batch job (see :func:`cluster_options`).
    """
    options = cluster_options(os.environ, python=sys.executable, home=Path.home(), host=socket.gethostname(),
                              **overrides)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as err:
        raise DaskJobqueueMissing(
            f"dass.slurm.cluster() needs dask-jobqueue and distributed in this Python ({sys.executable}), "
            f"which cannot import {err.name or 'them'}: {EXTRA_HINT}, or ask the platform's operators "
            "for a stack that has it"
        ) from err
    return SLURMCluster(**options)

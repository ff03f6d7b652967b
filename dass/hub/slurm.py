"""Sessions on a Slurm cluster: batchspawner's ``SlurmSpawner`` under the dass spawner mixin.

The mixin validates the choices and builds the :class:`~dass.stacks.session.SessionSpec`;
:func:`slurm_request` (pure, tested by value) renders it into batchspawner's ``req_*``
settings: partition (by hub group), CPUs, memory, time limit, GPUs (by size), and the
variables the batch job keeps (the spec's ``DASS_*`` besides JupyterHub's own). While the job
waits in the queue the spawn progress page says so, with Slurm's reason; the form shows each
partition's idle nodes and waiting jobs.

Settings that work on one machine (checked with the one-node cluster of the tests): ``exec_prefix = "sudo -E -u
{username}"`` (batchspawner's default), ``req_srun = ""``, ``ip = "127.0.0.1"``; ``cmd`` and
``batchspawner_singleuser_cmd`` are made absolute from ``session_prefix`` (sudo resets PATH).
"""

from __future__ import annotations

import asyncio
import math
import os
import html
import subprocess
import sys
from typing import Any

from batchspawner import SlurmSpawner
from batchspawner.batchspawner import JobStatus
from traitlets import Dict, Float, Integer, Unicode, default

from ..stacks.placement import SlurmPlacement
from ..stacks.session import SessionSpec
from .spawner import DassSpawnerMixin


def slurm_runtime(hours: float) -> str:
    """``--time`` for a session of ``hours`` (HH:MM:SS, whole minutes rounded up).

    >>> slurm_runtime(8), slurm_runtime(0.01)
    ('08:00:00', '00:01:00')
    """
    minutes = max(1, math.ceil(hours * 60))
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def slurm_request(spec: SessionSpec, *, partition: str = "", gpus: int = 0, hours: float = 8.0) -> dict[str, str]:
    """batchspawner's ``req_*`` values for ``spec``.

    Examples
    --------
    >>> from dass.stacks.registry import StackRegistry
    >>> from dass.stacks.runtime import limits
    >>> reg = StackRegistry()
    >>> spec = SessionSpec(user="alice", server_name="", stack="kmap", size="medium", datasets=(),
    ...     image="", environment="", default_url="/lab", limits=limits(reg.all_sizes["medium"]),
    ...     service_url="http://127.0.0.1:8001/", env={"DASS_STACK": "kmap", "DASS_SIZE": "medium"})
    >>> slurm_request(spec, partition="gpu", gpus=1, hours=4)
    {'req_partition': 'gpu', 'req_nprocs': '2', 'req_memory': '4096M', 'req_runtime': '04:00:00', 'req_gres': 'gpu:1', 'req_keepvars_extra': 'DASS_SIZE,DASS_STACK'}
    """
    return {
        "req_partition": partition,
        "req_nprocs": str(max(1, math.ceil(spec.limits.cpu))),
        "req_memory": f"{math.ceil(spec.limits.mem_bytes / 1024**2)}M",
        "req_runtime": slurm_runtime(hours),
        "req_gres": f"gpu:{gpus}" if gpus else "",
        "req_keepvars_extra": ",".join(sorted(spec.env)),
    }


class DassSlurmSpawner(DassSpawnerMixin, SlurmPlacement, SlurmSpawner):
    """Sessions as Slurm batch jobs (batchspawner), each as the user's Unix account.

    ``c.JupyterHub.spawner_class = "dass.hub.slurm.DassSlurmSpawner"``.
    """

    size_note = "On the Slurm cluster the size's CPUs and memory are the batch job's request."

    gpus_by_size = Dict(
        key_trait=Unicode(),
        value_trait=Integer(),
        help="""GPUs a session of a size requests (``--gres=gpu:N``), e.g. ``{"gpu": 1}``; sizes
        not named request none.""",
    ).tag(config=True)

    session_hours = Float(
        8.0, help="Time limit of a session's batch job (hours); Slurm ends the session then."
    ).tag(config=True)

    session_prefix = Unicode(
        help="""Prefix of the Python environment sessions run in on the cluster's nodes (it
        must hold ``jupyterhub-singleuser`` and ``batchspawner-singleuser``, readable by every
        user), unless the stack names an environment of its own. Default: the hub's own.""",
    ).tag(config=True)

    slurm_conf = Unicode(
        "",
        help="""``slurm.conf`` of the cluster, given to the Slurm commands as ``SLURM_CONF``
        ("": the Slurm client's own default).""",
    ).tag(config=True)

    @default("session_prefix")
    def _default_session_prefix(self) -> str:
        return sys.prefix

    @default("req_srun")
    def _default_req_srun(self) -> str:
        return ""

    @default("batch_query_cmd")
    def _default_batch_query_cmd(self) -> str:
        # state, reason (shown while pending), host (last word, batchspawner's exechost_re)
        return "squeue -h -j {job_id} -o '%T %r %B'"

    # -- the Unix account --------------------------------------------------------------------

    def unix_account(self) -> tuple[str, str, str]:
        """(name, home, shell) of the Unix account the session runs as: the user's own
        (:class:`dass.data.accounts.UserAccounts`, created at the first spawn), or the
        platform's when accounts are off."""
        cached = self.__dict__.get("_dass_account")
        if cached is None:
            from ..data.accounts import UserAccounts

            account = UserAccounts(config=self.config, parent=self).ensure(self.user.name)
            cached = (account.name, str(account.home), getattr(account, "shell", "") or "/bin/sh")
            self.__dict__["_dass_account"] = cached
        return cached

    @default("req_username")
    def _default_req_username(self) -> str:
        return self.unix_account()[0]

    @default("req_homedir")
    def _default_req_homedir(self) -> str:
        return self.unix_account()[1]

    def user_env(self, env):
        """USER, HOME and SHELL of the Unix account (batchspawner's take the hub name)."""
        name, home, shell = self.unix_account()
        env["USER"] = name
        env["HOME"] = home
        if shell:
            env["SHELL"] = shell
        return env

    # -- rendering and launching ---------------------------------------------------------------

    def partition_for_user(self) -> str:
        return self.partition_for_groups(self.identity.groups)

    async def render_session(self, spec: SessionSpec) -> None:
        request = slurm_request(
            spec,
            partition=self.partition_for_user(),
            gpus=int(self.gpus_by_size.get(spec.size, 0)),
            hours=self.session_hours,
        )
        for name, value in request.items():
            setattr(self, name, value)
        prefix = spec.environment or self.session_prefix
        self.cmd = [os.path.join(prefix, "bin", "jupyterhub-singleuser")]
        self.batchspawner_singleuser_cmd = os.path.join(prefix, "bin", "batchspawner-singleuser")
        self._dass_pending = ""
        self.log.info("Session of %s: Slurm request %s", self._log_name, request)

    async def run_command(self, cmd, input=None, env=None):
        if self.slurm_conf:
            env = dict(os.environ if env is None else env)
            env["SLURM_CONF"] = self.slurm_conf
        return await super().run_command(cmd, input=input, env=env)

    async def query_job_status(self):
        status = await super().query_job_status()
        if status == JobStatus.PENDING:
            words = (self.job_status or "").split()
            reason = words[1] if len(words) > 1 else "waiting"
            text = f"Waiting in the Slurm queue (job {self.job_id}, partition {self.req_partition or 'default'}: {reason})"
            if text != getattr(self, "_dass_pending", ""):
                self._dass_pending = text
                self.progress_event(text, 45)
        elif status == JobStatus.RUNNING and getattr(self, "_dass_pending", None) != "running":
            self._dass_pending = "running"
            self.progress_event(f"Slurm job {self.job_id} is running; JupyterLab is starting", 60)
        return status

    async def wait_started(self, spec: SessionSpec) -> None:
        """batchspawner's ``start`` returns once the job runs and reported its port."""

    # -- the form: the queue's state -------------------------------------------------------------

    def queue_state(self, partition: str) -> dict[str, Any]:
        """Idle nodes and waiting jobs of ``partition`` (``sinfo``/``squeue``); {} when Slurm
        does not answer."""
        env = dict(os.environ)
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        part = ["-p", partition] if partition else []
        try:
            nodes = subprocess.run(["sinfo", "-h", *part, "-o", "%t %D"], capture_output=True, text=True,
                                   env=env, timeout=10)
            waiting = subprocess.run(["squeue", "-h", *part, "-t", "PD", "-o", "%i"], capture_output=True,
                                     text=True, env=env, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if nodes.returncode or waiting.returncode:
            return {}
        idle = sum(int(n) for s, n in (line.split() for line in nodes.stdout.splitlines() if line.strip())
                   if s.rstrip("*~#") == "idle")
        return {"partition": partition or "default", "idle_nodes": idle,
                "waiting_jobs": len(waiting.stdout.split())}

    async def render_options_form(self) -> str:
        form = await super().render_options_form()
        state = await asyncio.to_thread(self.queue_state, self.partition_for_user())
        if not state:
            return form
        note = (f'<p class="dass-slurm-queue">Slurm partition <b>{html.escape(state["partition"])}</b>: '
                f'{state["idle_nodes"]} idle node{"s" if state["idle_nodes"] != 1 else ""}, '
                f'{state["waiting_jobs"]} job{"s" if state["waiting_jobs"] != 1 else ""} waiting.</p>\n')
        return note + form


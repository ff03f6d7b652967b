"""A real one-node Slurm cluster for the tests and benchmarks (Debian's slurm-wlm and munge).

:class:`SlurmCluster` writes ``slurm.conf`` and ``cgroup.conf`` into a folder of its own (from
``slurmd -C``, with the settings a single VM needs), starts a private ``munged`` (own key
and socket), ``slurmctld`` and ``slurmd`` on free loopback ports, waits until the node is
``idle`` and stops them again. Nothing under ``/etc`` is touched, so it runs beside a
machine's own Slurm. Client commands find it through ``SLURM_CONF`` (:attr:`env`).

Jobs run as real Unix users: :func:`unix_user` creates one (test-only prefix) and removes it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import free_port

#: the Debian packages the cluster needs; ``make slurm`` installs them when run as root
PACKAGES = ("slurm-wlm", "munge", "sudo")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sudo")
#: prefix of the Unix accounts the tests create (and remove)
USER_PREFIX = "dasst"
#: a Python that other Unix users may run (made by ``make slurm`` when the venv's is not)
JOB_VENV = Path("/opt/dass-jobs-venv")


def slurm_missing() -> str:
    """Why this machine cannot run the one-node cluster ("" when it can)."""
    missing = [b for b in BINARIES if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]
    if missing:
        return f"{', '.join(missing)} not installed (make slurm, as root: apt-get install {' '.join(PACKAGES)})"
    if os.geteuid() != 0:
        return "the one-node Slurm cluster needs root (its jobs run as other Unix users)"
    return ""


def _sbin(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or name


def slurm_version() -> tuple[int, int]:
    out = subprocess.run([_sbin("slurmd"), "-V"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def node_line() -> str:
    """This machine's node description as ``slurmd -C`` prints it (first line)."""
    out = subprocess.run([_sbin("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


class SlurmCluster:
    """A one-node Slurm cluster in ``folder``; ``start()``, then ``stop()``.

    ``partitions``: names of the partitions (all on the one node); the first is the default.
    ``ready_timeout``: seconds to wait for the node to become idle.
    """

    def __init__(self, folder: str | Path | None = None, *, partitions: tuple[str, ...] = ("debug", "gpu"),
                 ready_timeout: float = 60.0):
        if folder is None:
            folder = tempfile.mkdtemp(prefix="dass-slurm-", dir="/tmp")
        self.folder = Path(folder)
        self.partitions = partitions
        self.ready_timeout = ready_timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.node = ""

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment of client commands (sbatch, squeue, …) that reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        f = self.folder
        # users submit as themselves: every folder on the way to the conf and the munge
        # socket must be traversable by them (never writable)
        f.mkdir(parents=True, exist_ok=True)
        os.chmod(f, 0o755)
        for sub in ("munge", "state", "spool", "log", "run"):
            (f / sub).mkdir(exist_ok=True)
            os.chmod(f / sub, 0o755)
        key = f / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        line = node_line()
        self.node = line.split()[0].split("=", 1)[1]
        attrs = " ".join(p for p in line.split()[1:] if not p.startswith("UpTime"))
        ctld, slurmd = free_port(), free_port()
        parts = "\n".join(
            f"PartitionName={name} Nodes={self.node} Default={'YES' if i == 0 else 'NO'} "
            f"MaxTime=INFINITE State=UP OverSubscribe=FORCE:4 DefMemPerCPU=512"
            for i, name in enumerate(self.partitions)
        )
        self.conf.write_text(
            f"""# written by tests/slurm_support.py
ClusterName=dasstest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={f}/munge/munge.socket
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool/%n
SlurmctldPidFile={f}/run/slurmctld.pid
SlurmdPidFile={f}/run/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=600
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
MpiDefault=none
NodeName={self.node} NodeAddr=127.0.0.1 {attrs} State=UNKNOWN
{parts}
"""
        )
        # Slurm >= 23.02 accepts CgroupPlugin=disabled; 22.05 refuses it and autodetects
        cgroup = "CgroupPlugin=disabled\nIgnoreSystemd=yes\n" if slurm_version() >= (23, 2) else ""
        (f / "cgroup.conf").write_text(cgroup)
        for name in ("slurm.conf", "cgroup.conf"):
            os.chmod(f / name, 0o644)

    def _daemon(self, name: str, argv: list[str]) -> None:
        out = open(self.folder / "log" / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True,
            )
        finally:
            out.close()

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not within {timeout} s\n{self.logs()}")
            time.sleep(0.1)

    def start(self) -> "SlurmCluster":
        self.write_config()
        f = self.folder
        sock = f / "munge" / "munge.socket"
        self._daemon("munged", [_sbin("munged"), "--foreground", "--force", f"--key-file={f}/munge/munge.key",
                                f"--socket={sock}", f"--pid-file={f}/run/munged.pid",
                                f"--log-file={f}/log/munged.log", f"--seed-file={f}/munge/munged.seed"])
        self._wait("the munge socket", sock.exists, self.ready_timeout)
        os.chmod(sock, 0o777)  # every user authenticates through it (as /run/munge/munge.socket.2)
        self._daemon("slurmctld", [_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._daemon("slurmd", [_sbin("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(f"node {self.node} idle", self.node_idle, self.ready_timeout)
        return self

    def node_idle(self) -> bool:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%t", "-n", self.node], capture_output=True, text=True,
                           env=self.env)
        return r.returncode == 0 and r.stdout.split()[:1] == ["idle"]

    def logs(self) -> str:
        parts = []
        for p in sorted((self.folder / "log").glob("*")):
            text = p.read_text(errors="replace")[-3000:]
            parts.append(f"--- {p.name}\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def run(self, *argv: str, check: bool = True) -> str:
        """A client command against this cluster (as root); its stdout."""
        r = subprocess.run(list(argv), capture_output=True, text=True, env=self.env)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout


@contextmanager
def unix_user(name: str, *, home: bool = False) -> Iterator[pwd.struct_passwd]:
    """A Unix account ``dasst<name>`` for the length of the block; with ``home``, a home
    folder ``/tmp/dasst-home-<name>`` (0700), removed with the account."""
    login = f"{USER_PREFIX}{name}"[:32]
    folder = f"/tmp/{USER_PREFIX}-home-{name}"
    subprocess.run(["userdel", login], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)
    how = ["-m", "-d", folder, "-s", "/bin/sh"] if home else ["-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin"]
    subprocess.run(["useradd", *how, login], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(login)
    finally:
        subprocess.run(["userdel", login], capture_output=True)
        if home:
            shutil.rmtree(folder, ignore_errors=True)


def readable_by(user: str, path: str | Path) -> bool:
    """Whether Unix user ``user`` can read ``path`` (checked as that user)."""
    return subprocess.run(["sudo", "-n", "-u", user, "test", "-r", str(path)], capture_output=True).returncode == 0


def job_python() -> str:
    """A Python with dass's dependencies that the test users can run, or "" when there is none
    (the venv's own, when it lives under a readable prefix; else :data:`JOB_VENV`)."""
    import sys

    for candidate in (sys.executable, str(JOB_VENV / "bin" / "python")):
        if Path(candidate).exists() and _world_runnable(candidate):
            return candidate
    return ""


def _world_runnable(path: str) -> bool:
    """Whether a user without any privilege could run ``path`` (every folder on the way to its
    real file traversable by others)."""
    real = Path(os.path.realpath(path))
    for p in [real, *real.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            return False
    return True


_CLUSTER: SlurmCluster | None = None


@pytest.fixture(scope="session")
def slurm_cluster(request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    """The one-node Slurm cluster of this test session (started once, stopped at the end)."""
    global _CLUSTER
    why = slurm_missing()
    if why:
        pytest.skip(f"no Slurm cluster: {why}")
    if _CLUSTER is None:
        cluster = SlurmCluster()
        try:
            cluster.start()
        except Exception:
            cluster.stop()
            raise
        _CLUSTER = cluster

        def stop() -> None:
            global _CLUSTER
            cluster.stop()
            shutil.rmtree(cluster.folder, ignore_errors=True)
            _CLUSTER = None

        request.addfinalizer(stop)
    yield _CLUSTER


def shared_folder(prefix: str) -> Path:
    """A new folder that every user can traverse (not list or write): jobs' parents."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o711)
    return path

"""The launcher of hub-managed services: pid file cleanup and the parent-death signal, with
real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dass.hub.managed import end_previous, read_pid_file, start_time
from tests.support import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))


def managed(pid_file: Path, command=SLEEPER) -> list[str]:
    return [sys.executable, "-m", "dass.hub.managed", f"--pid-file={pid_file}", "--grace=5", "--", *command]


def gone(pid: int) -> bool:
    """Whether ``pid`` ended (a zombie waiting for a reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def recorded_pid(pid_file: Path, cmd_part: str) -> int:
    """The pid in the pid file once the launcher has exec'd the service."""
    def ready():
        rec = read_pid_file(pid_file)
        if rec and cmd_part in Path(f"/proc/{rec[0]}/cmdline").read_bytes().decode().replace("\0", " "):
            return rec[0]
        return None

    return wait_for(ready, 60, f"{pid_file.name} to name the running service")


def test_the_next_start_ends_the_previous_instance(tmp_path):
    pid_file = tmp_path / "svc.pid"
    first = subprocess.Popen(managed(pid_file), env=ENV)
    second = None
    try:
        assert recorded_pid(pid_file, "time.sleep") == first.pid  # exec keeps the process id
        second = subprocess.Popen(managed(pid_file), env=ENV)
        assert first.wait(60) == -signal.SIGTERM
        assert recorded_pid(pid_file, "time.sleep") == second.pid
        assert second.poll() is None
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


def test_a_reused_process_id_is_not_touched(tmp_path):
    other = subprocess.Popen(SLEEPER)
    try:
        pid_file = tmp_path / "svc.pid"
        pid_file.write_text(f"{other.pid} 1\n")  # same id, another start time
        assert start_time(other.pid) != "1"
        assert end_previous(pid_file) is None
        assert other.poll() is None
        pid_file.write_text("not a pid\n")
        assert end_previous(pid_file) is None
    finally:
        other.kill()
        other.wait(10)


def test_the_service_ends_when_its_parent_is_killed(tmp_path):
    pid_file = tmp_path / "svc.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen({managed(pid_file)!r})\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=ENV)
    service = None
    try:
        service = recorded_pid(pid_file, "time.sleep")
        assert not gone(service)
        parent.kill()  # SIGKILL: the parent cannot clean up
        parent.wait(10)
        wait_for(lambda: gone(service), 60, f"the service (pid {service}) to end with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
        if service is not None and not gone(service):
            os.kill(service, signal.SIGKILL)


def test_no_command_is_an_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dass.hub.managed", f"--pid-file={tmp_path / 'x.pid'}"],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2 and "no command given after --" in r.stderr


def test_a_zombie_counts_as_ended(tmp_path):
    """A previous instance that ended but was not reaped yet (no init reaping in a container)
    must not hold the next start."""
    pid_file = tmp_path / "svc.pid"
    first = subprocess.Popen(managed(pid_file), env=ENV)
    try:
        recorded_pid(pid_file, "time.sleep")
        os.kill(first.pid, signal.SIGKILL)
        wait_for(lambda: gone(first.pid), 60, "the first instance to end")
        assert not Path(f"/proc/{first.pid}").exists() or gone(first.pid)  # a zombie until reaped
        assert end_previous(pid_file, grace=60) is None
    finally:
        first.kill()
        first.wait(10)

"""Run a hub-managed service so that it never outlives its hub for long.

JupyterHub starts the platform's services (the dass service, the idle culler) as child
processes and stops them when it shuts down. A hub killed with SIGKILL cannot: its services
would keep running unmanaged, and the next hub's service would die on "Address already in
use". ``dass up`` therefore starts every managed service through this launcher::

    python -m dass.hub.managed --pid-file STATE/dass-service.pid -- python -m dass.service

which, before it *becomes* the service (``exec``, so the service keeps this process id):

1. ends the process named in the pid file if it is still the one that wrote it (same process
   id and start time: a reused id is never touched): SIGTERM, then SIGKILL after
   ``--grace`` seconds — the cleanup at the next start, like JupyterHub's proxy ``pid_file``;
2. asks Linux to send it SIGTERM when its parent (the hub) dies (``prctl(PR_SET_PDEATHSIG)``,
   kept across ``exec``), and exits at once if the parent is already gone;
3. writes its own process id and start time to the pid file.

Off Linux only step 1 and 3 apply. The pid file is left behind when the service ends; the
next start finds its process gone and overwrites it.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return stat.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or None
    when it does not exist (or on a system without ``/proc``)."""
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def running(pid: int, started: str) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` and has not ended (a
    zombie waiting for its parent to reap it has ended)."""
    fields = _stat(pid)
    return bool(fields) and len(fields) > 19 and fields[19] == started and fields[0] not in ("Z", "X")


def read_pid_file(path: Path) -> tuple[int, str] | None:
    """``(pid, start time)`` from a pid file this launcher wrote, or None."""
    try:
        pid_text, _, started = path.read_text().strip().partition(" ")
        return int(pid_text), started
    except (OSError, ValueError):
        return None


def write_pid_file(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid} {start_time(pid) or ''}\n")
    os.replace(tmp, path)


def end_previous(path: Path, *, grace: float = 10.0, log=print) -> int | None:
    """End the process recorded in ``path`` if it is still the same process; returns its pid
    (None when there was nothing to end)."""
    recorded = read_pid_file(path)
    if recorded is None:
        return None
    pid, started = recorded
    if pid == os.getpid() or not started or not running(pid, started):
        return None  # gone, or the id now belongs to another process
    log(f"dass.hub.managed: ending the previous instance (pid {pid}) recorded in {path.name}")
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while running(pid, started) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running(pid, started):
            log(f"dass.hub.managed: pid {pid} did not end within {grace:g} s of SIGTERM; killing it")
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + grace
            while running(pid, started) and time.monotonic() < deadline:
                time.sleep(0.05)
    except ProcessLookupError:
        pass
    return pid


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux); returns
    False when the parent ``parent`` is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # the parent may have died before prctl: then this process was re-parented already
    return os.getppid() == parent


def main(argv: list[str] | None = None) -> int:
    parent = os.getppid()
    parser = argparse.ArgumentParser(
        prog="python -m dass.hub.managed",
        description="Run a hub-managed service with a pid file and the parent-death signal.",
    )
    parser.add_argument("--pid-file", required=True, type=Path, help="the service's pid file")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds a previous instance gets to end after SIGTERM (then SIGKILL)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the service's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    end_previous(args.pid_file, grace=args.grace, log=lambda m: print(m, file=sys.stderr, flush=True))
    if not die_with_parent(parent):
        print("dass.hub.managed: the hub that started this service is gone; not starting",
              file=sys.stderr, flush=True)
        return 1
    write_pid_file(args.pid_file, os.getpid())
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"dass.hub.managed: cannot run {command[0]}: {e}", file=sys.stderr, flush=True)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

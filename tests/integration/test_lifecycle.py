"""Ctrl-C on `dass up` stops everything it started: hub, proxy, service, culler, user servers."""

import os

import pytest

from tests.support import PlatformProcess, leftover_processes

pytestmark = pytest.mark.integration


def test_ctrl_c_leaves_nothing_running(tmp_path):
    p = PlatformProcess(tmp_path / "state", name="platform-lifecycle")
    try:
        # first start: secrets generated with 0600, never world-readable
        secrets = p.state / "secrets.json"
        assert oct(secrets.stat().st_mode & 0o777) == "0o600"
        r = p.spawn("alice", {"stack": "stm", "size": "small", "datasets": []})
        assert r.status_code in (201, 202), r.text
        running = leftover_processes(p.state)
        commands = " ".join(" ".join(proc.cmdline()) for proc in running)
        for part in ("jupyterhub", "configurable-http-proxy", "dass.service",
                     "jupyterhub_idle_culler", "jupyterhub-singleuser"):
            assert part in commands, f"{part} not running before Ctrl-C: {commands}"
    finally:
        status = p.interrupt()
    assert status == 0
    left = leftover_processes(p.state)
    assert left == [], [" ".join(x.cmdline()) for x in left]
    assert not (p.state / "proxy.pid").exists() or not _alive((p.state / "proxy.pid").read_text())


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text.strip()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def _managed_services(state) -> dict[str, list]:
    """The running dass services and idle cullers of this platform."""
    found: dict[str, list] = {"dass.service": [], "jupyterhub_idle_culler": []}
    for proc in leftover_processes(state):
        try:
            cmd = proc.cmdline()
        except Exception:  # ended meanwhile
            continue
        for name in found:
            if name in cmd and "dass.hub.managed" not in cmd:
                found[name].append(proc.pid)
    return found


def _one_each(state) -> dict[str, list]:
    """Wait until one dass service and one culler run (they start after the hub answers, each
    through its launcher first); fail if ever more than one of either runs."""
    from tests.support import wait_for

    def settled():
        found = _managed_services(state)
        assert all(len(v) <= 1 for v in found.values()), found
        return found if all(len(v) == 1 for v in found.values()) else None

    return wait_for(settled, 120, "one dass service and one idle culler")


def test_a_killed_hub_leaves_no_orphans_and_restarts_clean(tmp_path):
    from tests.support import process_gone, wait_for

    p = PlatformProcess(tmp_path / "state", name="platform-killed")
    try:
        before = _one_each(p.state)
        p.kill_hub()
        # the old hub's services end with it (parent-death signal)
        wait_for(lambda: all(process_gone(pid) for pids in before.values() for pid in pids),
                 60, f"the killed hub's services {before} to end")
        p.restart()
        after = _one_each(p.state)
        assert not set(after["dass.service"]) & set(before["dass.service"])
        # the new service is the one that answers, and it stays up
        r = p.service("GET", "api/health", "alice")
        assert r.status_code == 200, r.text
        assert "Address already in use" not in p.log_path.read_text()
    finally:
        status = p.interrupt()
    assert status == 0
    left = leftover_processes(p.state)
    assert left == [], [" ".join(x.cmdline()) for x in left]


def test_a_leftover_service_is_ended_at_the_next_start(tmp_path):
    """A service that outlived its hub (the parent-death signal is Linux-only and can be lost)
    is found through its pid file and ended when the platform starts again."""
    import signal
    import subprocess
    import sys

    from tests.support import wait_for

    p = PlatformProcess(tmp_path / "state", name="platform-leftover")
    try:
        _one_each(p.state)
        status = p.interrupt()
        assert status == 0
        # stand-in for an orphan: a process recorded in the service's pid file, as the launcher does
        orphan = subprocess.Popen(
            [sys.executable, "-m", "dass.hub.managed", f"--pid-file={p.state / 'dass-service.pid'}",
             "--", sys.executable, "-c", f"import time; time.sleep(600)  # {p.state}"],
            start_new_session=True,
        )
        wait_for(lambda: (p.state / "dass-service.pid").read_text().split()[0] == str(orphan.pid), 60,
                 "the orphan's pid file")
        p.restart()
        assert orphan.wait(60) == -signal.SIGTERM
        _one_each(p.state)
    finally:
        p.interrupt()
    assert leftover_processes(p.state) == []

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

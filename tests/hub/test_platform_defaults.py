"""The hub's defaults that ``dass up`` fills in: spawn timeouts and managed services."""

from __future__ import annotations

import sys

from traitlets.config import Config

from dass.platform import Platform, apply_hub_defaults


def _hub_config(tmp_path, **sections) -> Config:
    c = Config()
    c.Platform.state_dir = str(tmp_path / "state")
    for section, values in sections.items():
        for key, value in values.items():
            c[section][key] = value
    apply_hub_defaults(c)
    return c


def test_spawn_timeouts_default_to_the_platform_settings(tmp_path):
    c = _hub_config(tmp_path)
    defaults = Platform()
    assert c.Spawner.start_timeout == defaults.spawn_start_timeout
    assert c.Spawner.http_timeout == defaults.spawn_http_timeout
    # JupyterHub's own defaults (60 s, 30 s) fail spawns on a busy 2-core machine
    assert defaults.spawn_start_timeout > 60 and defaults.spawn_http_timeout > 30


def test_spawn_timeouts_are_settings(tmp_path):
    c = _hub_config(tmp_path, Platform={"spawn_start_timeout": 500, "spawn_http_timeout": 200})
    assert (c.Spawner.start_timeout, c.Spawner.http_timeout) == (500, 200)
    # JupyterHub's own trait set by the deployer wins
    c = _hub_config(tmp_path, Spawner={"http_timeout": 45})
    assert c.Spawner.http_timeout == 45
    assert c.Spawner.start_timeout == Platform().spawn_start_timeout


def test_services_run_through_the_managed_launcher(tmp_path):
    c = _hub_config(tmp_path)
    state = tmp_path / "state"
    commands = {s["name"]: s["command"] for s in c.JupyterHub.services}
    assert commands["dass"] == [sys.executable, "-m", "dass.hub.managed",
                                f"--pid-file={state.resolve() / 'dass-service.pid'}", "--",
                                sys.executable, "-m", "dass.service"]
    culler = commands["idle-culler"]
    assert culler[:5] == [sys.executable, "-m", "dass.hub.managed",
                          f"--pid-file={state.resolve() / 'idle-culler.pid'}", "--"]
    assert culler[5:8] == [sys.executable, "-m", "jupyterhub_idle_culler"]

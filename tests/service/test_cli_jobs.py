"""``dass --config FILE jobs …`` talks to the platform that FILE describes (its port), not to
port 8000: here a real dass service (behind the test hub) serves at that port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests.service.service_support import free_port

ROOT = Path(__file__).resolve().parents[2]


def dass_jobs(config: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    for name in ("DASS_CONFIG", "DASS_URL", "DASS_SERVICE_URL", "DASS_TOKEN", "JUPYTERHUB_API_TOKEN"):
        if name not in env_extra:
            env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "dass", "--config", str(config), "jobs", *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


def test_jobs_go_to_the_configured_port(service, tmp_path):
    port = urlsplit(service.url).port
    assert port != 8000
    cfg = tmp_path / "dass_config.py"
    cfg.write_text(f"c.Platform.port = {port}\n")

    r = dass_jobs(cfg, "--token", "alice-token", "list")
    assert r.returncode == 0, r.stderr
    # the service's own refusal: it was reached, and said so in one line
    r = dass_jobs(cfg, "--token", "alice-token", "show", "0123456789abcdef")
    assert r.returncode == 2
    assert r.stderr == "dass: error: job 0123456789abcdef not found (HTTP 404)\n"
    # the token from the environment, as before
    r = dass_jobs(cfg, "show", "0123456789abcdef", DASS_TOKEN="alice-token")
    assert r.stderr == "dass: error: job 0123456789abcdef not found (HTTP 404)\n"


def test_the_config_file_wins_over_dass_url_and_url_wins_over_both(service, tmp_path):
    cfg = tmp_path / "dass_config.py"
    closed = free_port()
    cfg.write_text(f"c.Platform.port = {closed}\n")
    r = dass_jobs(cfg, "--token", "alice-token", "list", DASS_URL=service.url)
    assert r.returncode == 2
    assert f"cannot reach the dass service at http://127.0.0.1:{closed}/services/dass/" in r.stderr
    r = dass_jobs(cfg, "--url", service.url, "--token", "alice-token", "list")
    assert r.returncode == 0, r.stderr

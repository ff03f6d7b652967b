"""The service application: traits from the hub's environment, start, stop, failure modes."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import requests

from dass.service.app import DassService, load_openapi
from tests.service.service_support import PREFIX, free_port, make_repository, service_env, start_service


def test_traits_default_from_the_managed_service_environment(monkeypatch, tmp_path):
    config = tmp_path / "dass_config.py"
    config.write_text("")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://10.1.2.3:10555")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/prefix/services/dass/")
    monkeypatch.setenv("DASS_CONFIG", str(config))
    app = DassService()
    assert (app.ip, app.port) == ("10.1.2.3", 10555)
    assert app.base_url == "/prefix/services/dass/"
    assert app.config_file == str(config.resolve())
    assert app.identity_cache_seconds == 5


def test_traits_defaults_without_environment(monkeypatch):
    for key in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX", "DASS_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    app = DassService()
    assert (app.ip, app.port, app.base_url, app.config_file) == ("127.0.0.1", 10101, "/services/dass/", "")


def test_base_url_gets_its_slashes():
    assert DassService(base_url="services/x").base_url == "/services/x/"


def test_every_trait_is_documented():
    for name, trait in DassService.class_traits(config=True).items():
        if trait.this_class is DassService:
            assert trait.help and len(trait.help) > 30, f"DassService.{name} has no help"


def test_openapi_file_loads():
    doc = load_openapi()
    assert doc["openapi"] == "3.1.0"
    assert "/api/datasets/{proposal}/{dataset}" in doc["paths"]


# -- failures of the hub and the catalogue -----------------------------------------------------


def test_unreachable_hub_is_503_json(loop_thread, tmp_path):
    repo = make_repository(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}/hub/api"
    svc = start_service(loop_thread, tmp_path, dead, **repo)
    try:
        r = svc.get("api/me", "alice-token")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == 503 and "JupyterHub" in body["message"]
        assert "Location" not in r.headers
        assert svc.get("api/health").status_code == 200  # health does not need the hub
        page = svc.get("", "alice-token")
        assert page.status_code == 503 and "text/html" in page.headers["Content-Type"]
    finally:
        svc.stop()


def test_broken_catalogue_is_503(loop_thread, hub, tmp_path):
    repo = make_repository(tmp_path)
    svc = start_service(loop_thread, tmp_path, hub.api_url, **repo)
    try:
        assert svc.get("api/health").status_code == 200
        db = repo["db_url"].removeprefix("sqlite:///")
        with sqlite3.connect(db) as con:
            con.execute("DROP TABLE dataset_access")
            con.execute("DROP TABLE datasets")
        r = svc.get("api/health")
        assert r.status_code == 503, r.text
        assert r.json() == {
            "status": 503,
            "message": "the dataset catalogue database is unavailable; see the service log",
        }
        r = svc.get("api/datasets", "alice-token")
        assert r.status_code == 503 and "catalogue" in r.json()["message"]
        assert "sqlite" not in r.text  # the database URL stays in the log
    finally:
        svc.stop()


# -- python -m dass.service ----------------------------------------------------------------------


def run_module(env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "dass.service", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc, timeout: float = 30) -> str:
    """Wait for the process to exit; kill it (and fail) if it does not."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"python -m dass.service did not exit:\n{out}")
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_module_serves_and_stops_cleanly_on_signal(python_env, tmp_path, sig):
    repo = make_repository(tmp_path)
    config = tmp_path / "dass_config.py"
    config.write_text(f"c.Storage.url = {repo['repo_url']!r}\nc.Catalog.db_url = {repo['db_url']!r}\n")
    port = free_port()
    env = {**python_env, **service_env(f"http://127.0.0.1:{free_port()}/hub/api")}
    env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{port}"
    env["DASS_CONFIG"] = str(config)
    proc = run_module(env)
    try:
        url = f"http://127.0.0.1:{port}{PREFIX}api/health"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["datasets"] == 5
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert "Traceback" not in out


def test_module_without_hub_environment_explains_itself(python_env, tmp_path):
    for key in list(python_env):
        if key.startswith("JUPYTERHUB_"):
            del python_env[key]
    proc = run_module(python_env, f"--port={free_port()}")
    out = finish(proc)
    assert proc.returncode == 1
    assert "c.JupyterHub.services" in out and "JUPYTERHUB_API_TOKEN" in out
    assert "Traceback" not in out


def test_module_with_missing_config_file_explains_itself(python_env, tmp_path):
    proc = run_module(python_env, f"--config={tmp_path / 'nope.py'}")
    out = finish(proc)
    assert proc.returncode == 1
    assert "does not exist" in out and "nope.py" in out
    assert "Traceback" not in out


def test_state_folder_comes_from_the_config_file(monkeypatch, hub, tmp_path):
    """The service reads ``c.Platform.state_dir`` like the hub and the CLI do (over
    ``$DASS_STATE_DIR``; relative to the file): repository, catalogue and jobs lie in it."""
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "dass_config.py"
    config.write_text("c.Platform.state_dir = '../state'\n")
    for key, value in service_env(hub.api_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DASS_STATE_DIR", str(tmp_path / "env-state"))
    monkeypatch.delenv("DASS_CONFIG", raising=False)
    app = DassService()
    app.initialize([f"--config={config}"])
    try:
        state = tmp_path / "state"
        assert app.storage.url == f"file://{state}/repository"
        assert app.catalog.db_url == f"sqlite:///{state}/catalog.sqlite"
        assert app.job_manager.jobs_dir == str(state / "jobs")
        assert (state / "catalog.sqlite").exists() and not (tmp_path / "env-state").exists()
    finally:
        app.catalog.dispose()

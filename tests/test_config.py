"""One configuration: the hub, the service and the CLI take the same state folder and URL from
the same file (the rule of dass.config), by value."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import PyFileConfigLoader

from dass.config import load_config
from dass.data.catalog import Catalog
from dass.data.paths import state_dir
from dass.data.storage import Storage
from dass.platform import Platform

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def conf(tmp_path, monkeypatch) -> Path:
    """A config file naming a relative state folder and a non-default port; the environment
    names another state folder, which the file overrides."""
    monkeypatch.setenv("DASS_STATE_DIR", str(tmp_path / "from-env"))
    monkeypatch.delenv("DASS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "dass_config.py"
    path.write_text("c.Platform.state_dir = '../state'\nc.Platform.port = 8123\n")
    return path


def test_every_default_lies_in_the_configured_state_folder(conf, tmp_path):
    config = load_config(conf)
    state = (tmp_path / "state").resolve()
    assert config.Platform.state_dir == str(state)  # relative to the file, made absolute
    assert state_dir(config) == state
    assert Platform(config=config).state == state
    assert Storage(config=config).url == f"file://{state}/repository"
    assert Catalog(config=config).db_url == f"sqlite:///{state}/catalog.sqlite"


def test_without_the_setting_the_environment_then_the_working_folder(tmp_path, monkeypatch):
    cfg = tmp_path / "c.py"
    cfg.write_text("c.Platform.port = 8123\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DASS_STATE_DIR", str(tmp_path / "env-state"))
    assert Storage(config=load_config(cfg)).url == f"file://{tmp_path / 'env-state'}/repository"
    monkeypatch.delenv("DASS_STATE_DIR")
    assert state_dir(load_config(cfg)) == tmp_path.resolve() / ".dass"


def test_the_hub_reads_the_same_file_the_same_way(conf, tmp_path, monkeypatch):
    """hub/jupyterhub_config.py, as JupyterHub loads it, in the state folder (where `dass up`
    runs the hub), with $DASS_CONFIG naming the file."""
    state = (tmp_path / "state").resolve()
    state.mkdir()
    monkeypatch.chdir(state)
    monkeypatch.setenv("DASS_CONFIG", str(conf))
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT / "hub")).load_config()
    assert c.JupyterHub.db_url == f"sqlite:///{state / 'jupyterhub.sqlite'}"
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8123"
    assert (state / "secrets.json").exists()
    service = next(s for s in c.JupyterHub.services if s["name"] == "dass")
    assert service["environment"]["DASS_STATE_DIR"] == str(state)
    assert Catalog(config=c).db_url == f"sqlite:///{state}/catalog.sqlite"  # the spawner's access checks


@pytest.mark.parametrize("lines, url", [
    ([], "http://127.0.0.1:8000/services/dass/"),
    (["c.Platform.port = 8123"], "http://127.0.0.1:8123/services/dass/"),
    (["c.Platform.ip = '10.0.0.5'", "c.Platform.port = 80"], "http://10.0.0.5:80/services/dass/"),
    (["c.JupyterHub.bind_url = 'https://dass.example.org/'"], "https://dass.example.org/services/dass/"),
    (["c.JupyterHub.bind_url = 'http://0.0.0.0:9000'", "c.JupyterHub.base_url = '/jh/'"],
     "http://127.0.0.1:9000/jh/services/dass/"),
])
def test_service_url_follows_the_platform(tmp_path, lines, url):
    cfg = tmp_path / "c.py"
    cfg.write_text("\n".join(lines) + "\n")
    assert Platform(config=load_config(cfg)).service_url == url

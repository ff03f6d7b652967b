"""The one configuration file that the hub, the dass service and the CLI all read.

A deployer writes a traitlets Python config file (``dass_config.py``) with sections for dass
classes (``c.Storage``, ``c.Catalog``, ``c.StackRegistry``, ``c.DassSpawnerMixin``…, see
``dass config reference``) and for JupyterHub itself (``c.JupyterHub``, ``c.Authenticator``…).
Its path is given with ``--config`` or the ``DASS_CONFIG`` environment variable, which the
launcher (``dass up``) passes on to the hub and the service it starts.

One rule, the same for the hub, the service and every ``dass`` command:

- the file: ``--config FILE``, else ``$DASS_CONFIG``, else none (built-in defaults);
- the state folder: ``c.Platform.state_dir``, else ``$DASS_STATE_DIR``, else ``./.dass``
  (:func:`dass.data.paths.state_dir`); a relative ``state_dir`` is relative to the file.
  The repository (``c.Storage.url``), the catalogue (``c.Catalog.db_url``), the jobs and the
  homes default to places inside it;
- the platform's address: ``c.Platform.ip`` and ``c.Platform.port`` (or
  ``c.JupyterHub.bind_url``); ``dass jobs`` talks to the dass service behind it
  (:attr:`dass.platform.Platform.service_url`) unless ``--url`` names another.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from .errors import DassError

CONFIG_ENV = "DASS_CONFIG"


class ConfigFileError(DassError):
    """The configuration file is missing or cannot be loaded."""


def config_path(path: str | os.PathLike | None = None) -> Path | None:
    """The configuration file in force: ``path``, else ``$DASS_CONFIG``, else none."""
    chosen = path or os.environ.get(CONFIG_ENV)
    return Path(chosen).resolve() if chosen else None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load the dass configuration file into a traitlets ``Config`` (empty when there is none)."""
    p = config_path(path)
    if p is None:
        return Config()
    if not p.is_file():
        raise ConfigFileError(f"configuration file {p} does not exist: fix --config or ${CONFIG_ENV}")
    loader = PyFileConfigLoader(p.name, path=str(p.parent))
    try:
        config = loader.load_config()
    except Exception as e:  # a deployer's syntax error, named with the file
        raise ConfigFileError(f"cannot load configuration file {p}: {e}") from e
    platform = config.get("Platform")
    state = platform.get("state_dir") if platform is not None else None
    if isinstance(state, str) and state and not Path(state).expanduser().is_absolute():
        # relative to the file, so that every process reading it (the hub runs in the
        # state folder itself) finds the same folder
        config.Platform.state_dir = str((p.parent / state).resolve())
    elif isinstance(state, str) and state.startswith("~"):
        config.Platform.state_dir = str(Path(state).expanduser())
    return config

"""The one configuration file that the hub, the dass service and the CLI all read.

A deployer writes a traitlets Python config file (``dass_config.py``) with sections for dass
classes (``c.Storage``, ``c.Catalog``, ``c.StackRegistry``, ``c.DassSpawnerMixin``…, see
``dass config reference``) and for JupyterHub itself (``c.JupyterHub``, ``c.Authenticator``…).
Its path is given with ``--config`` or the ``DASS_CONFIG`` environment variable, which the
launcher (``dass up``) passes on to the hub and the service it starts.
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
        return loader.load_config()
    except Exception as e:  # a deployer's syntax error, named with the file
        raise ConfigFileError(f"cannot load configuration file {p}: {e}") from e

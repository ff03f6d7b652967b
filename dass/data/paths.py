"""Where dass keeps its local state (repository folder, catalogue database) by default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["state_dir", "STATE_DIR_ENV"]

STATE_DIR_ENV = "DASS_STATE_DIR"


def state_dir(config: Any = None) -> Path:
    """The state folder, by the one rule every dass command follows.

    ``c.Platform.state_dir`` of the configuration when it sets one, else ``$DASS_STATE_DIR``,
    else ``./.dass`` under the working directory. The defaults of ``c.Storage.url``,
    ``c.Catalog.db_url``, the jobs' and the homes' folders all lie under it, so the hub, the
    service and every CLI command given the same configuration file use the same repository
    and databases. ``dass up`` passes the folder on to the hub's children as
    ``$DASS_STATE_DIR``. The folder is not created here.

    Parameters
    ----------
    config : traitlets.config.Config, optional
        The loaded configuration (a configurable's ``self.config``); only its
        ``Platform.state_dir`` entry is read. A relative path is taken from the working
        directory (:func:`dass.config.load_config` makes it absolute, relative to the file).

    Returns
    -------
    pathlib.Path
        Absolute, resolved path of the state folder.

    Examples
    --------
    >>> from traitlets.config import Config
    >>> c = Config()
    >>> c.Platform.state_dir = "/srv/dass/state"
    >>> str(state_dir(c))
    '/srv/dass/state'
    """
    configured = None
    if config is not None:
        section = config.get("Platform") if hasattr(config, "get") else None
        if section is not None and hasattr(section, "get"):
            configured = section.get("state_dir")
    chosen = configured or os.environ.get(STATE_DIR_ENV) or Path.cwd() / ".dass"
    return Path(chosen).resolve()

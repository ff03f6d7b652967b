"""Where dass keeps its local state (repository folder, catalogue database) by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["state_dir", "STATE_DIR_ENV"]

STATE_DIR_ENV = "DASS_STATE_DIR"


def state_dir() -> Path:
    """The state folder: ``$DASS_STATE_DIR``, else ``./.dass`` under the working directory.

    This is the one place in :mod:`dass.data` that reads the environment: the launcher sets
    ``DASS_STATE_DIR`` for the hub and the service so that they agree on the defaults of
    ``c.Storage.url`` and ``c.Catalog.db_url``. The folder is not created here.

    Returns
    -------
    pathlib.Path
        Absolute, resolved path of the state folder.
    """
    return Path(os.environ.get(STATE_DIR_ENV) or Path.cwd() / ".dass").resolve()

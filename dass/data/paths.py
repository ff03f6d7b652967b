"""Where dass keeps its local state (repository folder, catalogue database) by default, and
:func:`lock_down`, which closes it to every account but the platform's."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["state_dir", "lock_down", "STATE_DIR_ENV"]

log = logging.getLogger(__name__)

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


def _chmod(path: Path, mode: int, changed: list[str]) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return
    if st.st_uid != os.geteuid() and os.geteuid() != 0:
        log.warning("Cannot restrict %s to %o: it belongs to uid %d", path, mode, st.st_uid)
        return
    os.chmod(path, mode)
    changed.append(f"{path} {mode:o}")


def _private(path: Path, changed: list[str]) -> None:
    """``path`` without group/other bits (0700 folders, 0600 files; execute bits kept)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        return
    mode = stat.S_IMODE(st.st_mode)
    wanted = 0o700 if stat.S_ISDIR(st.st_mode) else mode & 0o700 or 0o600
    _chmod(path, wanted, changed)


def lock_down(
    state: str | os.PathLike,
    *,
    traversable: Iterable[str | os.PathLike] = (),
    private: Iterable[str | os.PathLike] = (),
    create: Iterable[str | os.PathLike] = (),
) -> list[str]:
    """Close the platform's files to every other account; returns what was changed.

    - ``state`` becomes 0700, or 0711 when a ``traversable`` folder lies inside it (users may
      pass through, never list it); every entry directly in it becomes private (folders 0700,
      files 0600): secrets, databases, locks, pid files, a ``file://`` repository in it;
    - each ``traversable`` folder (the homes root, the jobs root) and the folders between it
      and ``state`` become 0711, and each entry in it private (0700), its owner kept: a
      home or job folder belongs to its user;
    - each ``private`` path outside ``state`` (a ``file://`` repository elsewhere) becomes
      0700;
    - each path in ``create`` that does not exist is created as an empty 0600 file (a SQLite
      database that the hub or the service creates later would otherwise be 0644).

    Links are never followed. Files of other owners are changed only when running as root.
    A missing ``state`` is left alone.
    """
    state = Path(state).resolve()
    changed: list[str] = []
    if not state.is_dir():  # nothing to protect yet (whoever makes it, makes it 0700)
        return changed
    roots = [Path(t).resolve() for t in traversable]
    inside = [t for t in roots if t.is_relative_to(state) and t != state]
    for path in create:
        path = Path(path)
        if path.is_relative_to(state) and not os.path.lexists(path):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            changed.append(f"{path} created 600")
    for root in inside:
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
    passage = {state}
    for root in inside:
        passage.update(p for p in root.parents if p.is_relative_to(state))
    _chmod(state, 0o711 if inside else 0o700, changed)
    for folder in sorted(passage, key=lambda p: len(p.parts)):
        for entry in folder.iterdir():
            if entry in roots:
                _chmod(entry, 0o711, changed)
                for child in entry.iterdir():
                    _private(child, changed)
            elif entry in passage:
                _chmod(entry, 0o711, changed)
            else:
                _private(entry, changed)
    for root in roots:
        if root not in inside and root.is_dir():
            _chmod(root, 0o711, changed)
            for child in root.iterdir():
                _private(child, changed)
    for path in private:
        path = Path(path)
        if not path.resolve().is_relative_to(state) and path.is_dir():
            _chmod(path, 0o700, changed)
    for line in changed:
        log.info("Locked down %s", line)
    return changed

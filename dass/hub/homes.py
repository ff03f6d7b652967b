"""Files the hub writes into a user's home, which the user owns: never through a link.

A home belongs to its user, who may replace any folder in it by a symbolic link at any time;
the hub runs as root. Everything here therefore works on folder descriptors with
``O_NOFOLLOW`` and ``O_EXCL`` (a planted link is never followed, an existing file never
overwritten unless asked), and moves aside whatever the user put where the platform's folders
belong.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..data.accounts import Account

__all__ = ["LAB_PAGE_CONFIG", "copy_notebooks", "interpreter_of", "platform_folder", "share_read_only", "write_new"]

#: JupyterLab's page config of sessions: no "Jupyter news" pop-up (it calls the internet).
LAB_PAGE_CONFIG = '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}\n'


def interpreter_of(command: str) -> str:
    """The program the system runs for ``command``: its ``#!`` interpreter when it is a script."""
    path = shutil.which(command) or command
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return path
    if first.startswith(b"#!"):
        words = first[2:].decode(errors="replace").split()
        if words and words[0] != "/usr/bin/env":
            return words[0]
    return path


def platform_folder(path: Path) -> None:
    """``path`` as a real folder of the platform's (0755): a link, file or folder the user put
    there instead is moved aside (``<name>.user-<n>``), never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o755)
        return
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
        if stat.S_IMODE(st.st_mode) != 0o755:
            os.chmod(path, 0o755)
        return
    n = 1
    while os.path.lexists(f"{path}.user-{n}"):
        n += 1
    os.rename(path, f"{path}.user-{n}")
    os.mkdir(path, 0o755)


def share_read_only(path: Path, account: Account) -> None:
    """Let ``account`` read the platform's file ``path`` but not change it: group the
    account's, mode 0640 (a link is left alone). A no-op for the platform's own account."""
    if account.is_platform:
        return
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
        os.chown(path, -1, account.gid, follow_symlinks=False)
        os.chmod(path, 0o640)


def write_new(folder: Path, name: str, text: str, *, replace: bool = False) -> None:
    """Write ``folder/name`` without following a link; ``replace`` overwrites a file."""
    fd_dir = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if replace:
            try:
                os.unlink(name, dir_fd=fd_dir)
            except FileNotFoundError:
                pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd_dir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    finally:
        os.close(fd_dir)


def copy_notebooks(notebooks: list[Path], home: Path, parts: tuple[str, ...], account: Account) -> None:
    """Copy ``notebooks`` into ``home/<parts…>`` (folders made as needed), each one the user
    has not got yet, all owned by ``account``. Works on folder descriptors and never
    follows a link: the home is the user's, who may have replaced any part with one."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                os.chown(part, account.uid, account.gid, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:  # a link or a file of the user's: leave it, copy nothing
                return
            os.close(fd)
            fd = child
        for nb in notebooks:
            try:
                out = os.open(nb.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            except FileExistsError:  # the user's own copy (or their link): kept
                continue
            with os.fdopen(out, "wb") as f:
                f.write(nb.read_bytes())
                if not account.is_platform:
                    os.fchown(f.fileno(), account.uid, account.gid)
    finally:
        os.close(fd)

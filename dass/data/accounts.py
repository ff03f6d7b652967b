"""Each hub user a Unix account of their own, and the platform's files closed to them.

On one machine the local back ends (sessions and jobs) run every user's processes under a
system account of that user: ``dass-alice`` for the hub user ``alice``. :class:`UserAccounts`
derives the account's name from the hub name (:meth:`UserAccounts.account_name`, pure),
creates the group, the user and the home folder at first use (:meth:`UserAccounts.ensure`:
``groupadd``/``useradd`` with explicit ids from ``uid_min``..``uid_max``, no login shell, home
0700) and hands back an :class:`Account`, which starts a process as that user
(:meth:`Account.preexec`, :meth:`Account.env`) and gives files to it (:meth:`Account.chown`).

:func:`lock_down_platform` closes the platform's own files to those accounts at every start:
the state folder (secrets, databases, job folders, the repository) is readable only by the
platform's account; the folders users must pass through (the homes root, the jobs root) are
0711 (enter, not list) and their entries 0700, each owned by its user.

Without root (``c.UserAccounts.enabled`` False, or ``"auto"`` not running as root) every user
runs as the platform's own account, as JupyterHub's ``SimpleLocalProcessSpawner`` does: homes
are still one per user and 0700, but a user's code can read everything the platform can, and
users are kept apart only by the API's checks.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import logging
import os
import pwd
import re
import stat
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Integer, TraitError, Unicode, Union, default, validate
from traitlets.config import LoggingConfigurable

from ..config import config_path
from .errors import AccountError
from .paths import lock_down, state_dir

__all__ = ["Account", "UserAccounts", "lock_down_platform", "MAX_NAME"]

log = logging.getLogger(__name__)

#: The longest account name ``useradd`` accepts on Linux (and the longest utmp keeps).
MAX_NAME = 32
#: Characters a hub name may keep unchanged in an account name (no ``_``: see account_name).
_KEEP = re.compile(r"^[a-z0-9-]+$")
_PREFIX = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")
#: Hex digits of the hub name's SHA-256 appended to a changed or shortened name.
HASH_DIGITS = 8
#: The GECOS (comment) field of an account made by dass: which hub name it belongs to.
_GECOS = "dass user {digest}"
_NOLOGIN = "/usr/sbin/nologin"


def _digest(hub_name: str) -> str:
    return hashlib.sha256(hub_name.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Account:
    """The Unix account one hub user's processes run as.

    Attributes
    ----------
    hub_name : str
        The JupyterHub user name.
    name : str
        The Unix account's name (``dass-alice``); the platform's own account's name when
        accounts are disabled.
    uid, gid : int
        Its user and primary group id.
    home : pathlib.Path
        The user's home folder (0700, owned by ``uid:gid``).
    shell : str
        ``SHELL`` of the user's processes (their terminals); the account itself has no
        login shell.
    """

    hub_name: str
    name: str
    uid: int
    gid: int
    home: Path
    shell: str = "/bin/bash"

    @property
    def is_platform(self) -> bool:
        """Whether this is the platform's own account (accounts disabled, or no root)."""
        return self.uid == os.geteuid()

    def preexec(self) -> Callable[[], None]:
        """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child this user.

        The supplementary groups are looked up now, in the parent (NSS calls after ``fork``
        in a threaded process can deadlock); the child only calls ``setgroups``, ``setgid``
        and ``setuid``, in that order, and fails to start (``SubprocessError``) when one is
        refused. A no-op for the platform's own account.
        """
        if self.is_platform:
            return _noop
        uid, gid = self.uid, self.gid
        try:
            groups = os.getgrouplist(self.name, gid)
        except OSError:  # pragma: no cover - the account vanished since ensure()
            groups = [gid]

        def preexec() -> None:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            if os.getuid() != uid or os.geteuid() != uid:  # pragma: no cover - paranoia
                raise OSError(f"could not become uid {uid}")

        return preexec

    def env(self) -> dict[str, str]:
        """``HOME``, ``USER``, ``LOGNAME`` and ``SHELL`` of this user's processes."""
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell}

    def chown(self, path: str | os.PathLike, *, recursive: bool = False) -> None:
        """Give ``path`` (and with ``recursive`` everything below it) to this account.

        Symbolic links are never followed (a user who planted a link in their home cannot
        make the platform give away a file elsewhere); links themselves are re-owned. A
        no-op for the platform's own account.
        """
        if self.is_platform:
            return
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        if recursive and stat.S_ISDIR(os.lstat(path).st_mode):
            for top, dirs, files in os.walk(path, followlinks=False):
                for name in dirs + files:
                    os.chown(os.path.join(top, name), self.uid, self.gid, follow_symlinks=False)


def closed_to_others(paths: list[Path]) -> str | None:
    """The first folder (or file) on the way to one of ``paths`` that others may not enter
    (execute), following links as a process would; None when every path is reachable. Parts
    that do not exist yet are skipped (they are made with the right modes)."""
    for target in paths:
        chain: list[Path] = []
        path = Path(os.path.abspath(target))
        for parent in reversed(path.parents):
            chain.append(parent)
        chain.append(path)
        for part in chain:
            try:
                real = part.resolve()
                st = real.stat()
            except OSError:
                break
            if not st.st_mode & 0o001:
                return str(real)
            if real != part and closed_to_others([real]):  # a link: its own way must be open too
                return closed_to_others([real])
    return None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _noop() -> None:
    return None


class UserAccounts(LoggingConfigurable):
    """The Unix accounts of hub users on this machine (configured as ``c.UserAccounts``)."""

    enabled = Union(
        [Enum(["auto"]), Bool()],
        default_value="auto",
        help="""Run each user's sessions and jobs under a Unix account of their own.

        ``"auto"`` (default): yes when the platform runs as root, which it must to switch
        users, and other users can reach both the platform's Python and the homes folder
        (every folder above them enterable by all); otherwise no, with a warning in the log
        that says which path to fix (a checkout under ``/root``, a venv made from pyenv's
        Python). ``True``: yes, and refuse to start sessions when not root. ``False``: every
        user's processes run as the platform's own account (homes are still one per user and
        0700); users are then kept apart only by the API's checks, not by the operating
        system: any user's code can read what the platform can, the repository and the
        secrets included. Use ``False`` only on a single-user workstation or a demo.""",
    ).tag(config=True)

    name_prefix = Unicode(
        "dass-",
        help="""Prefix of the accounts' names (``dass-alice`` for the hub user ``alice``).

        Lower-case letters, digits, ``-`` or ``_``, starting with a letter, at most 16
        characters. It keeps the accounts apart from the machine's own users: dass only
        ever uses accounts that carry it and lie in ``uid_min``..``uid_max``.""",
    ).tag(config=True)

    uid_min = Integer(
        61000,
        help="""Lowest user and group id of the accounts dass creates.

        Choose a range no other account source (``/etc/login.defs``' ``UID_MIN``..``UID_MAX``,
        LDAP, SSSD) hands out; Debian's ``adduser`` stops at 59999 and ``nobody`` is 65534.""",
    ).tag(config=True)

    uid_max = Integer(
        61999,
        help="""Highest user and group id of the accounts dass creates (inclusive). When every
        id in the range is taken, new users cannot start sessions until it is widened.""",
    ).tag(config=True)

    homes_root = Unicode(
        help="""Folder of the users' home folders (``<homes_root>/<account name>``).

        Created 0711 (users can reach their own home, not list the others); each home is
        0700 and owned by its user. Every folder above it must be enterable by all
        (``o+x``), else sessions refuse to start with a message naming this setting.
        Default: ``homes`` in the state folder (``c.Platform.state_dir``).""",
    ).tag(config=True)

    shell = Unicode(
        "/bin/bash",
        help="""``SHELL`` of the users' processes (the shell of JupyterLab's terminals).

        The accounts themselves get ``/usr/sbin/nologin`` as login shell and no password:
        nobody logs in to them other than through the hub.""",
    ).tag(config=True)

    @default("homes_root")
    def _default_homes_root(self) -> str:
        return str(state_dir(self.config) / "homes")

    @validate("name_prefix")
    def _check_prefix(self, proposal):
        value = proposal["value"]
        if not _PREFIX.match(value):
            raise TraitError(
                f"c.UserAccounts.name_prefix = {value!r}: use 1-16 lower-case letters, digits, "
                "'-' or '_', starting with a letter (e.g. 'dass-')"
            )
        return value

    @validate("uid_min", "uid_max")
    def _check_ids(self, proposal):
        value = proposal["value"]
        if not 1000 <= value <= 2**31 - 2:
            raise TraitError(
                f"c.UserAccounts.{proposal['trait'].name} = {value}: choose an id between 1000 "
                "and 2147483646 (below 1000 are the system's accounts)"
            )
        return value

    # ------------------------------------------------------------------ properties

    @property
    def active(self) -> bool:
        """Whether users get accounts of their own (``enabled``, resolved)."""
        if self.enabled == "auto":
            if os.geteuid() != 0:
                return False
            blocked = closed_to_others([Path(sys.executable), self.homes])
            if blocked:
                _warn_once(
                    f"per-user Unix accounts are off: other users cannot enter {blocked} (on the way to "
                    f"the platform's Python {sys.executable} or the homes {self.homes}), so every session "
                    "and job runs as root and users are kept apart only by the API. Make the platform's "
                    "environment from /usr/bin/python3 (make env does) in a folder all may enter, or set "
                    "c.UserAccounts.homes_root, c.Platform.state_dir; c.UserAccounts.enabled = True makes "
                    "this an error"
                )
                return False
            return True
        return bool(self.enabled)

    @property
    def homes(self) -> Path:
        return Path(self.homes_root).resolve()

    # ------------------------------------------------------------------ naming (pure)

    def account_name(self, hub_name: str) -> str:
        """The Unix account name of hub user ``hub_name`` (pure and deterministic).

        A hub name that is already a safe lower-case name (letters, digits, ``-``) and fits
        is kept: ``alice`` → ``dass-alice``. Any other is folded to ASCII, lower-cased, every
        other character turned into ``-``, shortened to fit 32 characters and followed by
        ``_`` and 8 hex digits of its SHA-256: ``Alice.Smith@lab.org`` →
        ``dass-alice-smith-lab-or_<hash>``. A kept name never contains ``_`` and a changed one
        always does, so two different hub names never share an account (barring a
        SHA-256 prefix collision, which :meth:`ensure` detects and refuses).

        Examples
        --------
        >>> accounts = UserAccounts()
        >>> accounts.account_name("alice")
        'dass-alice'
        >>> name = accounts.account_name("Alice.Smith@lab.org")
        >>> name.startswith("dass-alice-smith-l") and len(name) <= 32 and "_" in name
        True
        """
        if not isinstance(hub_name, str) or not hub_name:
            raise AccountError(f"a hub user name must be a non-empty string, not {hub_name!r}")
        prefix = self.name_prefix
        if _KEEP.match(hub_name) and len(prefix) + len(hub_name) <= MAX_NAME:
            return prefix + hub_name
        folded = unicodedata.normalize("NFKD", hub_name).encode("ascii", "ignore").decode().lower()
        body = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
        room = MAX_NAME - len(prefix) - 1 - HASH_DIGITS
        body = body[:room].rstrip("-") or "u"
        return f"{prefix}{body}_{_digest(hub_name)[:HASH_DIGITS]}"

    def home_of(self, hub_name: str) -> Path:
        """The home folder of hub user ``hub_name`` (pure; it may not exist yet)."""
        return self.homes / self.account_name(hub_name)

    # ------------------------------------------------------------------ accounts

    _lock = threading.Lock()

    def _platform_account(self, hub_name: str) -> Account:
        try:
            name = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:  # pragma: no cover - a uid without a passwd entry (containers)
            name = str(os.geteuid())
        return Account(hub_name, name, os.geteuid(), os.getegid(), self.home_of(hub_name), self.shell)

    def lookup(self, hub_name: str) -> Account | None:
        """The account of ``hub_name`` if it exists (``None`` if not yet created).

        Raises :class:`~dass.data.errors.AccountError` when an account of that name exists
        but is not one dass made for this hub user (outside the id range, or made for
        another hub name).
        """
        if not self.active:
            return self._platform_account(hub_name)
        name = self.account_name(hub_name)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        self._check_owned(hub_name, entry)
        return Account(hub_name, name, entry.pw_uid, entry.pw_gid, self.home_of(hub_name), self.shell)

    def _check_owned(self, hub_name: str, entry: pwd.struct_passwd) -> None:
        if not self.uid_min <= entry.pw_uid <= self.uid_max:
            raise AccountError(
                f"the Unix account {entry.pw_name!r} for hub user {hub_name!r} already exists with "
                f"uid {entry.pw_uid}, outside c.UserAccounts.uid_min..uid_max "
                f"({self.uid_min}..{self.uid_max}); dass does not adopt accounts it did not make: "
                "remove or rename that account, or change c.UserAccounts.name_prefix"
            )
        expected = _GECOS.format(digest=_digest(hub_name)[:32])
        if entry.pw_gecos != expected:
            raise AccountError(
                f"the Unix account {entry.pw_name!r} (uid {entry.pw_uid}) was not made by dass for hub "
                f"user {hub_name!r} (its comment is {entry.pw_gecos!r}, expected {expected!r}); "
                "remove that account or change c.UserAccounts.name_prefix"
            )

    def ensure(self, hub_name: str) -> Account:
        """The account of ``hub_name``, created with its group and home at first use.

        Idempotent and cheap once the account exists (one ``getpwnam`` and one ``stat``), so
        it may be called at every spawn and every job submission. Creation runs under a
        file lock (``<state>/locks/accounts.lock``), so concurrent hubs, services and threads
        never hand out one id twice. The home folder is (re)made 0700 and owned by the user
        whenever it is missing or has wrong bits.

        Raises
        ------
        dass.data.errors.AccountError
            Not root while accounts are enabled, the id range is exhausted, an account of that
            name exists that dass did not make, or ``useradd``/``groupadd`` failed.
        """
        account = self.lookup(hub_name)
        if account is None:
            if os.geteuid() != 0:
                raise AccountError(
                    f"cannot create the Unix account of hub user {hub_name!r}: c.UserAccounts.enabled "
                    "is True but the platform does not run as root; run it as root, or set "
                    "c.UserAccounts.enabled = False (every user then runs as the platform's account)"
                )
            with self._lock, _file_lock(self._lock_path()):
                account = self.lookup(hub_name) or self._create(hub_name)
        self._ensure_home(account)
        return account

    def _lock_path(self) -> Path:
        return state_dir(self.config) / "locks" / "accounts.lock"

    def _free_id(self) -> int:
        used = {e.pw_uid for e in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
        for candidate in range(self.uid_min, self.uid_max + 1):
            if candidate not in used:
                return candidate
        raise AccountError(
            f"no free user id left in c.UserAccounts.uid_min..uid_max ({self.uid_min}..{self.uid_max}, "
            f"{self.uid_max - self.uid_min + 1} ids, all taken by accounts or groups): widen the "
            "range to let new users start sessions"
        )

    def _create(self, hub_name: str) -> Account:
        name = self.account_name(hub_name)
        home = self.home_of(hub_name)
        gecos = _GECOS.format(digest=_digest(hub_name)[:32])
        try:
            group = grp.getgrnam(name)
        except KeyError:
            group = None
        if group is not None:  # left by a crash between groupadd and useradd, or not ours
            taken_uid = _uid_taken(group.gr_gid)
            if not self.uid_min <= group.gr_gid <= self.uid_max or taken_uid:
                raise AccountError(
                    f"a group {name!r} (gid {group.gr_gid}) exists that dass cannot use for hub user "
                    f"{hub_name!r} (outside c.UserAccounts.uid_min..uid_max, or its id is a user's): "
                    "remove it or change c.UserAccounts.name_prefix"
                )
            uid = group.gr_gid
        else:
            uid = self._free_id()
            _run(["groupadd", "--gid", str(uid), name], hub_name)
        _run(
            [
                "useradd",
                "--uid", str(uid),
                "--gid", str(uid),
                "--no-user-group",
                "--no-create-home",
                "--no-log-init",  # no sparse lastlog/faillog entries for high ids
                "--home-dir", str(home),
                "--shell", _NOLOGIN,
                "--comment", gecos,
                name,
            ],
            hub_name,
        )
        self.log.info("Created Unix account %s (uid %d) for hub user %s", name, uid, hub_name)
        return Account(hub_name, name, uid, uid, home, self.shell)

    def _ensure_home(self, account: Account) -> None:
        """Make the homes root (0711) and the account's home (0700, the account's)."""
        root = self.homes
        if not root.is_dir():
            root.mkdir(parents=True, exist_ok=True)
        if stat.S_IMODE(root.stat().st_mode) != 0o711 and root.stat().st_uid == os.geteuid():
            os.chmod(root, 0o711)
        home = account.home
        try:
            st = os.lstat(home)
        except FileNotFoundError:
            os.mkdir(home, 0o700)
            st = os.lstat(home)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise AccountError(
                f"the home of {account.name} ({home}) is not a folder; remove it (and check who made it)"
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(home, 0o700)
        if (st.st_uid, st.st_gid) != (account.uid, account.gid) and not account.is_platform:
            os.chown(home, account.uid, account.gid, follow_symlinks=False)

    def remove(self, hub_name: str) -> None:
        """Delete the account and group of ``hub_name`` (``userdel``); the home stays.

        Only an account dass made (in the range, for that hub name) is removed.
        """
        account = self.lookup(hub_name)
        if account is None or account.is_platform:
            return
        _run(["userdel", account.name], hub_name)
        try:
            grp.getgrnam(account.name)
        except KeyError:
            return
        _run(["groupdel", account.name], hub_name)


def _uid_taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _run(command: list[str], hub_name: str, *, tries: int = 6) -> None:
    """Run a shadow tool; retried (with a log line) while another program holds
    ``/etc/passwd``'s or ``/etc/group``'s lock ("cannot lock …; try again later")."""
    for attempt in range(1, tries + 1):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AccountError(
                f"could not run {command[0]} for hub user {hub_name!r}: {e}; dass needs the shadow "
                "tools (useradd, groupadd; Debian package 'passwd') and root"
            ) from e
        if done.returncode == 0 or "lock" not in done.stderr or attempt == tries:
            break
        log.info("%s for hub user %s: %s; trying again (%d/%d)", command[0], hub_name, done.stderr.strip(), attempt, tries)
        time.sleep(0.2 * attempt)
    if done.returncode != 0:
        raise AccountError(
            f"{' '.join(command)} failed for hub user {hub_name!r} (exit {done.returncode}): "
            f"{done.stderr.strip()}"
        )


class _file_lock:
    """An exclusive ``flock`` on ``path`` (created 0600, its folder 0700)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ---------------------------------------------------------------------- platform files


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///"):].split("?")[0]
    return Path(rest) if rest and rest != ":memory:" else None


def lock_down_platform(config: Any = None) -> list[str]:
    """:func:`lock_down` for the platform of ``config`` (what the hub, the service and
    ``dass up`` call at start): the state folder, the homes root
    (``c.UserAccounts.homes_root``), the jobs root (``c.JobManager.jobs_dir``), a ``file://``
    repository (``c.Storage.url``) and the SQLite databases (``c.Catalog.db_url``,
    ``c.JupyterHub.db_url``)."""
    from .catalog import Catalog
    from .storage import Storage

    state = state_dir(config)
    accounts = UserAccounts(config=config)

    def configured(section: str, key: str) -> Any:
        part = config.get(section) if config is not None and hasattr(config, "get") else None
        return part.get(key) if part is not None and hasattr(part, "get") else None

    jobs = configured("JobManager", "jobs_dir") or state / "jobs"
    storage = Storage(config=config)
    private = [storage.root] if storage.protocol in ("file", "local") else []
    databases = [
        _sqlite_file(Catalog(config=config).db_url),
        _sqlite_file(configured("JupyterHub", "db_url") or f"sqlite:///{state / 'jupyterhub.sqlite'}"),
    ]
    changed = lock_down(
        state,
        traversable=[accounts.homes_root, jobs],
        private=private,
        create=[d for d in databases if d is not None],
    )
    _warn_if_readable(config_path())
    return changed


def _warn_if_readable(path: Path | None) -> None:
    """The deployer's config file may hold storage keys: say so when others can read it (it is
    the deployer's file; dass does not change its mode)."""
    if path is None or not path.is_file():
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "The configuration file %s is readable by other users (mode %o): if it holds storage "
            "keys or passwords, make it 0600 (chmod 600 %s)", path, mode, path,
        )

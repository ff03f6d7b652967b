"""dass.data.accounts: account names (pure), real accounts made with useradd (as root), and the
lock-down of the platform's files.

Accounts made here use the prefix ``dtst-`` and ids 64100..64199, never the demo's, and are
removed again (``userdel``) by the ``accounts`` fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import pwd
import re
import stat
import threading
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

from dass.data.accounts import MAX_NAME, Account, UserAccounts, lock_down_platform
from dass.data.paths import lock_down
from dass.data.errors import AccountError
from tests.support import SYSTEM_PYTHON, TEST_ACCOUNT_IDS, TEST_ACCOUNT_PREFIX, remove_test_accounts

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="creating Unix accounts needs root (useradd)")
POSIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")

TEST_PREFIX = TEST_ACCOUNT_PREFIX
TEST_IDS = TEST_ACCOUNT_IDS


def make_accounts(tmp_path: Path, **settings) -> UserAccounts:
    c = Config()
    c.Platform.state_dir = str(tmp_path / "state")
    c.UserAccounts.enabled = "auto"  # the product's default (tests/conftest.py turns it off elsewhere)
    c.UserAccounts.name_prefix = TEST_PREFIX
    c.UserAccounts.uid_min, c.UserAccounts.uid_max = TEST_IDS
    c.UserAccounts.homes_root = str(tmp_path / "state" / "homes")
    for key, value in settings.items():
        setattr(c.UserAccounts, key, value)
    return UserAccounts(config=c)


@pytest.fixture
def accounts(tmp_path):
    """UserAccounts with the test prefix and range; every account it made is removed after."""
    made = make_accounts(tmp_path, enabled=True)
    yield made
    remove_test_accounts()


# ---------------------------------------------------------------------- names (pure)

NAMES = [
    "alice",
    "bob",
    "Alice",
    "alice@lab.org",
    "alice.smith@lab.org",
    "alice+test@lab.org",
    "alice_smith",
    "jörg",
    "joerg",
    "李雷",
    "محمد",
    "a" * 27,
    "a" * 28,
    "a" * 200,
    "x" * 200 + "y",
    "-",
    "0",
    "user with spaces",
    "alice-x_00000000",
    "ALICE",
    "alice ",
]


@pytest.mark.parametrize("hub_name", NAMES)
def test_account_names_are_valid_posix_names(tmp_path, hub_name):
    name = make_accounts(tmp_path).account_name(hub_name)
    assert POSIX_NAME.match(name), name
    assert len(name) <= MAX_NAME
    assert name.startswith(TEST_PREFIX)
    assert name == name.lower()
    assert make_accounts(tmp_path).account_name(hub_name) == name  # deterministic


def test_no_two_hub_names_share_an_account(tmp_path):
    accounts = make_accounts(tmp_path)
    names = [accounts.account_name(n) for n in NAMES]
    assert len(set(names)) == len(NAMES), sorted(zip(names, NAMES))


def test_safe_names_are_kept_and_changed_ones_get_a_hash(tmp_path):
    accounts = make_accounts(tmp_path)
    assert accounts.account_name("alice") == "dtst-alice"
    assert accounts.account_name("a" * 27) == "dtst-" + "a" * 27  # exactly 32
    shortened = accounts.account_name("a" * 28)
    assert len(shortened) == 32 and re.fullmatch(r"dtst-a+_[0-9a-f]{8}", shortened)
    mail = accounts.account_name("alice.smith@lab.org")
    assert re.fullmatch(r"dtst-alice-smith-lab-or_[0-9a-f]{8}", mail), mail
    # upper case is a change: "Alice" and "alice" are different hub names
    assert accounts.account_name("Alice") != accounts.account_name("alice")
    assert accounts.account_name("jörg").startswith("dtst-jorg_")
    assert re.fullmatch(r"dtst-u_[0-9a-f]{8}", accounts.account_name("李雷"))


def test_a_kept_name_never_looks_like_a_changed_one(tmp_path):
    """``alice@x`` becomes ``…alice-x_<hash>``; a hub user literally called ``alice-x_<hash>``
    must not get the same account: ``_`` is never kept, so that name is changed too."""
    accounts = make_accounts(tmp_path)
    changed = accounts.account_name("alice@x")
    literal = changed[len(TEST_PREFIX):]
    assert accounts.account_name(literal) != changed


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(TraitError, match="name_prefix"):
        make_accounts(tmp_path, name_prefix="Dass ")
    with pytest.raises(TraitError, match="uid_min"):
        make_accounts(tmp_path, uid_min=0)
    with pytest.raises(AccountError, match="non-empty"):
        make_accounts(tmp_path).account_name("")


def test_default_homes_root_is_in_the_state_folder(tmp_path):
    c = Config()
    c.Platform.state_dir = str(tmp_path)
    assert UserAccounts(config=c).homes == tmp_path / "homes"


# ---------------------------------------------------------------------- disabled


def test_disabled_accounts_are_the_platform_account_with_a_home_each(tmp_path):
    accounts = make_accounts(tmp_path, enabled=False)
    alice = accounts.ensure("alice@lab.org")
    assert (alice.uid, alice.gid) == (os.geteuid(), os.getegid())
    assert alice.is_platform
    assert alice.home == accounts.homes / accounts.account_name("alice@lab.org")
    assert stat.S_IMODE(alice.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(accounts.homes.stat().st_mode) == 0o711
    assert alice.preexec()() is None  # a no-op
    assert alice.env()["HOME"] == str(alice.home)
    assert accounts.lookup("alice@lab.org") == alice
    assert accounts.ensure("bob").home != alice.home


@pytest.mark.skipif(ROOT, reason="checks the refusal of a non-root platform")
def test_enabled_without_root_is_refused(tmp_path):
    with pytest.raises(AccountError, match="enabled = False"):
        make_accounts(tmp_path, enabled=True).ensure("alice")


def test_auto_means_root_with_a_python_and_homes_others_can_reach(tmp_path, monkeypatch):
    import sys

    from dass.data.accounts import closed_to_others

    open_base = Path(tempfile.mkdtemp(prefix="dass-auto-", dir="/tmp"))
    try:
        open_base.chmod(0o755)
        python = open_base / "python"
        python.write_text("")
        python.chmod(0o755)
        monkeypatch.setattr(sys, "executable", str(python))
        reachable = make_accounts(tmp_path, homes_root=str(open_base / "homes"))
        assert reachable.active is ROOT
        # pytest's tmp folder is 0700: homes there cannot be entered by the accounts
        closed = make_accounts(tmp_path)
        assert closed_to_others([closed.homes]) is not None
        assert closed.active is False
        python.chmod(0o700)  # a Python only root may run (pyenv's under /root)
        assert closed_to_others([python]) == str(python)
        assert reachable.active is False
    finally:
        shutil.rmtree(open_base, ignore_errors=True)


# ---------------------------------------------------------------------- real accounts


@needs_root
def test_ensure_creates_the_account_once(accounts):
    alice = accounts.ensure("alice@lab.org")
    entry = pwd.getpwnam(alice.name)
    assert (entry.pw_uid, entry.pw_gid) == (alice.uid, alice.gid)
    assert TEST_IDS[0] <= alice.uid <= TEST_IDS[1]
    assert entry.pw_shell == "/usr/sbin/nologin"
    assert entry.pw_dir == str(alice.home)
    st = alice.home.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (alice.uid, alice.gid, 0o700)
    assert accounts.ensure("alice@lab.org") == alice  # idempotent
    assert accounts.lookup("alice@lab.org") == alice
    bob = accounts.ensure("bob")
    assert bob.uid != alice.uid and bob.name == "dtst-bob"
    # a home whose bits were loosened is closed again
    os.chmod(alice.home, 0o755)
    accounts.ensure("alice@lab.org")
    assert stat.S_IMODE(alice.home.stat().st_mode) == 0o700


@needs_root
def test_ensure_is_safe_from_many_threads(accounts):
    results: list[Account] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results.append(accounts.ensure(f"user{i % 3}"))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({a.uid for a in results}) == 3
    assert len({(a.name, a.uid) for a in results}) == 3


@needs_root
def test_exhausted_range_is_a_clear_error(tmp_path, accounts):
    small = make_accounts(tmp_path, enabled=True, uid_min=TEST_IDS[0], uid_max=TEST_IDS[0] + 1)
    small.ensure("one")
    small.ensure("two")
    with pytest.raises(AccountError, match=r"no free user id.*uid_min\.\.uid_max.*widen"):
        small.ensure("three")
    assert small.ensure("one").uid == TEST_IDS[0]  # existing accounts still work


@needs_root
def test_system_accounts_are_never_adopted(tmp_path):
    # "root" with the empty prefix would be the real root account: refused (uid 0 is outside)
    c = Config()
    c.Platform.state_dir = str(tmp_path)
    c.UserAccounts.enabled = True
    c.UserAccounts.name_prefix = "r"
    accounts = UserAccounts(config=c)
    assert accounts.account_name("oot") == "root"
    with pytest.raises(AccountError, match="outside c.UserAccounts.uid_min..uid_max"):
        accounts.ensure("oot")


@needs_root
def test_an_account_made_for_another_hub_name_is_refused(accounts):
    import subprocess

    name = accounts.account_name("mallory")
    subprocess.run(["useradd", "-u", str(TEST_IDS[1]), "-M", "-c", "someone else", name], check=True)
    with pytest.raises(AccountError, match="not made by dass"):
        accounts.ensure("mallory")


@needs_root
def test_preexec_and_env_start_a_process_as_the_user(accounts):
    import subprocess

    alice = accounts.ensure("alice")
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import os; print(os.getuid(), os.getgid(), os.getgroups(), os.environ['HOME'])"],
        preexec_fn=alice.preexec(), env=alice.env(), capture_output=True, text=True, check=False,
    )
    assert out.stdout.split() == [str(alice.uid), str(alice.gid), f"[{alice.gid}]", str(alice.home)]


@needs_root
def test_chown_does_not_follow_links(accounts, tmp_path):
    alice = accounts.ensure("alice")
    target = tmp_path / "platform-file"
    target.write_text("secret")
    (alice.home / "notebooks").mkdir()
    (alice.home / "notebooks" / "a.ipynb").write_text("{}")
    (alice.home / "notebooks" / "link").symlink_to(target)
    alice.chown(alice.home / "notebooks", recursive=True)
    assert (alice.home / "notebooks" / "a.ipynb").stat().st_uid == alice.uid
    assert os.lstat(alice.home / "notebooks" / "link").st_uid == alice.uid
    assert target.stat().st_uid == os.geteuid()


# ---------------------------------------------------------------------- lock-down


def test_lock_down_closes_the_state_folder(tmp_path):
    state = tmp_path / "state"
    (state / "repository" / "p1").mkdir(parents=True)
    (state / "repository" / "p1" / "data.txt").write_text("x")
    (state / "secrets.json").write_text("{}")
    (state / "catalog.sqlite").write_text("")
    (state / "jobs" / "job-1").mkdir(parents=True)
    (state / "homes" / "dass-alice").mkdir(parents=True)
    for p in state.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    elsewhere = tmp_path / "repo-elsewhere"
    elsewhere.mkdir(mode=0o755)
    c = Config()
    c.Platform.state_dir = str(state)
    c.Storage.url = f"file://{elsewhere}"
    changed = lock_down_platform(c)
    mode = lambda p: stat.S_IMODE(os.lstat(p).st_mode)  # noqa: E731
    assert mode(state) == 0o711  # homes and jobs inside: passable, not listable
    assert mode(state / "secrets.json") == 0o600
    assert mode(state / "catalog.sqlite") == 0o600
    assert mode(state / "jupyterhub.sqlite") == 0o600  # made now, before the hub makes it 0644
    assert mode(state / "repository") == 0o700
    assert mode(state / "homes") == mode(state / "jobs") == 0o711
    assert mode(state / "homes" / "dass-alice") == mode(state / "jobs" / "job-1") == 0o700
    assert mode(elsewhere) == 0o700
    assert changed
    assert lock_down_platform(c) == []  # nothing left to change


def test_lock_down_without_passages_is_0700(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    lock_down(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700

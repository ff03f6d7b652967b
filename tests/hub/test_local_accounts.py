"""DassLocalSpawner and user accounts without a hub: the probe that refuses a Python or a home
the user cannot reach (with the setting to fix), the process settings, and the home writes
that never follow a link the user planted. The full flow with a real hub is in
tests/integration/test_accounts.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web
from traitlets.config import Config

from dass.hub.homes import copy_notebooks, platform_folder, share_read_only
from dass.hub.spawner import DassLocalSpawner
from dass.stacks.session import SessionSpec
from tests.support import SYSTEM_PYTHON, TEST_ACCOUNT_IDS, TEST_ACCOUNT_PREFIX, remove_test_accounts

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="user accounts need root (useradd, setuid)")


@pytest.fixture
def base():
    """A folder every account may enter (pytest's tmp folder is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="dass-spawner-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    remove_test_accounts()
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def spawner(state: Path, enabled=True, **settings) -> DassLocalSpawner:
    c = Config()
    c.Platform.state_dir = str(state)
    c.UserAccounts.enabled = enabled
    c.UserAccounts.name_prefix = TEST_ACCOUNT_PREFIX
    c.UserAccounts.uid_min, c.UserAccounts.uid_max = TEST_ACCOUNT_IDS
    for key, value in settings.items():
        setattr(c.UserAccounts, key, value)
    user = SimpleNamespace(name="alice@lab.org", groups=[], admin=False, url="/user/alice/")
    return DassLocalSpawner(config=c, user=user)


def spec(environment: str | None = None) -> SessionSpec:
    return SimpleNamespace(stack="sem", environment=environment)


@needs_root
def test_session_process_settings(base):
    s = spawner(base / "state")
    account = s._account()
    assert account.name.startswith(TEST_ACCOUNT_PREFIX + "alice-lab-org_")
    assert s.home_dir == str(account.home)
    assert "--allow-root" not in s.get_args()
    env = s.user_env({})
    assert env == {"HOME": str(account.home), "USER": account.name, "LOGNAME": account.name, "SHELL": "/bin/bash"}
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import os; print(os.getuid(), os.getcwd(), oct(os.umask(0)))"],
        preexec_fn=s.make_preexec_fn(account.name), env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.split() == [str(account.uid), str(account.home), "0o77"]


def test_root_platform_account_runs_with_allow_root(tmp_path):
    s = spawner(tmp_path / "state", enabled=False)
    assert s._account().is_platform
    assert ("--allow-root" in s.get_args()) is (os.geteuid() == 0)
    assert s.home_dir.endswith("/homes/" + s.accounts.account_name("alice@lab.org"))


@needs_root
def test_a_python_the_user_cannot_run_is_refused_with_the_setting(base):
    private = base / "private"
    private.mkdir(mode=0o700)
    (private / "python").symlink_to(SYSTEM_PYTHON)
    command = base / "jupyterhub-singleuser"
    command.write_text(f"#!{private / 'python'}\nprint('never')\n")
    command.chmod(0o755)
    s = spawner(base / "state")
    with pytest.raises(web.HTTPError) as e:
        s._check_runnable(s._account(), str(command), spec())
    assert "c.DassLocalSpawner.cmd" in e.value.jupyterhub_message
    assert "/usr/bin/python3" in e.value.jupyterhub_message
    with pytest.raises(web.HTTPError) as e:
        s._check_runnable(s._account(), str(command), spec(environment="/opt/envs/sem"))
    assert "c.StackRegistry.stacks['sem']['environment']" in e.value.jupyterhub_message


@needs_root
def test_a_home_the_user_cannot_reach_is_refused_with_the_setting(base):
    closed = base / "closed"
    closed.mkdir(mode=0o700)
    s = spawner(base / "state", homes_root=str(closed / "homes"))
    with pytest.raises(web.HTTPError) as e:
        s._check_runnable(s._account(), SYSTEM_PYTHON, spec())
    assert "c.UserAccounts.homes_root" in e.value.jupyterhub_message


@needs_root
def test_home_writes_never_follow_a_planted_link(base):
    s = spawner(base / "state")
    account = s._account()
    home = account.home
    target = base / "platform-only"
    target.mkdir()
    # the user replaces ~/.dass and ~/notebooks by links to a folder of the platform
    (home / ".dass").symlink_to(target)
    (home / "notebooks").symlink_to(target)
    platform_folder(home / ".dass")
    assert (home / ".dass").is_dir() and not (home / ".dass").is_symlink()
    assert (home / ".dass.user-1").is_symlink()  # moved aside, not followed
    nb = base / "welcome.ipynb"
    nb.write_text("{}")
    copy_notebooks([nb], home, ("notebooks", "sem"), account)
    assert list(target.iterdir()) == []  # nothing written through the link
    os.unlink(home / "notebooks")
    copy_notebooks([nb], home, ("notebooks", "sem"), account)
    copied = home / "notebooks" / "sem" / "welcome.ipynb"
    assert copied.stat().st_uid == account.uid
    assert (home / "notebooks").stat().st_uid == account.uid
    copied.write_text('{"mine": 1}')
    copy_notebooks([nb], home, ("notebooks", "sem"), account)
    assert copied.read_text() == '{"mine": 1}'  # the user's own copy is kept
    manifest = home / ".dass" / "session.json"
    manifest.write_text("{}")
    share_read_only(manifest, account)
    st = manifest.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), account.gid, 0o640)


def test_check_is_skipped_for_the_platform_account(tmp_path):
    s = spawner(tmp_path / "state", enabled=False)
    assert s._check_runnable(s._account(), sys.executable, spec()) is None

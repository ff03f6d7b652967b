"""Each user a Unix account: two users' real sessions on the real platform, run as root.

alice and bob spawn through the hub (``dass up``, the real ``DassLocalSpawner``); then real
processes started as bob (through his account's ``preexec``, as the spawner starts sessions)
try to reach alice's home, her session's environment (where her token is), the platform's
secrets, databases, jobs and repository: each attempt must end in ``PermissionError``. The
same probe run as alice on her own files, and as bob on his own, proves the probe itself
works (a denial is not a missing path or an unreachable folder above).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import (
    SYSTEM_PYTHON,
    TEST_ACCOUNT_PREFIX,
    accounts_platform,
    PlatformProcess,
    shared_session_env,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="sessions under per-user Unix accounts need root (useradd, setuid)"),
]

PROBE = r"""
import json, os, sys
results = {}
for label, kind, path in json.loads(sys.argv[1]):
    try:
        if kind == "list":
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        results[label] = "allowed"
    except PermissionError:
        results[label] = "denied"
    except OSError as e:
        results[label] = f"{type(e).__name__}: {e}"
print(json.dumps({"uid": os.getuid(), "results": results}))
"""


@pytest.fixture(scope="module")
def platform_accounts():
    """The platform with accounts on, and alice's and bob's sessions running."""
    with accounts_platform(
        "platform-accounts", lambda base: f"c.DassLocalSpawner.cmd = [{str(shared_session_env(base))!r}]"
    ) as p:
        for user, options in (
            ("alice", {"stack": "sem", "size": "small", "datasets": ["p-2026-001/sem-nanowires"]}),
            ("bob", {"stack": "sem", "size": "small"}),
        ):
            r = p.spawn(user, options)
            assert r.status_code in (201, 202), r.text
        yield p


def accounts_of(p: PlatformProcess):
    from dass.config import load_config
    from dass.data.accounts import UserAccounts

    config = load_config(p.config_file)
    config.Platform.state_dir = str(p.state)  # dass up has it from $DASS_STATE_DIR
    return UserAccounts(config=config)


def session_pid(user: str) -> int:
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        env = proc.info.get("environ") or {}
        if env.get("JUPYTERHUB_USER") == user and "jupyterhub-singleuser" in " ".join(proc.info["cmdline"] or []):
            return proc.pid
    raise AssertionError(f"no session process of {user}")


def probe(account, checks: list[tuple[str, str, Path | str]]) -> dict:
    """Run the probe as ``account`` (its preexec and environment, as the spawner does)."""
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", PROBE, json.dumps([(label, kind, str(path)) for label, kind, path in checks])],
        preexec_fn=account.preexec(), env=account.env(), cwd="/", capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["uid"] == account.uid
    return out["results"]


def test_sessions_run_as_their_own_accounts(platform_accounts):
    p = platform_accounts
    accounts = accounts_of(p)
    alice, bob = accounts.lookup("alice"), accounts.lookup("bob")
    assert alice.name == f"{TEST_ACCOUNT_PREFIX}alice" and bob.name == f"{TEST_ACCOUNT_PREFIX}bob"
    assert alice.uid != bob.uid
    import psutil

    assert psutil.Process(session_pid("alice")).uids().real == alice.uid
    assert psutil.Process(session_pid("bob")).uids().real == bob.uid
    for account in (alice, bob):
        st = account.home.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.uid, 0o700)
        # the platform's parts of the home: readable, not writable by the user
        manifest = account.home / ".dass" / "session.json"
        assert manifest.stat().st_uid == os.geteuid()
        assert (account.home / "datasets").stat().st_uid == os.geteuid()
    notebooks = list((alice.home / "notebooks" / "sem").glob("*.ipynb"))
    assert notebooks and all(n.stat().st_uid == alice.uid for n in notebooks)
    # inside alice's kernel: her uid, her home, and bob's home closed
    out = p.run_in_kernel("alice", (
        "import os, pathlib\n"
        f"try:\n    os.listdir({str(bob.home)!r}); bob = 'allowed'\n"
        "except PermissionError:\n    bob = 'denied'\n"
        "print(os.getuid(), pathlib.Path.home(), bob)"
    ), timeout=120)
    assert out.split() == [str(alice.uid), str(alice.home), "denied"]


def test_bob_cannot_reach_alice_or_the_platform(platform_accounts):
    p = platform_accounts
    accounts = accounts_of(p)
    alice, bob = accounts.lookup("alice"), accounts.lookup("bob")
    state = p.state
    jobs = state / "jobs"
    job = jobs / "job-of-alice"
    job.mkdir(exist_ok=True)
    (job / "notebook.ipynb").write_text("{}")
    os.chmod(job, 0o700)
    alice.chown(job, recursive=True)  # as a job folder is: its user's, 0700
    dataset_file = state / "repository" / "p-2026-001" / "sem-nanowires" / "dataset.json"
    assert dataset_file.exists()
    alice_pid = session_pid("alice")
    theirs = [
        ("alice's home", "list", alice.home),
        ("alice's manifest", "read", alice.home / ".dass" / "session.json"),
        ("alice's session environ", "read", f"/proc/{alice_pid}/environ"),
        ("secrets", "read", state / "secrets.json"),
        ("catalogue database", "read", state / "catalog.sqlite"),
        ("hub database", "read", state / "jupyterhub.sqlite"),
        ("state folder", "list", state),
        ("jobs root", "list", jobs),
        ("alice's job folder", "list", job),
        ("alice's job notebook", "read", job / "notebook.ipynb"),
        ("repository", "list", state / "repository"),
        ("repository file", "read", dataset_file),
    ]
    assert probe(bob, theirs) == {label: "denied" for label, _, _ in theirs}
    # the same probe works: bob reaches his own things, alice hers
    own = [("own home", "list", "{home}"), ("own manifest", "read", "{home}/.dass/session.json"),
           ("own session environ", "read", "/proc/{pid}/environ"), ("homes root", "list", accounts.homes)]
    own = [(label, kind, str(path)) for label, kind, path in own]
    for account, user in ((bob, "bob"), (alice, "alice")):
        checks = [(label, kind, path.format(home=account.home, pid=session_pid(user))) for label, kind, path in own]
        results = probe(account, checks)
        assert results["own home"] == results["own manifest"] == results["own session environ"] == "allowed"
        assert results["homes root"] == "denied"  # 0711: enter, never list
    assert probe(alice, [("job", "list", job)]) == {"job": "allowed"}
    for path in (state / "secrets.json", state / "catalog.sqlite", state / "jupyterhub.sqlite"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((state / "repository").stat().st_mode) == 0o700

"""DassContainerSpawner renders a SessionSpec into its container by value (the real session,
through a real hub, is in tests/integration/test_containers.py)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from dass.stacks.containers import Bind
from dass.stacks.registry import Size, Stack
from dass.stacks.selection import Selection
from dass.stacks.session import build_session_spec
from tests.support import TEST_ACCOUNT_IDS, TEST_ACCOUNT_PREFIX, remove_test_accounts

STACK = Stack("sem", "SEM", "", "sem/welcome.ipynb", "small", ("small",), image="dass-stack-sem")
SIZE = Size("medium", "medium", cpu=2, mem_gib=4)


@pytest.mark.skipif(os.geteuid() != 0, reason="user accounts need root (useradd)")
def test_session_container_from_the_session_spec():
    from dass.hub.container import DassContainerSpawner

    base = Path(tempfile.mkdtemp(prefix="dass-container-spawner-", dir="/tmp"))
    try:
        c = Config()
        c.Platform.state_dir = str(base)
        c.UserAccounts.enabled = True
        c.UserAccounts.name_prefix = TEST_ACCOUNT_PREFIX
        c.UserAccounts.uid_min, c.UserAccounts.uid_max = TEST_ACCOUNT_IDS
        c.DassContainerSpawner.image_tag = "1.2.3"
        user = SimpleNamespace(name="alice", groups=[], admin=False, url="/user/alice/")
        hub = SimpleNamespace(public_host="", url="/hub/", base_url="/hub/", api_url="http://127.0.0.1:8081/hub/api")
        s = DassContainerSpawner(config=c, user=user, hub=hub)
        selection = Selection(STACK, SIZE, ())
        spec = build_session_spec(selection, user="alice", service_url="http://127.0.0.1:9/services/dass/", token="tok")
        s.session_spec = spec
        s.port = 12345
        account = s._account()
        run = s.container_run(spec)
        assert run.name == f"dass-session-{account.name}"
        assert run.image == "dass-stack-sem:1.2.3"
        assert run.user == f"{account.uid}:{account.gid}"
        assert run.binds == (Bind(str(account.home)),)  # the home, nothing else of the host
        assert (run.cpu, run.mem_bytes) == (2, 4 * 1024**3)
        assert run.argv[0] == "jupyterhub-singleuser"
        env = run.env
        assert "PATH" not in env and env["HOME"] == str(account.home)
        assert env["DASS_STACK"] == "sem" and env["DASS_SERVICE_URL"].startswith("http://127.0.0.1")
        assert env["DASS_SESSION_MANIFEST"] == str(account.home / ".dass" / "session.json")
        assert not [k for k in env if k.startswith(("AWS_", "DASS_STORAGE", "CONFIGPROXY"))]
    finally:
        remove_test_accounts()
        subprocess.run(["rm", "-rf", str(base)], check=False)

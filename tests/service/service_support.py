"""Support of the dass service tests: a real service on a free port, a small real "hub".

The hub is a tiny tornado application that answers the hub API calls the service makes, the
way JupyterHub answers them: ``GET /hub/api/`` (the version, which a session's
``jupyterhub-singleuser`` checks before it serves), ``GET /hub/api/user`` (who owns this token, with its scopes; what
:meth:`HubAuth.user_for_token` asks), ``GET /hub/api/users/{name}`` (a user's groups and admin
flag, only with the service's own token) and ``POST /hub/api/oauth2/token`` (code for token, the
end of the OAuth login). Everything on the service side is the real code: JupyterHub's
``HubOAuth``, the handlers, the catalogue on SQLite and the repository on ``file://``.

Both servers run on one asyncio loop in a background thread; tests talk to them with
``requests`` from the main thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from dass.data.catalog import Catalog
from dass.data.storage import Storage
from dass.service.app import DassService

SERVICE_TOKEN = "dass-service-token"
CLIENT_ID = "service-dass"
#: seconds a test waits for one answer of the service: sized for a loaded 2-core machine, where
#: the first classification also loads and measures the model (the service answers in
#: milliseconds when idle; nothing waits this long unless something is wrong)
REQUEST_TIMEOUT = 120
PREFIX = "/services/dass/"
ACCESS_SCOPE = "access:services!service=dass"

#: hub users: name -> (groups, admin)
USERS: dict[str, tuple[list[str], bool]] = {
    "alice": (["p-2026-001"], False),
    "bob": (["p-2026-002"], False),
    "carol": ([], True),
    "dave": ([], False),
    "eve": (["p-2026-001"], False),
    "frank": ([], False),
    "staffer": (["p-2026-001", "staff"], False),
}

#: API tokens: token -> owner name (eve's token lacks the access scope)
TOKENS = {f"{name}-token": name for name in USERS}
TOKENS["robot-token"] = "robot"  # a hub service


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the repository ------------------------------------------------------------------------------


def dataset_json(title: str, **extra: Any) -> dict[str, Any]:
    doc = {
        "schema": "dass.dataset/1",
        "title": title,
        "creators": [{"name": "Test, Tess", "affiliation": "dass tests"}],
        "dates": {"created": "2026-01-15"},
        "licence": "CC-BY-4.0",
        "synthetic": True,
    }
    doc.update(extra)
    return doc


DATASETS: dict[str, dict[str, Any]] = {
    "p-2026-001/sem-grains": dataset_json(
        "Grain boundaries in annealed copper", keywords=["grain", "copper"], technique="SEM",
        instrument="Zeiss Supra 40", stacks=["sem"],
    ),
    "p-2026-001/kmap-strain": dataset_json(
        "Strain map of a SiGe island", keywords=["strain"], technique="KMAP", stacks=["kmap"],
    ),
    "p-2026-002/stm-movie": dataset_json(
        "Surface diffusion movie", keywords=["diffusion"], technique="STM", stacks=["stm"],
    ),
    "p-2025-009/public-tips": dataset_json(
        "Public STM tip images", keywords=["tips"], technique="STM", stacks=["stm"],
        access={"public": True},
    ),
    "p-2026-003/embargoed": dataset_json(
        "Embargoed SEM images", technique="SEM", stacks=["sem"],
        access={"public": True, "embargo_until": "2099-12-31"},
    ),
}


def write_repository(root: Path) -> None:
    for dataset_id, doc in DATASETS.items():
        folder = root / dataset_id
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text(json.dumps(doc))
        (folder / "image.tif").write_bytes(b"II*\x00fake")
    (root / "p-2026-001" / "proposal.json").write_text(
        json.dumps({"title": "Copper and SiGe microstructure", "pi": "Alice"})
    )


def make_repository(tmp: Path) -> dict[str, str]:
    """Write the test repository below ``tmp`` and scan it into a new SQLite catalogue.

    Returns the ``repo_url`` and ``db_url`` to configure the service with.
    """
    root = tmp / "repository"
    write_repository(root)
    urls = {"repo_url": f"file://{root}", "db_url": f"sqlite:///{tmp / 'catalog.sqlite'}"}
    catalog = Catalog(db_url=urls["db_url"])
    report = catalog.scan(Storage(url=urls["repo_url"]))
    catalog.dispose()
    assert not report.errors, str(report)
    assert report.indexed == len(DATASETS)
    return urls


# -- the loop thread ---------------------------------------------------------------------------


class LoopThread:
    """An asyncio loop running in a daemon thread; :meth:`run` waits for a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="service-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# -- the hub -----------------------------------------------------------------------------------


class _HubHandler(web.RequestHandler):
    @property
    def hub(self) -> FakeHub:
        return self.settings["hub"]

    def token(self) -> str:
        auth = self.request.headers.get("Authorization", "")
        kind, _, value = auth.partition(" ")
        return value.strip() if kind.lower() in ("token", "bearer") else ""

    def deny(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish({"status": status, "message": message})


class _RootHandler(_HubHandler):
    """``GET /hub/api/``: JupyterHub's version, in the body and the ``X-JupyterHub-Version`` header."""

    def get(self) -> None:
        import jupyterhub

        self.set_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.finish({"version": jupyterhub.__version__})


class _UserHandler(_HubHandler):
    """``GET /hub/api/user``: the owner of the token, with the token's scopes."""

    def get(self) -> None:
        self.hub.calls.append(("user", self.token()))
        name = self.hub.tokens.get(self.token())
        if name is None:
            return self.deny(403, "Missing or invalid credentials.")
        if name == "robot":
            return self.finish({"kind": "service", "name": "robot", "scopes": [ACCESS_SCOPE], "roles": []})
        scopes = [f"read:users:name!user={name}", f"read:users:groups!user={name}"]
        if name != "eve":  # eve was not granted access to the service
            scopes.append(ACCESS_SCOPE)
        # like an OAuth token of a service: no groups in the model (no read:users:groups)
        # JupyterHub >= 5 names the token (its api id) and its login session
        token_id = f"a{sorted(self.hub.tokens).index(self.token())}"
        self.finish({"kind": "user", "name": name, "admin": False, "scopes": scopes, "session_id": None,
                     "token_id": token_id})


class _UsersHandler(_HubHandler):
    """``GET /hub/api/users/{name}``: a user's model; needs the service's token (read:users)."""

    def get(self, name: str) -> None:
        self.hub.calls.append(("users", name))
        if self.hub.fail_users:
            return self.deny(500, "the hub database is on fire")
        if self.token() != SERVICE_TOKEN:
            return self.deny(403, "Action is not authorized with current scopes; requires any of [read:users]")
        if name not in self.hub.users:
            return self.deny(404, f"No such user: {name}")
        groups, admin = self.hub.users[name]
        self.finish({"kind": "user", "name": name, "admin": admin, "groups": list(groups),
                     "server": None, "pending": None, "last_activity": None})


class _OAuthTokenHandler(_HubHandler):
    """``POST /hub/api/oauth2/token``: exchange an authorization code for a token."""

    def post(self) -> None:
        form = {k: v[-1] for k, v in parse_qs(self.request.body.decode()).items()}
        self.hub.calls.append(("oauth2/token", form.get("code", "")))
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != SERVICE_TOKEN:
            return self.deny(400, "invalid_client")
        token = self.hub.codes.pop(form.get("code", ""), None)
        if token is None:
            return self.deny(400, "invalid_grant")
        self.finish({"access_token": token, "token_type": "Bearer", "expires_in": 3600})


class FakeHub:
    """A small real HTTP server answering the hub API like JupyterHub does."""

    def __init__(self) -> None:
        self.users = {name: (list(g), a) for name, (g, a) in USERS.items()}
        self.tokens = dict(TOKENS)
        self.codes: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_users = False
        self.app = web.Application(
            [
                (r"/hub/api/?", _RootHandler),
                (r"/hub/api/user", _UserHandler),
                (r"/hub/api/users/([^/]+)", _UsersHandler),
                (r"/hub/api/oauth2/token", _OAuthTokenHandler),
            ],
            hub=self,
        )

    async def start(self) -> None:
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.server = HTTPServer(self.app)
        self.server.add_sockets(sockets)
        self.api_url = f"http://127.0.0.1:{self.port}/hub/api"

    async def stop(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()

    def lookups(self, name: str) -> int:
        return sum(1 for kind, who in self.calls if kind == "users" and who == name)


# -- the service -------------------------------------------------------------------------------


def service_env(api_url: str) -> dict[str, str]:
    """The environment JupyterHub gives a managed service named ``dass``."""
    return {
        "JUPYTERHUB_SERVICE_NAME": "dass",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:0",
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_CLIENT_ID": CLIENT_ID,
        "JUPYTERHUB_OAUTH_CALLBACK_URL": PREFIX + "oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([ACCESS_SCOPE, "access:services"]),
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
    }


class RunningService:
    """A :class:`DassService` serving on the loop thread, and a client for it."""

    def __init__(self, app: DassService, future, loop_thread: LoopThread) -> None:
        self.app = app
        self.future = future
        self.loop_thread = loop_thread
        self.url = f"http://127.0.0.1:{app.bound_port}{PREFIX}"

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers.setdefault("Authorization", f"token {token}")
        kw.setdefault("allow_redirects", False)
        return requests.get(self.url + path, headers=headers, timeout=REQUEST_TIMEOUT, **kw)

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers.setdefault("Authorization", f"token {token}")
        return requests.request(method, self.url + path, headers=headers, timeout=REQUEST_TIMEOUT,
                                allow_redirects=False, **kw)

    def stop(self) -> None:
        self.app.stop()
        self.future.result(10)


def start_service(loop_thread: LoopThread, tmp: Path, api_url: str, db_url: str, repo_url: str,
                  extra_config: str = "") -> RunningService:
    config = tmp / "dass_config.py"
    config.write_text(
        "\n".join(
            [
                f"c.Storage.url = {repo_url!r}",
                f"c.Catalog.db_url = {db_url!r}",
                f"c.Storage.lock_dir = {str(tmp / 'locks')!r}",  # the dataset.json locks
                "c.DassService.identity_cache_seconds = 1",
                # stm only for proposal p-2026-002; an xl size of sem only for staff
                "c.StackRegistry.stacks = {'stm': {'groups': ['p-2026-002']}, "
                "'sem': {'allowed_sizes': ['small', 'medium', 'large', 'xl']}}",
                "c.StackRegistry.sizes = {'xl': {'display_name': 'XL', 'cpu': 8, 'mem_gib': 32, "
                "'groups': ['staff']}}",
                extra_config,
            ]
        )
        + "\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in service_env(api_url).items():
            mp.setenv(key, value)
        mp.delenv("DASS_CONFIG", raising=False)
        app = DassService()
        app.initialize([f"--config={config}"])
    assert (app.ip, app.port, app.base_url) == ("127.0.0.1", 0, PREFIX)  # from the environment

    started = threading.Event()

    async def serve() -> None:
        task = asyncio.ensure_future(app.serve())
        while app.bound_port is None and not task.done():
            await asyncio.sleep(0.01)
        started.set()
        await task

    future = loop_thread.submit(serve())
    if not started.wait(10):
        raise RuntimeError("the dass service did not start")
    if future.done():
        future.result()  # raises what went wrong
    return RunningService(app, future, loop_thread)


def start_idle_jobs_service(loop_thread: LoopThread, hub_api_url: str, tmp: Path):
    """A service of its own (own catalogue, own jobs folder) whose job queue never starts a job,
    so tests see QUEUED jobs and no runner process is left behind."""
    urls = make_repository(tmp / "data")
    (tmp / "service").mkdir()
    extra = f"c.JobManager.max_concurrency = 0\nc.JobManager.jobs_dir = {str(tmp / 'jobs')!r}"
    return start_service(loop_thread, tmp / "service", hub_api_url, extra_config=extra, **urls)

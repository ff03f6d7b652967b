"""The one-machine platform: settings, secrets, the hub's configuration defaults and `dass up`.

``dass up`` (what ``make up`` runs) prepares the state folder, generates secrets on first
start, seeds the demo repository, indexes the catalogue and then *becomes* the JupyterHub
process (``exec``), so Ctrl-C reaches the hub directly: it stops every user server, the dass
service, the idle culler and the proxy it started before it exits.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Dict, Enum, Integer, List, Unicode, default
from traitlets.config import Config, LoggingConfigurable

from .config import CONFIG_ENV, config_path, load_config
from .data.accounts import lock_down_platform
from .data.paths import state_dir as _default_state_dir

SOURCE_ROOT = Path(__file__).resolve().parents[1]


class Platform(LoggingConfigurable):
    """Settings of the one-machine platform that `dass up` starts."""

    state_dir = Unicode(
        help="""Folder for the platform's state: secrets, databases, demo repository, homes.

        The hub, the dass service and every ``dass`` command given this config file use it
        (the defaults of ``c.Storage.url``, ``c.Catalog.db_url`` and the jobs' folders lie
        inside it). A relative path is relative to the config file. Default:
        ``$DASS_STATE_DIR``, else ``.dass`` in the current folder. Created with mode 0700.""",
    ).tag(config=True)

    @default("state_dir")
    def _default_state_dir(self) -> str:
        return str(_default_state_dir())

    ip = Unicode("127.0.0.1", help="Address the platform is served on.").tag(config=True)
    port = Integer(
        8000,
        help="""Public port of the platform (the proxy). ``dass jobs`` given this config file
        sends its requests there (``http://<ip>:<port>/services/dass/``).""",
    ).tag(config=True)
    hub_port = Integer(8081, help="Port of the hub behind the proxy.").tag(config=True)
    proxy_api_port = Integer(8001, help="Port of the proxy's REST API (loopback).").tag(config=True)
    service_port = Integer(10101, help="Port of the dass service (loopback).").tag(config=True)

    proxy = Enum(
        ["auto", "node", "python"],
        "auto",
        help="""Which configurable-http-proxy to run.

        ``node``: the npm package (installed into ``node_modules/`` by ``make up`` when node is
        present); ``python``: the pure-Python ``configurable-http-proxy`` package; ``auto``:
        node when its proxy is installed, else python.""",
    ).tag(config=True)

    demo_data = Bool(
        True,
        help="""Seed a synthetic demo repository (two proposals, datasets for every stack)
        into a ``file://`` repository, and create the demo users and their proposal groups.""",
    ).tag(config=True)

    demo_sem_model = Bool(
        True,
        help="""With ``demo_data``: when the repository has no default SEM classifier, register
        the demo model (``demo-synthetic``, a resnet18 trained on SYNTHETIC images of
        ``dass.sem.synthetic``; for demonstration only). It is trained at the first start on a
        machine (about a minute or two on CPU) and cached in ``$XDG_CACHE_HOME/dass`` (else
        ``~/.cache/dass``), then reused. Needs torch (the ``sem`` extra).""",
    ).tag(config=True)

    demo_users = Dict(
        {"alice": ["p-2026-001"], "bob": ["p-2026-002"]},
        help="""Demo users and the hub groups (proposals) they belong to, with ``demo_data``.""",
    ).tag(config=True)

    demo_admins = List(
        ["dass-admin"],
        help="Demo admin users, with ``demo_data``; they log in with the admin password.",
    ).tag(config=True)

    idle_timeout = Integer(
        3600,
        help="Seconds of inactivity after which jupyterhub-idle-culler stops a user server (0: no culler).",
    ).tag(config=True)

    spawn_start_timeout = Integer(
        300,
        help="""Seconds a session may take to start: the access check, mounting the chosen
        datasets (copies from S3 take longer) and until JupyterLab listens. Becomes
        ``c.Spawner.start_timeout`` unless that is set; a spawn that runs out fails with a
        message saying so. Sized for a busy 2-core machine (load about 10), where JupyterLab's
        import alone takes 22–29 s and JupyterHub's default (60 s) is too tight.""",
    ).tag(config=True)

    spawn_http_timeout = Integer(
        120,
        help="""Seconds the hub waits for a started session to answer HTTP. Becomes
        ``c.Spawner.http_timeout`` unless that is set (JupyterHub's default, 30 s, kills
        sessions on a busy 2-core machine before JupyterLab has finished starting).""",
    ).tag(config=True)

    hub_config_file = Unicode(
        help="The jupyterhub_config.py the hub runs with. Default: hub/jupyterhub_config.py of the source tree.",
    ).tag(config=True)

    @default("hub_config_file")
    def _default_hub_config_file(self) -> str:
        return str(SOURCE_ROOT / "hub" / "jupyterhub_config.py")

    @property
    def state(self) -> Path:
        return Path(self.state_dir).resolve()

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def service_url(self) -> str:
        """Where a client on this machine reaches the dass service: through the platform's
        proxy, ``c.JupyterHub.bind_url`` (default ``http://<ip>:<port>``, a wildcard address
        read as loopback) and its base URL, then ``services/dass/``.

        ``dass jobs`` uses it when a configuration file is in force, so that the CLI talks to
        the platform that the same file starts.

        Examples
        --------
        >>> from traitlets.config import Config
        >>> c = Config()
        >>> c.Platform.port = 8123
        >>> Platform(config=c).service_url
        'http://127.0.0.1:8123/services/dass/'
        >>> c.JupyterHub.bind_url = "http://0.0.0.0:9000/lab/"
        >>> Platform(config=c).service_url
        'http://127.0.0.1:9000/lab/services/dass/'
        """
        hub = self.config.get("JupyterHub") or {}
        parsed = urlsplit(hub.get("bind_url") or self.url)
        host = parsed.hostname or self.ip
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parsed.port}" if parsed.port else ""
        base = (hub.get("base_url") or parsed.path or "/").strip("/")
        path = f"/{base}/services/dass/" if base else "/services/dass/"
        return f"{parsed.scheme or 'http'}://{host}{port}{path}"

    def proxy_command(self) -> list[str]:
        node_proxy = SOURCE_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
        use_node = self.proxy == "node" or (
            self.proxy == "auto" and node_proxy.exists() and shutil.which("node")
        )
        if use_node:
            return [str(node_proxy)]
        return [str(Path(sys.executable).parent / "configurable-http-proxy")]


# ---------------------------------------------------------------- secrets

SECRET_NAMES = (
    "cookie_secret",
    "proxy_auth_token",
    "dass_service_token",
    "culler_token",
    "crypt_key",
    "user_password",
    "admin_password",
)


def _new_secret(name: str) -> str:
    if name == "user_password":
        return secrets.token_urlsafe(9)  # 12 characters, shown to demo users
    if name == "admin_password":
        return secrets.token_urlsafe(30)  # 40 characters (JupyterHub wants >= 32)
    return secrets.token_hex(32)


def load_secrets(state: Path) -> dict[str, str]:
    """Read the platform's secrets, generating the missing ones (file mode 0600)."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state / "secrets.json"
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text())
    missing = [n for n in SECRET_NAMES if not data.get(n)]
    if missing or (path.stat().st_mode & 0o077 if path.exists() else True):
        for name in missing:
            data[name] = _new_secret(name)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return data


# ---------------------------------------------------------------- hub configuration


def _setdefault(section, key: str, value: Any) -> None:
    if key not in section:
        section[key] = value


def _managed(state: Path, name: str, command: list[str]) -> list[str]:
    """``command`` run through :mod:`dass.hub.managed`: a pid file in the state folder (a
    leftover of a killed hub is ended at the next start) and the parent-death signal (the
    service ends with its hub)."""
    pid_file = state / f"{name}.pid"
    return [sys.executable, "-m", "dass.hub.managed", f"--pid-file={pid_file}", "--", *command]


def apply_hub_defaults(c: Config) -> None:
    """Fill a JupyterHub ``Config`` with the platform's defaults where the deployer set nothing.

    Called by ``hub/jupyterhub_config.py`` after the deployer's dass config file was loaded
    into ``c``, so every value here can be overridden in that file.
    """
    platform = Platform(config=c)
    state = platform.state
    sec = load_secrets(state)
    lock_down_platform(c)  # again in the hub: a deployer may start it without `dass up`
    env = {"DASS_STATE_DIR": str(state)}
    cfg_file = config_path()
    if cfg_file:
        env[CONFIG_ENV] = str(cfg_file)

    hub = c.JupyterHub
    _setdefault(hub, "bind_url", platform.url)
    _setdefault(hub, "hub_bind_url", f"http://127.0.0.1:{platform.hub_port}")
    _setdefault(hub, "db_url", f"sqlite:///{state / 'jupyterhub.sqlite'}")
    _setdefault(hub, "cookie_secret", bytes.fromhex(sec["cookie_secret"]))
    _setdefault(hub, "spawner_class", "dass.hub.spawner.DassLocalSpawner")
    _setdefault(c.DassSpawnerMixin, "service_url", f"http://127.0.0.1:{platform.service_port}/services/dass/")
    _setdefault(hub, "authenticator_class", "shared-password")
    _setdefault(hub, "default_url", "/hub/spawn")
    _setdefault(hub, "cleanup_servers", True)
    _setdefault(hub, "cleanup_proxy", True)
    _setdefault(c.Spawner, "start_timeout", platform.spawn_start_timeout)
    _setdefault(c.Spawner, "http_timeout", platform.spawn_http_timeout)

    proxy = c.ConfigurableHTTPProxy
    _setdefault(proxy, "auth_token", sec["proxy_auth_token"])
    _setdefault(proxy, "api_url", f"http://127.0.0.1:{platform.proxy_api_port}")
    _setdefault(proxy, "command", platform.proxy_command())
    _setdefault(proxy, "pid_file", str(state / "proxy.pid"))

    c.CryptKeeper.keys = [bytes.fromhex(sec["crypt_key"])]

    shared_password = hub.authenticator_class in ("shared-password",) or str(
        hub.authenticator_class
    ).endswith("SharedPasswordAuthenticator")
    if shared_password:
        _setdefault(c.SharedPasswordAuthenticator, "user_password", sec["user_password"])
        _setdefault(c.SharedPasswordAuthenticator, "admin_password", sec["admin_password"])

    # demo users and their proposal groups belong to the shared-password demo; with an
    # identity provider, users and groups come from it (e.g. GenericOAuthenticator.manage_groups)
    if platform.demo_data and shared_password:
        _setdefault(c.Authenticator, "allowed_users", set(platform.demo_users))
        _setdefault(c.Authenticator, "admin_users", set(platform.demo_admins))
        groups: dict[str, dict] = {}
        for user, names in platform.demo_users.items():
            for g in names:
                groups.setdefault(g, {"users": []})["users"].append(user)
        _setdefault(hub, "load_groups", groups)

    services = list(hub.get("services", []))
    names = {s["name"] for s in services}
    if "dass" not in names:
        services.append(
            {
                "name": "dass",
                "display": True,
                "url": f"http://127.0.0.1:{platform.service_port}",
                "command": _managed(state, "dass-service", [sys.executable, "-m", "dass.service"]),
                "api_token": sec["dass_service_token"],
                "oauth_no_confirm": True,
                "environment": env,
            }
        )
    if platform.idle_timeout and "idle-culler" not in names:
        services.append(
            {
                "name": "idle-culler",
                "command": _managed(
                    state,
                    "idle-culler",
                    [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={platform.idle_timeout}"],
                ),
                "api_token": sec["culler_token"],
                "environment": env,
            }
        )
    hub.services = services

    roles = list(hub.get("load_roles", []))
    role_names = {r["name"] for r in roles}
    ours = [
        {
            "name": "user",
            "description": "Standard user privileges, plus use of the dass service",
            "scopes": ["self", "access:services!service=dass"],
        },
        {
            # a session's own token (JUPYTERHUB_API_TOKEN) may call the dass service, so that
            # dass.jobs.submit() works from a notebook
            "name": "server",
            "description": "Post activity, and use the dass service as the server's owner",
            "scopes": ["users:activity!user", "access:servers!server", "access:services!service=dass"],
        },
        {
            "name": "dass-service",
            "description": "The dass service reads users and their groups to authorize requests",
            "scopes": ["read:users", "list:users", "read:groups", "list:groups"],
            "services": ["dass"],
        },
    ]
    if platform.idle_timeout:
        ours.append(
            {
                "name": "idle-culler",
                "description": "Stop idle user servers",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": ["idle-culler"],
            }
        )
    roles.extend(r for r in ours if r["name"] not in role_names)
    hub.load_roles = roles


# ---------------------------------------------------------------- dass up


def _demo_sem_model(storage: Any, out: Any) -> None:
    """Register the demo SEM classifier unless the repository has a default model; say which
    model classifies, with progress while the demo model trains (first start on a machine)."""
    from .sem.demo import DEMO_MODEL_NAME, ensure_demo_model

    shown = {"pct": -10}

    def progress(done: int, total: int, message: str = "") -> None:
        if message.startswith("epoch "):  # one line per epoch: "epoch 3/14 done: ..."
            out(f"  training the demo SEM classifier: {message}")
            return
        if message.startswith("waiting for another"):  # another instance trains it
            out(f"  demo SEM classifier: {message}")
            return
        pct = int(100 * done / max(total, 1))
        if pct >= shown["pct"] + 10:
            shown["pct"] = pct
            out(f"  training the demo SEM classifier: {pct:3d} % {message}")

    name = ensure_demo_model(storage, progress=progress)
    if name == DEMO_MODEL_NAME:
        out(f"SEM classifier: {name} (trained on SYNTHETIC images, for demonstration only)")
    else:
        out(f"SEM classifier: {name} (the repository's default model)")


def prepare(config: Config, *, out=print) -> Platform:
    """Everything `dass up` does before the hub starts: secrets, demo data, catalogue."""
    from .data.catalog import Catalog
    from .data.storage import Storage

    platform = Platform(config=config)
    state = platform.state
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["DASS_STATE_DIR"] = str(state)
    load_secrets(state)

    storage = Storage(config=config)
    if platform.demo_data:
        if storage.protocol in ("file", "local") and not storage.fs.exists(storage.root):
            storage.fs.makedirs(storage.root, exist_ok=True)
        from .demo import seed

        written = seed(storage.fs, storage.root)
        if written:
            out(f"Seeded {len(written)} synthetic demo datasets into {storage.url}")
        if platform.demo_sem_model:
            _demo_sem_model(storage, out)
    storage.check()

    catalog = Catalog(config=config)
    catalog.upgrade()
    report = catalog.scan(storage)
    out(f"Catalogue: {report}")
    lock_down_platform(config)  # secrets, databases, repository: the platform's account only
    return platform


def login_help(platform: Platform, config: Config) -> str:
    sec = load_secrets(platform.state)
    lines = [f"dass is starting on {platform.url}"]
    auth = config.JupyterHub.get("authenticator_class", "shared-password")
    if auth == "shared-password" and platform.demo_data:
        users = ", ".join(sorted(platform.demo_users))
        lines += [
            f"  Log in as one of: {users}   password: {sec['user_password']}",
            f"  Admin: {', '.join(platform.demo_admins)}   password: {sec['admin_password']}",
            f"  (passwords are in {platform.state / 'secrets.json'}, mode 0600)",
        ]
    lines.append("  Press Ctrl-C to stop the hub, the proxy, the dass service and every user server.")
    return "\n".join(lines)


def up(config_file: str | None = None) -> None:
    """Prepare the platform and exec JupyterHub (never returns)."""
    path = config_path(config_file)
    config = load_config(path)
    platform = prepare(config)
    print(login_help(platform, config), flush=True)
    env = dict(os.environ, DASS_STATE_DIR=str(platform.state))
    if path:
        env[CONFIG_ENV] = str(path)
    argv = [sys.executable, "-m", "jupyterhub", "-f", platform.hub_config_file]
    os.chdir(platform.state)
    # A shell that starts us in the background sets SIGINT to "ignore", and an ignored signal
    # survives exec: the hub's children (services, user servers) would then ignore the hub's
    # SIGINT at shutdown and be killed only after JupyterHub's timeouts. Restore the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execve(sys.executable, argv, env)

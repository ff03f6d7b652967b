"""Test support: free ports, a moto S3 server, a real dass platform, kernel execution.

Nothing here mocks the platform: :class:`PlatformProcess` runs ``dass up`` (the real hub,
proxy, dass service and idle culler) in a subprocess on free loopback ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


CHROMIUM = Path("/usr/bin/chromium")
#: flags for headless Debian Chromium on a machine without network (see ENVIRONMENT.md)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-quic",
]


def browser_missing() -> str:
    """Why this machine cannot drive a browser ("" when it can)."""
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium; never `playwright install`)"
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install playwright)"
    return ""


def new_page(browser, width: int = 1300, height: int = 1000):
    """A fresh browser context and page (30 s default timeout) collecting console errors."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    return context, page, errors


def failure_screenshot(page, name: str) -> None:
    """Keep a full-page screenshot of a failed browser test in test-artifacts/ (best effort)."""
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    except Exception:  # the page may be gone: the test's own error is what matters
        pass


def hub_login(page, base_url: str, user: str, password: str) -> None:
    """Log in through the hub's login form, as a person would."""
    page.goto(f"{base_url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login_submit, input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r"/hub/(spawn|home)"))


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the thing is still starting
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


class MotoServer:
    """A real S3 endpoint on loopback (moto in server mode)."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: requests.get(self.endpoint, timeout=1).ok, 30, "moto_server")

    @property
    def options(self) -> dict:
        return {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing"}

    def make_bucket(self, name: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=name)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class PlatformProcess:
    """``dass up`` with a generated config on free ports, in its own state folder."""

    def __init__(self, state: Path, *, storage_url: str | None = None, storage_options=None,
                 extra_config: str = "", name: str = "platform", port: int | None = None,
                 sem_model: bool = False, accounts: bool = False):
        """``accounts``: run sessions under per-user Unix accounts (``c.UserAccounts``) as the
        platform does as root; off by default here, since sessions as other users need a
        Python and a state folder they can reach (see :func:`shared_session_env`) and read
        their datasets through the gateway."""
        self.state = state
        self.name = name
        state.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = uuid.uuid4().hex
        self.storage_url = storage_url or f"file://{state / 'repository'}"
        self.config_file = state / "dass_config.py"
        lines = [
            f"c.Platform.port = {self.port}",
            f"c.Platform.hub_port = {free_port()}",
            f"c.Platform.proxy_api_port = {free_port()}",
            f"c.Platform.service_port = {free_port()}",
            f"c.Storage.url = {self.storage_url!r}",
            f"c.Storage.options = {storage_options or {}!r}",
            # the demo SEM classifier trains at the first start on a machine: only where asked
            f"c.Platform.demo_sem_model = {bool(sem_model)}",
            f"c.UserAccounts.enabled = {bool(accounts)}",
            "c.JupyterHub.services = [{'name': 'dass-tests', 'api_token': %r}]" % self.admin_token,
            "c.JupyterHub.load_roles = [{'name': 'dass-tests', 'services': ['dass-tests'], 'scopes': "
            "['admin:users', 'admin:servers', 'access:servers', 'tokens', 'admin:groups', "
            "'list:users', 'read:users', 'access:services']}]",
            extra_config,
        ]
        self.config_file.write_text("\n".join(lines) + "\n")
        self.spawn_timeout = spawn_timeout(self.config_file)
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}.log"
        self.log = open(self.log_path, "w")
        self._tokens: dict[str, str] = {}
        self._start(600 if sem_model else 90)
        self.secrets = json.loads((state / "secrets.json").read_text())

    def _start(self, timeout: float) -> None:
        """Run ``dass up`` with this platform's config and wait until hub and service answer."""
        env = dict(os.environ, DASS_STATE_DIR=str(self.state))
        env.pop("DASS_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dass", "--config", str(self.config_file), "up"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.started = time.monotonic()
        try:
            wait_for(self._ready, timeout, f"the platform at {self.url} (log: {self.log_path})")
        except Exception:
            self.stop()
            raise
        self.ready_after = time.monotonic() - self.started

    def rescan(self) -> None:
        """Index the repository again (``dass catalog scan`` with this platform's config)."""
        env = dict(os.environ, DASS_STATE_DIR=str(self.state))
        r = subprocess.run([sys.executable, "-m", "dass", "--config", str(self.config_file), "catalog", "scan"],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr

    def kill_hub(self) -> None:
        """SIGKILL the hub process alone (as the OOM killer would): no cleanup runs."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def restart(self, timeout: float = 90) -> None:
        """Start ``dass up`` again with the same config and state folder (after :meth:`kill_hub`
        or :meth:`interrupt`)."""
        assert self.proc.poll() is not None, "the platform is still running"
        if self.log.closed:
            self.log = open(self.log_path, "a")
        self.log.write("\n---- restart ----\n")
        self.log.flush()
        self._start(timeout)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"dass up exited with {self.proc.returncode}; see {self.log_path}")
        hub = requests.get(f"{self.url}/hub/api/", timeout=2)
        svc = requests.get(f"{self.url}/services/dass/api/health", timeout=2)
        return hub.ok and svc.ok

    # -- hub API ------------------------------------------------------------------------
    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kw)

    def token_for(self, user: str) -> str:
        if user not in self._tokens:
            r = self.api("POST", f"/users/{user}", json={})
            assert r.status_code in (201, 409), r.text  # 409: exists already
            r = self.api("POST", f"/users/{user}/tokens", json={"note": "dass tests"})
            assert r.status_code == 201, r.text
            self._tokens[user] = r.json()["token"]
        return self._tokens[user]

    def service(self, method: str, path: str, user: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.token_for(user)}", **kw.pop("headers", {})}
        return requests.request(
            method, f"{self.url}/services/dass/{path}", headers=headers, timeout=30, **kw
        )

    def spawn(self, user: str, options: dict | None, timeout: float | None = None) -> requests.Response:
        """Spawn via REST; returns the response (waits for readiness when accepted, at most
        as long as the hub itself would: :func:`spawn_timeout` of the platform's config)."""
        r = self.api("POST", f"/users/{user}/server", json=options if options is not None else {})
        if r.status_code in (201, 202):
            self.wait_ready(user, timeout)
        return r

    def wait_ready(self, user: str, timeout: float | None = None):
        timeout = timeout or self.spawn_timeout

        def ready():
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if server is None and not model.get("pending"):
                raise RuntimeError(f"server of {user} is gone: {model}")
            return server and server.get("ready")

        wait_for(ready, timeout, f"the server of {user}", interval=0.5)

    def stop_server(self, user: str, timeout: float = 60):
        r = self.api("DELETE", f"/users/{user}/server")
        assert r.status_code in (202, 204, 400), r.text

        def gone():
            model = self.api("GET", f"/users/{user}").json()
            return "" not in model.get("servers", {}) and not model.get("pending")

        wait_for(gone, timeout, f"the server of {user} to stop", interval=0.5)

    def run_in_kernel(self, user: str, code: str, timeout: float = 60) -> str:
        return run_in_kernel(f"{self.url}/user/{user}", self.token_for(user), code, timeout)

    # -- lifecycle ----------------------------------------------------------------------
    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a person would give it; returns the exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode

    def stop(self):
        self.interrupt()
        for p in leftover_processes(self.state):
            try:
                p.kill()
            except Exception:
                pass


#: Unix accounts the tests make: this prefix and id range, never the demo's (dass-, 61000..)
TEST_ACCOUNT_PREFIX = "dtst-"
TEST_ACCOUNT_IDS = (64100, 64199)
#: a Python every account may run (a venv made from a Python under /root is not)
SYSTEM_PYTHON = "/usr/bin/python3"


def remove_test_accounts() -> None:
    """``userdel``/``groupdel`` every account and group with the tests' prefix and ids."""
    import grp
    import pwd

    for entry in pwd.getpwall():
        if entry.pw_name.startswith(TEST_ACCOUNT_PREFIX) and TEST_ACCOUNT_IDS[0] <= entry.pw_uid <= TEST_ACCOUNT_IDS[1]:
            subprocess.run(["userdel", entry.pw_name], check=False, capture_output=True)
    for group in grp.getgrall():
        if group.gr_name.startswith(TEST_ACCOUNT_PREFIX) and TEST_ACCOUNT_IDS[0] <= group.gr_gid <= TEST_ACCOUNT_IDS[1]:
            subprocess.run(["groupdel", group.gr_name], check=False, capture_output=True)


def shared_session_env(folder: Path) -> Path:
    """A Python environment every Unix account may run, over this test run's packages;
    returns its ``jupyterhub-singleuser``.

    The test virtualenv may come from a Python under a private home (``/root/.pyenv``), which
    other users cannot execute. This makes a venv from the system's ``/usr/bin/python3`` (same
    minor version) in ``folder`` whose ``.pth`` adds the test environment's site-packages,
    the way ``make env`` would build it from ``/usr/bin/python3`` (no copy, no download).
    """
    import sysconfig

    system = Path("/usr/bin/python3")
    version = subprocess.run([str(system), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        raise RuntimeError(f"{system} is Python {version}, the tests run {sys.version_info[:2]}")
    env = folder / "session-env"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(env)], check=True)
    site = next(env.glob("lib/python3*/site-packages"))
    purelib = sysconfig.get_paths()["purelib"]
    (site / "dass-tests.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    command = env / "bin" / "jupyterhub-singleuser"
    command.write_text(
        f"#!{env / 'bin' / 'python'}\nimport sys\nfrom jupyterhub.singleuser import main\nsys.exit(main())\n"
    )
    command.chmod(0o755)
    return command


def seed_many_datasets(repository: Path, proposal: str, *, own: int, uploads: int, results: int) -> list[str]:
    """Write small valid datasets into a ``file://`` repository folder, readable by the
    ``proposal`` group: ``own`` named ``set-NNN`` (techniques SEM, STM, KMAP in turn, one a day
    from 2025-01-01), ``uploads`` SEM uploads ``sem-upload-<date>-<hex>`` and ``results`` job
    results ``results/job-<hex>``. Returns their ids; index them with ``dass catalog scan``."""
    import datetime as dt
    import hashlib

    from dass.demo import CREATOR, LICENCE, SCHEMA

    day0 = dt.date(2025, 1, 1)
    wanted = []
    for i in range(own):
        wanted.append((proposal, f"set-{i:03d}", f"Sample series {i:03d}", ("SEM", "STM", "KMAP")[i % 3],
                       day0 + dt.timedelta(days=i)))
    for i in range(uploads):
        day = day0 + dt.timedelta(days=400 + i)
        wanted.append((proposal, f"sem-upload-{day:%Y%m%d}-{i:08x}", f"SEM upload {i}", "SEM", day))
    for i in range(results):
        wanted.append(("results", f"job-{i:032x}", f"Results of job {i}", None, day0 + dt.timedelta(days=600 + i)))
    ids = []
    for prop, name, title, technique, day in wanted:
        folder = repository / prop / name
        folder.mkdir(parents=True, exist_ok=True)
        data = f"{title}\n".encode()
        (folder / "note.txt").write_bytes(data)
        meta = {"schema": SCHEMA, "title": title, "creators": [dict(CREATOR)],
                "dates": {"created": day.isoformat()}, "licence": LICENCE,
                "keywords": ["picker-test"], "access": {"groups": [proposal], "public": False},
                "synthetic": True, "checksums": {"note.txt": "sha256:" + hashlib.sha256(data).hexdigest()}}
        if technique:
            meta["technique"] = technique
        (folder / "dataset.json").write_text(json.dumps(meta))
        ids.append(f"{prop}/{name}")
    return ids


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped yet counts as ended)."""
    import psutil

    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


def spawn_timeout(config_file: Path) -> float:
    """How long a spawn may take on the platform of ``config_file``: its start and HTTP
    timeouts (``c.Platform.spawn_*_timeout`` or ``c.Spawner.*_timeout``), after which the hub
    itself fails the spawn, plus a margin for the hub's own bookkeeping."""
    from dass.config import load_config
    from dass.platform import Platform

    config = load_config(config_file)
    platform = Platform(config=config)
    start = config.Spawner.get("start_timeout", platform.spawn_start_timeout)
    http = config.Spawner.get("http_timeout", platform.spawn_http_timeout)
    return float(start + http + 30)


def leftover_processes(state: Path) -> list:
    """Processes still running that belong to the platform of this state folder."""
    import psutil

    marker = str(state)
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            if p.pid == os.getpid():
                continue
            text = " ".join(p.info["cmdline"] or []) + " " + json.dumps(p.info.get("environ") or {})
            if marker in text:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_in_kernel(server_url: str, token: str, code: str, timeout: float = 60) -> str:
    """Execute ``code`` in a new kernel of a Jupyter server; return its stdout (raise on error)."""
    import websocket

    headers = {"Authorization": f"token {token}"}
    r = requests.post(f"{server_url}/api/kernels", headers=headers, json={"name": "python3"}, timeout=30)
    r.raise_for_status()
    kernel = r.json()["id"]
    ws_url = re.sub("^http", "ws", server_url) + f"/api/kernels/{kernel}/channels"
    ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                   "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    out, error = [], None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                error = "\n".join(msg["content"]["traceback"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        ws.close()
        requests.delete(f"{server_url}/api/kernels/{kernel}", headers=headers, timeout=30)
    if error:
        raise RuntimeError(f"kernel raised:\n{error}")
    return "".join(out)


def login(base_url: str, user: str, password: str) -> requests.Session:
    """Log in through the hub's HTML login form; returns a session with its cookies."""
    s = requests.Session()
    s.get(f"{base_url}/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf")
    r = s.post(f"{base_url}/hub/login", data={"username": user, "password": password, "_xsrf": xsrf},
               timeout=30, allow_redirects=False)
    assert r.status_code == 302, (r.status_code, r.text[:500])
    return s


@contextlib.contextmanager
def accounts_platform(name: str, extra_config: str = "", **kwargs):
    """A :class:`PlatformProcess` as root with per-user Unix accounts (the tests' prefix and
    ids), its state in a folder every account may enter (pytest's own tmp folder is 0700: no
    other user could reach a home in it); the accounts and the folder are removed afterwards.
    ``p.base`` is the folder (for :func:`shared_session_env`)."""
    base = Path(tempfile.mkdtemp(prefix=f"dass-{name}-", dir="/tmp"))
    base.chmod(0o755)
    config = "\n".join([
        f"c.UserAccounts.name_prefix = {TEST_ACCOUNT_PREFIX!r}",
        f"c.UserAccounts.uid_min = {TEST_ACCOUNT_IDS[0]}",
        f"c.UserAccounts.uid_max = {TEST_ACCOUNT_IDS[1]}",
        extra_config(base) if callable(extra_config) else extra_config,
    ])
    p = None
    try:
        p = PlatformProcess(base / "state", name=name, extra_config=config, accounts=True, **kwargs)
        p.base = base
        yield p
    finally:
        if p is not None:
            p.stop()
        remove_test_accounts()
        shutil.rmtree(base, ignore_errors=True)


# -- containers (podman) ---------------------------------------------------------------------

#: what the CI test image is built from: a change in any of these makes a new tag
TEST_IMAGE_INPUTS = ("images/base/Containerfile", "images/build.sh", "pyproject.toml", "README.md")


def podman_missing() -> str:
    """Why this machine cannot run dass's containers ("" when it can)."""
    import shutil

    if os.geteuid() != 0:
        return "containers run with rootful podman: the tests need root"
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run `make podman` as root)"
    done = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return f"podman does not work here: {done.stderr.strip()[-300:]}"
    return ""


def container_test_image_tag() -> str:
    """``localhost/dass-test:<hash>``: the hash of the base Containerfile, the build script,
    pyproject.toml and every file of the dass package, so CI builds the image once per change
    and reuses it otherwise (podman's layer cache also keeps the dependency layer across
    changes of dass's own code)."""
    import hashlib

    h = hashlib.sha256()
    for rel in TEST_IMAGE_INPUTS:
        h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes())
    for path in sorted((ROOT / "dass").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"localhost/dass-test:{h.hexdigest()[:16]}"


def build_test_image(log: Path | None = None) -> tuple[str, float]:
    """Build the CI test image unless it exists; returns (tag, seconds spent). Older test
    images are removed (one is kept per machine)."""
    tag = container_test_image_tag()
    started = time.monotonic()
    if subprocess.run(["podman", "image", "exists", tag]).returncode != 0:
        out = open(log, "w") if log else subprocess.DEVNULL
        try:
            subprocess.run(["sh", str(ROOT / "images" / "build.sh"), "--test", tag], check=True,
                           stdout=out, stderr=subprocess.STDOUT, timeout=1800)
        finally:
            if log:
                out.close()
        old = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/dass-test"],
                             capture_output=True, text=True).stdout.split()
        for other in old:
            if other != tag:
                subprocess.run(["podman", "rmi", "--force", other], capture_output=True)
    return tag, time.monotonic() - started

"""The dass service application: a JupyterHub-managed service serving the REST API and pages.

JupyterHub starts it as a subprocess (``c.JupyterHub.services``) with the environment
variables of a managed service (``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_CLIENT_ID``,
``JUPYTERHUB_OAUTH_CALLBACK_URL``, ``JUPYTERHUB_OAUTH_ACCESS_SCOPES``…); the traits below take
their defaults from them. The dass configuration file (``--config`` / ``$DASS_CONFIG``) sets
the storage, the catalogue and the stacks, and may override any trait here
(``c.DassService.…``) or of JupyterHub's ``HubOAuth`` client (``c.HubOAuth.…``).

Run it with ``python -m dass.service``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jinja2
import yaml
from jupyterhub.services.auth import HubOAuth
from sqlalchemy.engine import make_url
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.log import access_log, app_log, gen_log
from tornado.netutil import bind_sockets
from traitlets import Bytes, Float, Integer, Unicode, default, validate
from traitlets.config import Application, catch_config_error

import dass

from ..errors import DassError
from ..config import config_path, load_config
from ..data.accounts import lock_down_platform
from ..data.audit import AuditLog
from ..data.catalog import Catalog
from ..data.errors import StorageError
from ..data.grants import Grants
from ..data.storage import Storage
from ..stacks.registry import StackRegistry
from .audit_handlers import default_handlers as audit_handlers
from .gateway import DataGateway
from .gateway import default_handlers as gateway_handlers
from .auth import IdentityResolver
from .handlers import NotFoundHandler, default_handlers
from .limits import RequestLimits
from .jobs_handlers import default_handlers as jobs_handlers
from .pages import default_handlers as pages_handlers
from .extensions import ServiceExtension, extension_classes, load_extensions

__all__ = ["DassService", "main"]

HERE = Path(__file__).resolve().parent
OPENAPI_FILE = HERE / "openapi.yaml"
TEMPLATES = HERE / "templates"


class ServiceStartError(DassError):
    """The service cannot start (a configuration or environment problem, said how to fix)."""


def load_openapi() -> dict[str, Any]:
    """The OpenAPI document of the service (``openapi.yaml``) as a dict."""
    doc = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    doc.setdefault("info", {})["version"] = dass.__version__
    return doc


class DassService(Application):
    """The dass service: REST API and pages behind JupyterHub's OAuth."""

    name = "dass-service"
    description = "The dass service: datasets, stacks and jobs of the dass platform, behind JupyterHub."
    version = dass.__version__

    aliases = {
        "config": "DassService.config_file",
        "ip": "DassService.ip",
        "port": "DassService.port",
        "base-url": "DassService.base_url",
        "log-level": "Application.log_level",
    }

    ip = Unicode(
        help="""Interface the service listens on.

        Default: the host of ``$JUPYTERHUB_SERVICE_URL`` (set by JupyterHub for a managed
        service), else ``127.0.0.1``. Use ``0.0.0.0`` in a container whose proxy reaches it
        from outside.""",
    ).tag(config=True)

    port = Integer(
        help="""Port the service listens on.

        Default: the port of ``$JUPYTERHUB_SERVICE_URL``, else 10101. ``0`` picks a free port
        (see ``bound_port`` once started).""",
    ).tag(config=True)

    base_url = Unicode(
        help="""URL prefix of every route of the service, as the proxy forwards it.

        Default: ``$JUPYTERHUB_SERVICE_PREFIX``, else ``/services/dass/``. Always starts and
        ends with ``/``.""",
    ).tag(config=True)

    config_file = Unicode(
        help="""The dass configuration file (a traitlets Python file, ``dass_config.py``) with
        the ``c.Storage``, ``c.Catalog`` and ``c.StackRegistry`` sections shared with the hub.

        Default: ``$DASS_CONFIG`` (the launcher sets it), else none (built-in defaults).
        Settings given on the command line win over the file.""",
    ).tag(config=True)

    identity_cache_seconds = Float(
        2.0,
        help="""Seconds a user's hub groups and admin flag are reused before the service asks
        the hub again (``GET /hub/api/users/{name}``). A group change on the hub (a user
        removed from a proposal's group) shows in the service within this time; ``0`` asks on
        every request.""",
    ).tag(config=True)

    token_cache_seconds = Integer(
        2,
        help="""Seconds the hub's answer about a token (whose it is, its scopes) is reused
        before the service asks the hub again; JupyterHub's ``HubOAuth.cache_max_age``, which
        this sets (JupyterHub's own default is 300). A revoked or expired token, or the
        cookie of a user who logged out, is refused by the service within this time; ``0``
        asks the hub on every request.""",
    ).tag(config=True)

    audit_purge_interval = Float(
        3600.0,
        help="""Seconds between two purges of audit rows older than
        ``c.AuditLog.retention_days`` (also at start). ``0`` never purges from the service
        (``dass audit purge`` still does).""",
    ).tag(config=True)

    hub_timeout = Float(
        10.0,
        help="""Seconds to wait for the hub when looking up a user before answering 503.""",
    ).tag(config=True)

    cookie_secret = Bytes(
        help="""Secret that signs the service's login cookie (the hub OAuth token, stored
        after login).

        Default: random at each start, so browsers sign in again (silently, through the hub)
        after a restart. Set it (32 random bytes) when several replicas serve the same
        ``base_url``.""",
    ).tag(config=True)

    max_body_bytes = Integer(
        16 * 1024**2,
        help="""Largest request body (bytes) of an API route that sets no limit of its own
        (``api/jobs`` allows ``c.JobManager.max_notebook_bytes`` and a little more,
        ``api/classify`` ``c.SemClassifyService.max_request_bytes``). A larger body answers
        413 JSON: from its ``Content-Length`` before it is read, or, sent chunked, as soon as
        the count passes the limit.""",
    ).tag(config=True)

    max_json_depth = Integer(
        64,
        help="""Deepest nesting of arrays and objects accepted in a JSON request body; a deeper
        one answers 400 (it could otherwise exhaust the parser's stack).""",
    ).tag(config=True)

    max_name_length = Integer(
        255,
        help="""Longest name (notebook, dataset, stack, size, parameter, idempotency key) and
        longest component of a path in a request, in characters; longer answers 400. 255 is
        the file name limit of common file systems.""",
    ).tag(config=True)

    discard_body_bytes = Integer(
        1024**3,
        help="""How much of a refused request's body (bytes) is read and thrown away before the
        refusal (401, 403, 404, 405, 413…) is answered. Answering with the body unread makes
        JupyterHub's proxy fail with ``ECONNRESET`` and answer its own 503 HTML instead of the
        JSON error; reading costs bandwidth, not memory. A body declared larger than this is
        answered at once and its connection closed.""",
    ).tag(config=True)

    spool_bytes = Integer(
        1024**2,
        help="""How much of a request body (bytes) is kept in memory while it arrives; beyond it
        the body goes to a temporary file in ``spool_dir``, so an upload of hundreds of megabytes
        (``c.SemClassifyService.max_request_bytes``) costs disk, not memory. The file has no name
        (it cannot be left behind) and is closed when the request ends.""",
    ).tag(config=True)

    spool_dir = Unicode(
        "",
        help="""Folder of the temporary files of request bodies and of the images taken out of
        uploads and ``.zip`` archives while a request is handled (deleted when it ends). Empty:
        the system's temporary folder (``$TMPDIR``, else ``/tmp``). It needs room for about twice
        ``c.SemClassifyService.max_request_bytes`` per concurrent upload.""",
    ).tag(config=True)

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    @default("log_format")
    def _default_log_format(self) -> str:
        # JupyterHub's format, so the hub's and the service's lines read alike in one log
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s %(module)s:%(lineno)d] %(message)s"

    @default("log_datefmt")
    def _default_log_datefmt(self) -> str:
        return "%Y-%m-%d %H:%M:%S"

    @default("cookie_secret")
    def _default_cookie_secret(self) -> bytes:
        return secrets.token_bytes(32)

    @default("ip")
    def _default_ip(self) -> str:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        return (urlparse(url).hostname if url else None) or "127.0.0.1"

    @default("port")
    def _default_port(self) -> int:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        if url:
            parsed = urlparse(url)
            if parsed.port is not None:
                return parsed.port
            return 443 if parsed.scheme == "https" else 80
        return 10101

    @default("base_url")
    def _default_base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/services/dass/"

    @validate("base_url")
    def _validate_base_url(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"] or "/"
        if not value.startswith("/"):
            value = "/" + value
        if not value.endswith("/"):
            value += "/"
        return value

    @default("config_file")
    def _default_config_file(self) -> str:
        path = config_path()
        return str(path) if path else ""

    # set by initialize()
    storage: Storage
    catalog: Catalog
    stack_registry: StackRegistry
    hub_auth: HubOAuth
    identity_resolver: IdentityResolver
    web_app: web.Application
    http_server: HTTPServer | None = None
    bound_port: int | None = None
    #: the same-machine file handoff while it is served (:mod:`dass.service.localfiles`)
    local_files: Any = None

    #: the stacks' parts of the service (routes, pages, links), set by :meth:`init_extensions`
    extensions: list[ServiceExtension]

    @property
    def classes(self) -> list:  # shown by --help-all
        from ..jobs.container import ContainerExecutor
        from ..jobs.executor import LocalExecutor
        from ..jobs.manager import JobManager
        from ..jobs.slurm import SlurmExecutor

        try:
            stacks = [c for ext in extension_classes(StackRegistry(config=self.config)) for c in ext.classes]
        except DassError:  # a bad stack definition is reported by initialize(), not by --help
            stacks = []
        return [DassService, Storage, Catalog, AuditLog, DataGateway, StackRegistry, HubOAuth, JobManager, LocalExecutor,
                SlurmExecutor, ContainerExecutor, *stacks]

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)  # parses the command line
        self.load_config_file_()
        # resolve the defaults that come from the environment now, not at first use
        self.ip, self.port, self.base_url = self.ip, self.port, self.base_url
        self.init_data()
        self.init_hub_auth()
        self.init_jobs()
        self.init_extensions()
        self.init_webapp()

    def load_config_file_(self) -> None:
        """Load the dass configuration file; the command line keeps priority over it."""
        if not self.config_file:
            self.log.info("dass service: no configuration file (set --config or $DASS_CONFIG); using defaults")
            return
        self.update_config(load_config(self.config_file))
        self.update_config(self.cli_config)
        self.log.info("dass service: configuration from %s", self.config_file)

    def init_logging(self) -> None:
        """Send tornado's loggers (and HubAuth's, which logs to ``tornado.application``) to
        this application's log. Global, so done by :meth:`start` only, not by tests that
        serve in-process."""
        for logger in (app_log, access_log, gen_log):
            logger.name = self.log.name
        tornado_log = logging.getLogger("tornado")
        tornado_log.propagate = True
        tornado_log.parent = self.log
        tornado_log.setLevel(self.log.level)

    def init_data(self) -> None:
        lock_down_platform(self.config)  # the state folder and repository: this account's only
        self.storage = Storage(parent=self)
        try:
            self.storage.check()
        except StorageError as e:
            # the catalogue still answers; jobs and sessions will fail until storage is fixed
            self.log.warning("dass service: the repository storage is not usable: %s", e)
        self.catalog = Catalog(parent=self)
        self.catalog.upgrade()
        self.audit_log = AuditLog(self.catalog, parent=self)
        self.grants = Grants(self.catalog.engine)
        self.stack_registry = StackRegistry(parent=self)
        self.stack_registry.all_stacks  # noqa: B018 - a bad stack definition fails at start
        if self.spool_dir:  # request bodies and uploads are spooled there; fail at start, not at an upload
            os.makedirs(self.spool_dir, mode=0o700, exist_ok=True)
        self.log.info(
            "dass service: catalogue %s, storage %s, stacks %s",
            make_url(self.catalog.db_url).render_as_string(hide_password=True),
            self.storage.url,
            ", ".join(self.stack_registry.all_stacks),
        )

    def init_hub_auth(self) -> None:
        # the token cache is the service's setting (JupyterHub's 300 s would let a revoked
        # token in for five minutes)
        self.hub_auth = HubOAuth(parent=self, base_url=self.base_url, cache_max_age=self.token_cache_seconds)
        missing = [
            name
            for name, value in (
                ("api_token ($JUPYTERHUB_API_TOKEN)", self.hub_auth.api_token),
                ("oauth_client_id ($JUPYTERHUB_CLIENT_ID)", self.hub_auth.oauth_client_id),
            )
            if not value
        ]
        if missing:
            raise ServiceStartError(
                f"no {' and no '.join(missing)} to authenticate with JupyterHub: the dass service "
                "must be started by JupyterHub as a managed service (c.JupyterHub.services, which "
                "sets $JUPYTERHUB_API_TOKEN, $JUPYTERHUB_CLIENT_ID and $JUPYTERHUB_API_URL), or be "
                "given c.HubOAuth.api_token, c.HubOAuth.oauth_client_id and c.HubOAuth.api_url"
            )
        if not self.hub_auth.access_scopes:
            self.log.warning(
                "dass service: no access scopes ($JUPYTERHUB_OAUTH_ACCESS_SCOPES or "
                "$JUPYTERHUB_SERVICE_NAME unset): every hub user and service is allowed"
            )
        self.identity_resolver = IdentityResolver(
            self.hub_auth, cache_seconds=self.identity_cache_seconds, timeout=self.hub_timeout
        )
        self.log.info("dass service: hub API %s, OAuth client %s", self.hub_auth.api_url, self.hub_auth.oauth_client_id)

    def init_jobs(self) -> None:
        from ..jobs.manager import JobManager

        resolver = self.identity_resolver

        async def identity_for(name: str):
            return await resolver.identity({"name": name, "kind": "user"})

        self.job_manager = JobManager(
            parent=self,
            catalog=self.catalog,
            storage=self.storage,
            registry=self.stack_registry,
            identity_for=identity_for,
        )

    def init_extensions(self) -> None:
        """The stacks' parts of the service (``web:`` of each stack, see :mod:`.extensions`)."""
        self.extensions = load_extensions(self)
        if self.extensions:
            self.log.info("dass service: stack extensions %s",
                          ", ".join(type(ext).__name__ for ext in self.extensions))

    def init_webapp(self) -> None:
        template_paths = [str(TEMPLATES)] + [p for ext in self.extensions for p in ext.template_paths()]
        jinja_env = jinja2.Environment(
            # the hub's templates too: the dataset picker is shared with the spawn form
            loader=jinja2.ChoiceLoader(
                [jinja2.FileSystemLoader(template_paths), jinja2.PackageLoader("dass.hub", "templates")]
            ),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )
        routes = list(default_handlers) + list(jobs_handlers) + list(pages_handlers) + list(audit_handlers)
        routes += list(gateway_handlers)
        for ext in self.extensions:
            routes += ext.handlers()
        handlers: list[tuple] = [(self.base_url + path, handler) for path, handler in routes]
        if self.base_url != "/":
            handlers.append((self.base_url.rstrip("/"), web.RedirectHandler, {"url": self.base_url}))
        self.data_gateway = DataGateway(parent=self)
        settings = dict(
            log=self.log,
            base_url=self.base_url,
            hub_auth=self.hub_auth,
            identity_resolver=self.identity_resolver,
            catalog=self.catalog,
            audit_log=self.audit_log,
            grants=self.grants,
            data_gateway=self.data_gateway,
            storage=self.storage,
            stack_registry=self.stack_registry,
            job_manager=self.job_manager,
            dass_extensions=self.extensions,
            nav_links=[link for ext in self.extensions for link in ext.nav_links()],
            header_templates=[name for ext in self.extensions for name in ext.header_templates()],
            jinja2_env=jinja_env,
            openapi=load_openapi(),
            request_limits=RequestLimits(
                max_body_bytes=self.max_body_bytes,
                max_json_depth=self.max_json_depth,
                max_name_length=self.max_name_length,
                discard_body_bytes=self.discard_body_bytes,
                spool_bytes=self.spool_bytes,
                spool_dir=self.spool_dir,
            ),
            cookie_secret=self.cookie_secret,
            login_url=self.hub_auth.login_url,
            default_handler_class=NotFoundHandler,
            log_function=self.log_request,
        )
        for ext in self.extensions:
            for key, value in ext.settings().items():
                if key in settings:
                    raise ServiceStartError(f"{type(ext).__name__} sets the application setting {key!r} "
                                            "that another part of the service already sets")
                settings[key] = value
        self.web_app = web.Application(handlers, **settings)

    def log_request(self, handler: web.RequestHandler) -> None:
        """Access log: errors loud, health checks quiet."""
        status = handler.get_status()
        request = handler.request
        if status >= 500:
            log_method = self.log.error
        elif status >= 400:
            log_method = self.log.warning
        elif request.path.endswith("/api/health"):
            log_method = self.log.debug
        else:
            log_method = self.log.info
        user = getattr(getattr(handler, "identity", None), "name", None) or "-"
        log_method(
            "%d %s %s (%s) %.1fms",
            status,
            request.method,
            request.uri,
            user,
            1000.0 * request.request_time(),
        )

    # -- running -----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT in the main thread), then shut down."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        handled: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                handled.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or not supported: stop() still works
        sockets = bind_sockets(self.port, self.ip)
        self.bound_port = sockets[0].getsockname()[1]
        self.http_server = HTTPServer(self.web_app, xheaders=True)
        self.http_server.add_sockets(sockets)
        self.log.info("dass service %s listening on http://%s:%s%s", dass.__version__, self.ip, self.bound_port, self.base_url)
        if not self.job_manager.gateway_url:  # jobs reach the gateway where the service listens
            host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.ip, self.ip)
            host = f"[{host}]" if ":" in host and not host.startswith("[") else host
            self.job_manager.gateway_url = f"http://{host}:{self.bound_port}{self.base_url}"
        self.job_manager.start()
        local_files = None
        if self.storage.is_local and self.data_gateway.local_handoff:
            from ..data.localfiles import socket_name
            from .localfiles import LocalFileServer

            local_files = LocalFileServer(self, socket_name(self.config))
            try:
                await local_files.start()
                self.log.info("dass service: same-machine file handoff on %s", local_files.name)
                self.local_files = local_files
            except OSError as e:  # another service of the same state folder holds it
                self.log.warning("dass service: no file handoff on %s (%s); dass:// reads over HTTP",
                                 local_files.name, e)
                local_files = None
        for ext in self.extensions:
            ext.start()
        purger = asyncio.ensure_future(self._purge_audit())
        try:
            await self._stopping.wait()
        finally:
            purger.cancel()
            if local_files is not None:
                await local_files.stop()
            await self.job_manager.stop()
            for ext in self.extensions:
                await ext.stop()
            for sig in handled:
                loop.remove_signal_handler(sig)
            self.http_server.stop()
            try:
                await asyncio.wait_for(self.http_server.close_all_connections(), 5)
            except asyncio.TimeoutError:
                self.log.warning("dass service: connections still open after 5 s; closing anyway")
            self.catalog.dispose()
            self.log.info("dass service stopped")

    async def _purge_audit(self) -> None:
        """Delete audit rows past ``c.AuditLog.retention_days``, at start and then periodically."""
        if self.audit_purge_interval <= 0:
            return
        while True:
            try:
                await asyncio.to_thread(self.audit_log.purge)
            except DassError as e:
                self.log.error("audit: purging old rows failed: %s", e.log_message)
            await asyncio.sleep(self.audit_purge_interval)

    def _on_signal(self, sig: int) -> None:
        self.log.info("dass service: received %s, shutting down", signal.Signals(sig).name)
        self._stopping.set()

    def stop(self) -> None:
        """Ask a running :meth:`serve` to shut down (from any thread)."""
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopping.set)

    def start(self) -> None:
        """Run the service until SIGTERM or SIGINT."""
        self.init_logging()
        asyncio.run(self.serve())


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m dass.service``."""
    app = DassService()
    try:
        app.initialize(argv)
    except DassError as e:  # configuration, storage, catalogue, stacks: said how to fix
        app.log.critical("dass service cannot start: %s", e.log_message)
        raise SystemExit(1) from None
    app.start()

"""HTTP handlers of the dass service: the REST API under ``api/`` and the home page.

Every handler authenticates through the hub (:class:`~jupyterhub.services.auth.HubOAuth`):
API routes answer 401 JSON to an unauthenticated call and never redirect; HTML pages redirect
a browser to the hub's OAuth login. All errors of API routes are JSON
``{"status": <code>, "message": <what to fix>}``; a traceback never leaves the service.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from jupyterhub.utils import url_path_join
from tornado import web

import dass

from ..data.access import Identity
from ..errors import INTERNAL_ERROR, DassError

if TYPE_CHECKING:
    from ..data.catalog import Catalog
    from ..stacks.registry import StackRegistry

__all__ = ["ApiError", "BaseHandler", "default_handlers"]

log = logging.getLogger(__name__)

#: Largest ``limit`` of ``GET api/datasets``.
MAX_LIMIT = 500
DEFAULT_LIMIT = 100


class ApiError(DassError, web.HTTPError):
    """An error answered to the caller as ``{"status": status, "message": message}``.

    For refusals decided by a handler itself; errors of the layers below (a
    :class:`~dass.errors.DassError` with its ``status``) need no translation into it.
    ``message`` is shown as it is (no ``%`` formatting), so it may quote user input.
    """

    def __init__(self, status: int, message: str) -> None:
        web.HTTPError.__init__(self, status, "%s", message)
        self.status = status
        self.message = message
        self._user_message = message


def _error_message(exc: BaseException | None) -> str | None:
    """The user-facing text of a ``DassError`` or an ``HTTPError`` (JupyterHub's), if it has one."""
    if isinstance(exc, DassError):
        return exc.user_message
    if isinstance(exc, web.HTTPError) and exc.log_message:
        try:
            return exc.log_message % exc.args if exc.args else exc.log_message
        except (TypeError, ValueError):
            return exc.log_message
    return None


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Common ground: hub authentication, the caller's identity, JSON and HTML answers.

    Subclasses set ``auth_required = False`` for public routes. Whether a route is an API
    route (JSON errors, no redirects) follows from its path: everything under
    ``{base_url}api/`` is.
    """

    auth_required: bool = True

    #: the caller, set by :meth:`prepare` on authenticated routes
    identity: Identity | None = None

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]

    # -- shortcuts -------------------------------------------------------------------------------

    @property
    def log(self) -> logging.Logger:
        return self.settings.get("log") or log

    @property
    def base_url(self) -> str:
        return self.settings["base_url"]

    @property
    def catalog(self) -> Catalog:
        return self.settings["catalog"]

    @property
    def stack_registry(self) -> StackRegistry:
        return self.settings["stack_registry"]

    @property
    def is_api(self) -> bool:
        api = url_path_join(self.base_url, "api")
        path = self.request.path
        return path == api or path.startswith(api + "/")

    # -- authentication --------------------------------------------------------------------------

    def get_current_user(self) -> Any:
        # The user is resolved asynchronously in prepare(); HubAuthenticated's synchronous
        # lookup would block the event loop while the hub answers.
        return None

    def unauthenticated_message(self) -> str:
        return (
            "authentication required: send a JupyterHub API token in the header "
            "'Authorization: token <token>' (or 'Authorization: Bearer <token>'); create one on "
            f"the hub's token page ({url_path_join(self.hub_auth.hub_prefix, 'token')}), or sign in "
            f"with a browser at {self.base_url}"
        )

    async def hub_user(self) -> dict | None:
        """The hub model of the token or OAuth cookie of this request, or None.

        Raises ``ApiError`` 503 when the hub cannot be asked, 403 when the user is known
        but not granted access to this service.
        """
        try:
            model = await self.hub_auth.get_user(self, sync=False)
        except web.HTTPError as e:
            # HubAuth raises 500/502 when the hub is unreachable, fails or refuses our token
            self.log.error(
                "cannot check credentials of %s %s with the hub at %s: %s",
                self.request.method,
                self.request.path,
                self.hub_auth.api_url,
                _error_message(e),
            )
            raise ApiError(
                503,
                "the dass service cannot check your credentials with JupyterHub right now; "
                "try again in a moment, and tell an administrator if it persists",
            ) from e
        if not model:
            return None
        try:
            return self.check_hub_user(model)
        except UserNotAllowed:
            scopes = " or ".join(sorted(self.hub_scopes or ())) or "access to this service"
            raise ApiError(
                403,
                f"{model.get('kind', 'user')} {model['name']} is signed in but not allowed to use "
                f"the dass service: the hub did not grant {scopes}; ask an administrator",
            ) from None

    async def prepare(self) -> None:
        if not self._implements(self.request.method):
            raise web.HTTPError(405)  # before authentication: the route never takes it
        if not self.auth_required:
            return
        model = await self.hub_user()
        if model is None:
            if not self.is_api and self.request.method in ("GET", "HEAD"):
                self.redirect(self.get_login_url())
                return
            raise ApiError(401, self.unauthenticated_message())
        self.current_user = model
        # a HubLookupError answers with its own status: 503 hub unavailable, 401 unknown user
        self.identity = await self.settings["identity_resolver"].identity(model)

    # -- answers ---------------------------------------------------------------------------------

    def set_default_headers(self) -> None:
        # answers depend on who asks: never let a shared cache keep them
        self.set_header("Cache-Control", "no-store")

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data, default=str))

    def render_template(self, name: str, **namespace: Any) -> None:
        template = self.settings["jinja2_env"].get_template(name)
        namespace.setdefault("base_url", self.base_url)
        namespace.setdefault("version", dass.__version__)
        namespace.setdefault("identity", self.identity)
        # what the stacks add to every page (see dass.service.extensions)
        namespace.setdefault("nav_links", self.settings.get("nav_links", []))
        namespace.setdefault("header_templates", self.settings.get("header_templates", []))
        for ext in self.settings.get("dass_extensions", []):
            for key, value in ext.template_vars(self).items():
                namespace.setdefault(key, value)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(template.render(**namespace))

    def log_exception(self, typ, value, tb) -> None:  # noqa: ANN001 - tornado's signature
        user = self.identity.name if self.identity is not None else "-"
        if isinstance(value, web.HTTPError):
            # answered on purpose; the access log has the status, this line the reason
            level = logging.WARNING if value.status_code >= 500 else logging.DEBUG
            self.log.log(level, "%s %s: %s", value.status_code, self.request.path, _error_message(value))
        elif isinstance(value, DassError):
            # raised on purpose below the handlers; the log gets the full text (it may name
            # databases and locations the caller is not told), a 5xx with its traceback
            if value.status >= 500:
                self.log.error("%s %s %s (user %s): %s", value.status, self.request.method, self.request.path,
                               user, value.log_message, exc_info=(typ, value, tb))
            else:
                self.log.debug("%s %s (user %s): %s", value.status, self.request.path, user, value.log_message)
        else:
            self.log.error("uncaught exception in %s %s (user %s)", self.request.method, self.request.uri, user,
                           exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place an error becomes an answer: ``{"status", "message"}`` JSON under
        ``api/``, the error page elsewhere. A :class:`~dass.errors.DassError` answers with its
        ``status`` and ``user_message``; any other exception is a 500 whose traceback went to
        the log (:meth:`log_exception`)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DassError) and exc.status != status_code:
            status_code = exc.status
            self.set_status(status_code)
        message = _error_message(exc)
        if status_code >= 500 and not isinstance(exc, (web.HTTPError, DassError)):
            message = INTERNAL_ERROR
        if not message:
            message = self._default_message(status_code)
        if self.is_api:
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps({"status": status_code, "message": message}))
            return
        try:
            self.render_template(
                "error.html", status=status_code, reason=self._reason, message=message
            )
        except Exception:  # never fail while reporting a failure
            self.log.exception("cannot render the error page")
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(f"{status_code} {self._reason}: {message}\n")

    def _default_message(self, status_code: int) -> str:
        if status_code == 401:
            return self.unauthenticated_message()
        if status_code == 404:
            return f"no such route: {self.request.path}; see {url_path_join(self.base_url, 'api/openapi.json')}"
        if status_code == 405:
            allowed = [m for m in self.SUPPORTED_METHODS if self._implements(m)]
            return (
                f"method {self.request.method} is not allowed on {self.request.path}; "
                f"use {', '.join(allowed) or 'another route'}"
            )
        if status_code >= 500:
            return INTERNAL_ERROR
        try:
            return HTTPStatus(status_code).phrase
        except ValueError:
            return "error"

    def _implements(self, method: str) -> bool:
        impl = getattr(type(self), method.lower(), None)
        return impl is not None and impl is not getattr(web.RequestHandler, method.lower(), None)

    # -- request arguments -----------------------------------------------------------------------

    @staticmethod
    def parse_json(body: bytes, empty: bytes = b"null") -> Any:
        """A request body as JSON (``empty`` stands for an empty body); 400 when it is not."""
        try:
            return json.loads(body or empty)
        except ValueError as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}") from None

    def query_args(self, known: tuple[str, ...]) -> dict[str, str]:
        """The query arguments of this request (last value of each), refusing unknown names."""
        allowed = set(known)
        if self.hub_auth.allow_token_in_url:
            allowed.add("token")
        unknown = sorted(set(self.request.query_arguments) - allowed)
        if unknown:
            raise ApiError(
                400,
                f"unknown query parameter(s) {', '.join(unknown)}; "
                f"this route accepts {', '.join(known) or 'none'}",
            )
        return {name: self.get_query_argument(name) for name in known if name in self.request.query_arguments}

    @staticmethod
    def int_arg(args: dict[str, str], name: str, default: int, lo: int, hi: int | None = None) -> int:
        raw = args.get(name, "")
        if raw.strip() == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < lo or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f"{lo} or more"
            raise ApiError(400, f"query parameter {name} must be an integer {bounds}, got {raw!r}")
        return value


class NotFoundHandler(BaseHandler):
    """Answers every path that no route matches (JSON under ``api/``, HTML elsewhere)."""

    auth_required = False

    def prepare(self) -> None:
        raise web.HTTPError(404)


# -- API --------------------------------------------------------------------------------------


#: counts every dataset for the health check
HEALTH_IDENTITY = Identity(name="dass-health-check", groups=frozenset(), admin=True)


class HealthHandler(BaseHandler):
    """``GET api/health``: liveness and the catalogue's size; no authentication."""

    auth_required = False

    def get(self) -> None:
        try:
            _, count = self.catalog.search(HEALTH_IDENTITY, limit=0)
        except Exception as e:  # any database failure makes the service unhealthy
            self.log.error("health: the catalogue database fails: %s", e, exc_info=True)
            raise ApiError(503, "the dataset catalogue database is unavailable; see the service log") from e
        self.write_json({"status": "ok", "version": dass.__version__, "datasets": count})


class OpenAPIHandler(BaseHandler):
    """``GET api/openapi.json``: the OpenAPI document of this API; no authentication."""

    auth_required = False

    def get(self) -> None:
        doc = dict(self.settings["openapi"])
        doc["servers"] = [{"url": self.base_url.rstrip("/"), "description": "this dass service"}]
        self.set_header("Cache-Control", "no-cache")
        self.write_json(doc)


class MeHandler(BaseHandler):
    """``GET api/me``: who the hub says the caller is."""

    def get(self) -> None:
        ident = self.identity
        self.write_json({"name": ident.name, "groups": sorted(ident.groups), "admin": ident.admin})


DATASET_QUERY = ("q", "proposal", "instrument", "technique", "stack", "category", "limit", "offset")


def _catalog_error(handler: BaseHandler, e: DassError) -> DassError:
    """The error to raise for a failed catalogue call: the error itself.

    A :class:`~dass.data.errors.DassDataError` answers 503 with its ``public_message``
    (:meth:`BaseHandler.write_error`), its full text going to the log; this stays for callers
    written before that mapping (``raise _catalog_error(self, e)`` is ``raise e``).
    """
    return e


class DatasetsHandler(BaseHandler):
    """``GET api/datasets``: the datasets the caller may see, filtered and paged."""

    def get(self) -> None:
        args = self.query_args(DATASET_QUERY)
        limit = self.int_arg(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = self.int_arg(args, "offset", 0, 0)
        filters = {key: args.get(name) or None for key, name in (
            ("text", "q"), ("proposal", "proposal"), ("instrument", "instrument"),
            ("technique", "technique"), ("stack", "stack"), ("category", "category"),
        )}
        records, total = self.catalog.search(self.identity, limit=limit, offset=offset, **filters)
        self.write_json(
            {"datasets": [r.to_json() for r in records], "total": total, "limit": limit, "offset": offset}
        )


class DatasetHandler(BaseHandler):
    """``GET api/datasets/{proposal}/{dataset}``: one dataset, if the caller may see it."""

    def get(self, proposal: str, dataset: str) -> None:
        self.query_args(())
        dataset_id = f"{proposal}/{dataset}"
        visible = self.catalog.visible(self.identity, [dataset_id])
        record = visible.get(dataset_id)
        if record is None:
            # the same answer whether it is missing or hidden: never reveal existence
            raise ApiError(404, f"dataset {dataset_id} not found")
        self.write_json(record.to_json())


def stacks_json(registry: StackRegistry, identity: Identity) -> list[dict[str, Any]]:
    """The stacks an identity may use, each with the sizes it may use."""
    out = []
    for stack in registry.for_identity(identity):
        d = stack.to_json()
        d["sizes"] = [size.to_json() for size in registry.sizes_for(stack, identity)]
        out.append(d)
    return out


class StacksHandler(BaseHandler):
    """``GET api/stacks``: the analysis stacks (and their sizes) the caller may use."""

    def get(self) -> None:
        self.query_args(())
        self.write_json({"stacks": stacks_json(self.stack_registry, self.identity)})


# -- pages ------------------------------------------------------------------------------------

#: How many datasets the home page lists at most.
HOME_LIMIT = 500


class HomeHandler(BaseHandler):
    """``GET /``: who is signed in, their datasets by proposal, a search box, their stacks."""

    def get(self) -> None:
        q = (self.get_query_argument("q", "") or "").strip()
        records, total = self.catalog.search(self.identity, text=q or None, limit=HOME_LIMIT)
        proposal_info = {p["id"]: p for p in self.catalog.proposals(self.identity)}
        groups: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for record in sorted((r.to_json() for r in records), key=lambda r: (r["proposal"], r["name"])):
            info = proposal_info.get(record["proposal"]) or {}
            entry = groups.setdefault(
                record["proposal"], {"name": record["proposal"], "title": info.get("title") or "", "datasets": []}
            )
            entry["datasets"].append(record)
        self.render_template(
            "home.html",
            q=q,
            proposals=list(groups.values()),
            shown=len(records),
            total=total,
            stacks=stacks_json(self.stack_registry, self.identity),
            api_url=url_path_join(self.base_url, "api/"),
        )


class OAuthCallbackHandler(HubOAuthCallbackHandler, BaseHandler):
    """``GET oauth_callback``: completes the hub's OAuth login and sets the cookie."""

    auth_required = False

    async def prepare(self) -> None:
        # resolve an existing login without blocking the loop (HubOAuthCallbackHandler reads
        # self.current_user when the OAuth state is stale)
        try:
            self.current_user = await self.hub_user()
        except ApiError:
            self.current_user = None


#: The routes of the service, relative to its ``base_url`` (which ends with ``/``).
default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    ("", HomeHandler),
    ("oauth_callback", OAuthCallbackHandler),
    ("api/health", HealthHandler),
    ("api/openapi.json", OpenAPIHandler),
    ("api/me", MeHandler),
    ("api/datasets", DatasetsHandler),
    (r"api/datasets/([^/]+)/([^/]+)", DatasetHandler),
    ("api/stacks", StacksHandler),
]

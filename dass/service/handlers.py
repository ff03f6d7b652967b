"""HTTP handlers of the dass service: the REST API under ``api/`` and the home page.

Every handler authenticates through the hub (:class:`~jupyterhub.services.auth.HubOAuth`):
API routes answer 401 JSON to an unauthenticated call and never redirect; HTML pages redirect
a browser to the hub's OAuth login. All errors of API routes are JSON
``{"status": <code>, "message": <what to fix>}``; a traceback never leaves the service.

Why one module: :class:`BaseHandler` is the one path every request takes, from its headers
(method, credentials, declared size) through its body (counted, bounded, read to the end
when refused) to its answer (``send_error``, ``write_error``, the error id of an unexpected
failure); split, each part would need the others' per-request state. The pure checks of
bodies and names live beside it in :mod:`.limits`; the jobs' routes in :mod:`.jobs_handlers`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import secrets
import tempfile
from collections import OrderedDict
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from jupyterhub.utils import url_path_join
from tornado import web

import dass

from ..data.access import Identity
from ..data.metadata import NAME_RE
from ..data.audit import AuditRecord
from ..data.grants import JOB, JOB_TOKEN_PREFIX, SESSION, Grant
from ..errors import INTERNAL_ERROR, DassError
from .limits import MAX_INTEGER, RequestLimits, check_name, parse_json

#: HTTP methods a handler may define (each is wrapped by :func:`_with_body`).
_HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")

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


def _with_body(method: Callable) -> Callable:
    """Wrap an HTTP method of a handler: answer a refusal decided while the body arrived,
    else hand the collected body over (as ``self.request.body``, or rewound in
    :attr:`BaseHandler.body_file` on a route with ``body_in_memory = False``), then run the
    method."""

    @functools.wraps(method)
    def wrapper(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
        if self._refusal is not None:
            raise self._refusal
        self._body_handed = True
        if self._streams_body() and self._body_file is not None:
            self._body_file.seek(0)
            if self.body_in_memory:
                self.request.body = self._body_file.read()
                self._close_body()
        return method(self, *args, **kwargs)

    wrapper._dass_wrapped = True  # type: ignore[attr-defined]
    return wrapper


def _counted(data_received: Callable) -> Callable:
    """Wrap a handler's ``data_received``: count the body as it arrives (chunked or not),
    refuse it with 413 at the route's limit, and throw chunks away once a refusal is decided."""

    @functools.wraps(data_received)
    def wrapper(self: BaseHandler, chunk: bytes) -> Any:
        self._body_received += len(chunk)
        if self._refusal is not None or self._deferred is not None:
            return None  # refused: read to the end and thrown away
        limit = self.body_limit()
        if self._body_received > limit:
            self._refuse_body(ApiError(
                413, f"the request body is larger than {limit} bytes, the limit of "
                     f"{self.request.method} {self.request.path}: send less"))
            return None
        return data_received(self, chunk)

    wrapper._dass_wrapped = True  # type: ignore[attr-defined]
    return wrapper


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Common ground: hub authentication, the caller's identity, JSON and HTML answers.

    Subclasses set ``auth_required = False`` for public routes. Whether a route is an API
    route (JSON errors, no redirects) follows from its path: everything under
    ``{base_url}api/`` is.
    """

    auth_required: bool = True

    #: whether the route reads its request body as it arrives (tornado's
    #: ``stream_request_body``): None streams it on routes that take one (POST, PUT, PATCH,
    #: DELETE), so that it is counted, bounded and, when refused, read to its end (see
    #: :meth:`send_error`); routes without a body have theirs read by tornado before prepare()
    stream_body: bool | None = None

    #: whether a streamed body is handed to the method as ``self.request.body`` (bytes); a
    #: route with large bodies sets False and reads :attr:`body_file` instead, so that the body
    #: (spooled to a temporary file above ``c.DassService.spool_bytes``) never has to fit in memory
    body_in_memory: bool = True

    #: the caller, set by :meth:`prepare` on authenticated routes
    identity: Identity | None = None

    #: what the request's token may reach when it is a session's or a job's token
    #: (:mod:`dass.data.grants`); None for a person's own token or browser login
    grant: Grant | None = None

    #: whether a job's token (``dassjob_…``) may call this route: only the data gateway and
    #: the job's own result take one; every other route answers it 403
    accepts_job_tokens: bool = False

    # the request body, spooled as it arrives (every route streams it, see send_error): kept in
    # memory up to RequestLimits.spool_bytes, in an unnamed temporary file beyond, closed (and
    # so deleted) when the request ends
    _body_file: Any = None
    #: whether the method runs (and may still read :attr:`body_file`)
    _body_handed: bool = False
    _body_received: int = 0
    #: an error decided while the body arrived, raised when it has been read
    _refusal: BaseException | None = None
    #: an error answer (status, send_error kwargs) waiting for the body to be read
    _deferred: tuple[int, dict[str, Any]] | None = None
    #: the id of an unexpected error, logged with its traceback and told to the caller
    _error_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # every route reads its body the same way: counted, bounded, refused as JSON
        super().__init_subclass__(**kwargs)
        for name in _HTTP_METHODS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_dass_wrapped", False):
                setattr(cls, name, _with_body(method))
        receiver = cls.__dict__.get("data_received")
        if receiver is not None and not getattr(receiver, "_dass_wrapped", False):
            cls.data_received = _counted(receiver)
        if cls.stream_body is not None:
            cls._stream_request_body = cls.stream_body
        elif "_stream_request_body" not in cls.__dict__:  # not set by @web.stream_request_body
            cls._stream_request_body = any(
                getattr(cls, m) is not getattr(web.RequestHandler, m) for m in ("post", "put", "patch", "delete")
            )
    #: the audit action of this route (``dataset.read``...): a route that names one leaves an
    #: audit row for every request, denied ones included (:meth:`audit`, :meth:`finish`)
    audit_action: str | None = None

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]

    @property
    def limits(self) -> RequestLimits:
        return self.settings.get("request_limits") or RequestLimits()

    def body_limit(self) -> int:
        """Largest request body of this route (bytes); routes with bigger bodies override it."""
        return self.limits.max_body_bytes

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
        if self._streams_body():
            # read up to the refusal bound, so that a refused body is still read to its end
            # (tornado itself would close the connection at its default 100 MB)
            set_max = getattr(self.request.connection, "set_max_body_size", None)
            if set_max is not None:
                set_max(max(self.limits.discard_body_bytes, self.body_limit()))
        if not self._implements(self.request.method):
            raise web.HTTPError(405)  # before authentication: the route never takes it
        if self.auth_required and await self._job_token():
            pass
        elif self.auth_required:
            model = await self.hub_user()
            if model is None:
                if not self.is_api and self.request.method in ("GET", "HEAD"):
                    self.redirect(self.get_login_url())
                    return
                raise ApiError(401, self.unauthenticated_message())
            self.current_user = model
            # a HubLookupError answers with its own status: 503 hub unavailable, 401 unknown user
            self.identity = await self.settings["identity_resolver"].identity(model)
            token = self.hub_auth.get_token(self, in_cookie=False)
            grants = self.settings.get("grants")
            if token and grants is not None:
                grant = await asyncio.to_thread(grants.get, token)
                if grant is not None and grant.kind == SESSION:
                    self.grant = grant
        self.check_declared_length()

    async def _job_token(self) -> bool:
        """Authenticate a job's token (``dassjob_…``, made by the service when the job started):
        True when the request carries one (and it is valid for this route), False when it
        carries none. Raises 401 for a token whose job has ended, 403 on other routes."""
        token = self.hub_auth.get_token(self, in_cookie=False)
        grants = self.settings.get("grants")
        if not token or not token.startswith(JOB_TOKEN_PREFIX) or grants is None:
            return False
        grant = await asyncio.to_thread(grants.get, token)
        if grant is None or grant.kind != JOB or not (grant.read or grant.write):
            raise ApiError(401, "this job token is no longer valid: the job has ended or its time is up")
        self.grant = grant
        self.current_user = {"kind": "job", "name": grant.owner, "job": grant.ref}
        self.identity = Identity(name=grant.owner, groups=frozenset(), admin=False)
        if not self.accepts_job_tokens:
            raise ApiError(403, f"a job's token only reads the job's inputs and writes its results through "
                                f"api/data/…; {self.request.method} {self.request.path} needs a person's token")
        return True

    def check_declared_length(self) -> None:
        """Refuse a body whose ``Content-Length`` is malformed (400) or over the route's
        limit (413), before it is read."""
        declared = self.request.headers.get("Content-Length")
        if declared is None:
            return
        if not re.fullmatch(r"[0-9]{1,19}", declared.strip()):
            raise ApiError(400, f"invalid Content-Length {declared[:40]!r}: send the body's size in bytes")
        limit = self.body_limit()
        if int(declared) > limit:
            raise ApiError(413, f"the request body is {int(declared)} bytes; the limit of {self.request.method} "
                                f"{self.request.path} is {limit} bytes: send less")

    # -- the request body ------------------------------------------------------------------------

    def _streams_body(self) -> bool:
        return bool(getattr(type(self), "_stream_request_body", False))

    def data_received(self, chunk: bytes) -> None:
        """Keep a chunk of the body (counted and bounded by :func:`_counted`) in the spool."""
        if self._body_file is None:
            limits = self.limits
            self._body_file = tempfile.SpooledTemporaryFile(max_size=limits.spool_bytes, dir=limits.spool_dir or None)
        self._body_file.write(chunk)

    @property
    def body_file(self) -> Any:
        """The request body of a route with ``body_in_memory = False``, a binary file at its
        start (in memory up to ``c.DassService.spool_bytes``, an unnamed temporary file in
        ``c.DassService.spool_dir`` beyond, deleted when the request ends); an empty one for an
        empty body."""
        if self._body_file is None:
            self._body_file = tempfile.SpooledTemporaryFile(max_size=self.limits.spool_bytes,
                                                            dir=self.limits.spool_dir or None)
        return self._body_file

    def _close_body(self) -> None:
        body, self._body_file = self._body_file, None
        if body is not None:
            body.close()

    def on_finish(self) -> None:
        self._close_body()
        super().on_finish()

    def on_connection_close(self) -> None:
        if not self._body_handed:  # the client left while sending: the method never runs
            self._close_body()
        super().on_connection_close()

    def _body_pending(self) -> bool:
        """Whether this request has a body that is still to be read (and may be, up to the
        refusal bound)."""
        if not self._streams_body() or self._finished:
            return False
        future = getattr(self.request, "_body_future", None)  # tornado's "body read" signal
        if future is None or future.done():
            return False
        # even an empty body: an answer given before the connection has "read" it closes the
        # connection, and a client that reuses it gets a reset
        declared = self.request.headers.get("Content-Length", "0").strip()
        if not declared.isdigit() or len(declared) > 19:
            return False
        return int(declared) <= self.limits.discard_body_bytes

    def _refuse_body(self, error: BaseException) -> None:
        """Refuse this request once its body has been read (and thrown away)."""
        self._refusal = error
        self._close_body()

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Answer an error, after reading and throwing away a body still on its way.

        A refusal decided from the headers alone (authentication, a declared size over the
        limit, a method or route that does not exist) comes before the body is read. Answering
        at once and closing the connection with the body unread makes a proxy in front
        (JupyterHub's configurable-http-proxy) fail with ``ECONNRESET`` and answer its own 503
        instead of ours; so the rest of the body, up to ``discard_body_bytes``, is read and
        thrown away first, and the answer then goes out on a connection that stays usable.
        """
        if self._deferred is None and self._body_pending():
            self._deferred = (status_code, kwargs)
            self._close_body()
            self.request._body_future.add_done_callback(self._send_deferred_error)
            return
        super().send_error(status_code, **kwargs)

    def _send_deferred_error(self, future: Any) -> None:
        if future.cancelled() or future.exception() is not None or self._finished or self._deferred is None:
            return  # the client went away
        status_code, kwargs = self._deferred
        try:
            super().send_error(status_code, **kwargs)
        except Exception:  # never fail while reporting a failure
            self.log.exception("cannot answer %s %s with %s", self.request.method, self.request.path, status_code)

    # -- the audit log -----------------------------------------------------------------------------

    def audit(self, action: str | None = None, **fields: Any) -> AuditRecord:
        """Note one access of this request (``dataset``, ``path``, ``bytes``, ``job``); it is
        recorded when the answer is sent (:meth:`finish`), allowed when the status is below 400. Returns the
        record so that a handler may complete it (``bytes``, ``job``) as it goes."""
        record = AuditRecord(user="", action=action or self.audit_action or "unknown", allowed=False, **fields)
        self.__dict__.setdefault("_audit_records", []).append(record)
        return record

    def visible_dataset(self, dataset_id: str) -> Any:
        """The catalogue record of ``dataset_id`` if the caller may see it; else a 404 that is
        the same whether the dataset is missing or hidden (existence is never revealed)."""
        record = self.catalog.visible(self.identity, [dataset_id]).get(dataset_id)
        if record is None:
            raise ApiError(404, f"dataset {dataset_id} not found")
        return record

    def audit_job(self, records: list[Any], job: dict[str, Any]) -> None:
        """Complete the audit rows of a submitted job: one per input, those named by its
        parameters included (one row for a job without inputs), each naming the job."""
        for dataset in job["datasets"][len(records):]:  # inputs named by parameters
            records.append(self.audit(dataset=dataset))
        if not records:  # a job without inputs: one row for the submission
            records.append(self.audit())
        for record in records:
            record.job = job["id"]

    def audit_fields(self) -> dict[str, Any]:
        """What the route's URL says was touched (``dataset``, ``job``, ``path``): the row of a
        request refused before the handler ran (401, 403, 400) still names it."""
        return {}

    def finish(self, chunk: Any = None) -> Any:
        # recorded before the answer leaves: a client that got its answer finds its row
        if not self._finished:
            self._record_audit()
            self._close_body()  # and its temporary file is gone
        return super().finish(chunk)

    def _record_audit(self) -> None:
        records = self.__dict__.pop("_audit_records", None) or []
        if not records and self.audit_action and self.request.method not in ("OPTIONS",):
            try:
                fields = self.audit_fields()
            except (AttributeError, ValueError):  # refused before its URL was decoded (path_args unset)
                fields = {}
            records = [AuditRecord(user="", action=self.audit_action, allowed=False, **fields)]
        if not records:
            return
        audit_log = self.settings.get("audit_log")
        if audit_log is None:
            return
        status = self.get_status()
        model = self.current_user if isinstance(self.current_user, dict) else {}
        if self.identity is not None:
            user = self.identity.name
        elif model.get("name"):
            user = str(model["name"])
        else:
            user = "anonymous"
        for r in records:
            r.user = user
            r.allowed = status < 400 and self.identity is not None  # a login redirect is no access
            r.status = status
            r.token = r.token or model.get("token_id")
            r.session = r.session or model.get("session_id")
            if self.grant is not None and self.grant.kind == JOB:
                r.job = r.job or self.grant.ref
            elif self.grant is not None:
                r.session = r.session or f"server {self.grant.owner}/{self.grant.ref}"
            r.remote = self.request.remote_ip
        try:
            audit_log.record(records)
        except DassError as e:  # the answer is gone already; the log keeps what was lost
            self.log.error("audit: %d rows of %s %s (user %s) not recorded: %s", len(records),
                           self.request.method, self.request.path, user, e.log_message)

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
        namespace.setdefault("hub_url", self.hub_auth.hub_prefix)
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
            self._error_id = secrets.token_hex(6)
            self.log.error("error %s: uncaught exception in %s %s (user %s)", self._error_id, self.request.method,
                           self.request.uri, user, exc_info=(typ, value, tb))

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
        if self._error_id and status_code >= 500 and not isinstance(exc, (web.HTTPError, DassError)):
            # an unexpected error: the id finds its traceback in the log
            message = f"{message} (error id {self._error_id})"
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
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
            allowed = self.allowed_methods()
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

    def allowed_methods(self) -> list[str]:
        """The HTTP methods this route answers (the ``Allow`` header of a 405)."""
        return [m for m in self.SUPPORTED_METHODS if self._implements(m)]

    def _implements(self, method: str) -> bool:
        impl = getattr(type(self), method.lower(), None)
        return impl is not None and impl is not getattr(web.RequestHandler, method.lower(), None)

    # -- request arguments -----------------------------------------------------------------------

    def parse_json(self, body: bytes, empty: bytes = b"null") -> Any:
        """A request body as JSON (``empty`` stands for an empty body); 400 when it is not
        JSON or holds what no handler takes (:func:`dass.service.limits.parse_json`)."""
        return parse_json(body, self.limits, empty)

    def check_name(self, value: Any, field: str, *, path: bool = False) -> str:
        """A name or path from a request; 400 naming the field when it holds a NUL, a control
        character or is too long (:func:`dass.service.limits.check_name`)."""
        return check_name(value, field, self.limits, path=path)

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
        """An integer query parameter between ``lo`` and ``hi`` (at most :data:`MAX_INTEGER`),
        written with ASCII digits; 400 naming the bounds otherwise."""
        raw = args.get(name, "")
        if raw.strip() == "":
            return default
        hi = MAX_INTEGER if hi is None else min(hi, MAX_INTEGER)
        value = int(raw) if re.fullmatch(r"\s*[-+]?[0-9]{1,19}\s*", raw) else None
        if value is None or value < lo or value > hi:
            shown = raw if len(raw) <= 40 else raw[:40] + "…"
            raise ApiError(400, f"query parameter {name} must be an integer between {lo} and {hi}, got {shown!r}")
        return value


BaseHandler.data_received = _counted(BaseHandler.data_received)  # type: ignore[method-assign]


class NotFoundHandler(BaseHandler):
    """Answers every path that no route matches (JSON under ``api/``, HTML elsewhere)."""

    auth_required = False
    stream_body = True  # a body sent to no route is read and thrown away before the 404

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


def dataset_id_of(proposal: str, dataset: str) -> str:
    """``<proposal>/<dataset>`` from a route's path; 404 when either is not a name a dataset
    can have (a NUL, a traversal, 10,000 characters…), before any lookup."""
    if not (NAME_RE.fullmatch(proposal) and NAME_RE.fullmatch(dataset)):
        shown = f"{proposal[:64]}/{dataset[:64]}"
        raise ApiError(404, f"dataset {shown!r} not found: proposal and dataset names are letters, digits, "
                            "'.', '_' and '-' (at most 64 characters each)")
    return f"{proposal}/{dataset}"


class DatasetHandler(BaseHandler):
    """``GET api/datasets/{proposal}/{dataset}``: one dataset, if the caller may see it."""

    audit_action = "dataset.read"

    def audit_fields(self) -> dict[str, Any]:
        return {"dataset": "/".join(self.path_args)}

    def get(self, proposal: str, dataset: str) -> None:
        self.query_args(())
        self.write_json(self.visible_dataset(dataset_id_of(proposal, dataset)).to_json())


def stacks_json(registry: StackRegistry, identity: Identity) -> list[dict[str, Any]]:
    """The stacks an identity may use, each with the sizes it may use."""
    out = []
    for stack in registry.for_identity(identity):
        d = stack.to_json()
        d["sizes"] = [size.to_json() for size in registry.sizes_for(stack, identity)]
        out.append(d)
    return out


class DatasetPage(BaseHandler):
    """``GET datasets/{proposal}/{dataset}``: one dataset as a page (its metadata, access, files
    and a link to the JSON), with the same answer as the API for one the caller may not see."""

    audit_action = "dataset.read"

    def audit_fields(self) -> dict[str, Any]:
        return {"dataset": "/".join(self.path_args)}

    def get(self, proposal: str, dataset: str) -> None:
        self.query_args(())
        doc = self.visible_dataset(dataset_id_of(proposal, dataset)).to_json()
        metadata = doc.get("metadata") or {}
        domain = metadata.get("domain") or {}
        settings = {k: v for k, v in domain.items() if isinstance(v, (str, int, float, bool))}
        self.render_template(
            "dataset.html",
            ds=doc,
            creators=[c.get("name", "") for c in metadata.get("creators") or [] if isinstance(c, dict)],
            dates=metadata.get("dates") or {},
            licence=metadata.get("licence") or "",
            categories=domain.get("categories") or [],
            settings=settings,
            api_url=url_path_join(self.base_url, "api/datasets", quote(proposal), quote(dataset)),
        )


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
    (r"datasets/([^/]+)/([^/]+)", DatasetPage),
    ("api/stacks", StacksHandler),
]

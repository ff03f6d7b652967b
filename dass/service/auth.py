"""Who is calling: from a JupyterHub token to a data-layer :class:`~dass.data.access.Identity`.

Authentication itself is JupyterHub's :class:`~jupyterhub.services.auth.HubOAuth`: a request
carries a hub token (``Authorization: token …`` / ``Bearer …``, or the cookie set after the
OAuth login) and the hub answers ``GET {api_url}/user`` with the token's owner. That model
says *who* the caller is, but a token issued to this service through OAuth carries only the
``access:services`` and identify scopes, so it does not say which groups the user is in.

:class:`IdentityResolver` asks the hub for that with the service's **own** token,
``GET {api_url}/users/{name}``, which needs the service's role to hold ``read:users`` (names,
groups, admin flag). Answers are cached for a few seconds so that a page that makes ten API
calls costs the hub one lookup, while a group change on the hub shows within that time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import quote

from jupyterhub.services.auth import HubAuth
from jupyterhub.utils import make_ssl_context, url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..errors import DassError
from ..data.access import Identity

__all__ = [
    "HubLookupError",
    "HubUnavailable",
    "HubPermissionError",
    "UnknownUser",
    "IdentityResolver",
    "identity_from_model",
]

log = logging.getLogger(__name__)


class HubLookupError(DassError, status=503):
    """The hub could not tell the service who a user is.

    ``str(err)`` is written for the caller of the API (what failed, what to do).
    """


class HubUnavailable(HubLookupError):
    """The hub cannot be reached or answered with a server error (HTTP 503 to the caller)."""


class HubPermissionError(HubLookupError, status=500):
    """The hub refused the service's own token: the service's role lacks ``read:users``."""


class UnknownUser(HubLookupError, status=401):
    """The token is valid but the hub no longer knows its user (deleted meanwhile)."""


def identity_from_model(model: dict) -> Identity:
    """Build an :class:`Identity` from a JupyterHub user model (``GET /users/{name}``).

    Examples
    --------
    >>> identity_from_model({"name": "alice", "groups": ["p1"], "admin": False})
    Identity(name='alice', groups=frozenset({'p1'}), admin=False)
    """
    groups = model.get("groups") or []
    return Identity(name=str(model["name"]), groups=frozenset(map(str, groups)), admin=bool(model.get("admin")))


class IdentityResolver:
    """Look up users' groups and admin flag on the hub with the service's own token.

    Parameters
    ----------
    hub_auth : HubAuth
        Gives the hub API URL, the service token and the TLS settings of internal SSL.
    cache_seconds : float
        How long an answer is reused; ``0`` asks the hub on every request.
    timeout : float
        Seconds to wait for the hub before answering 503.
    """

    def __init__(self, hub_auth: HubAuth, cache_seconds: float = 5.0, timeout: float = 10.0) -> None:
        self.hub_auth = hub_auth
        self.cache_seconds = float(cache_seconds)
        self.timeout = float(timeout)
        self._cache: dict[str, tuple[float, Identity]] = {}
        self._pending: dict[str, asyncio.Future] = {}

    def clear(self) -> None:
        """Forget every cached identity."""
        self._cache.clear()

    async def identity(self, model: dict) -> Identity:
        """The identity of the owner of an authenticated hub model (from ``GET /user``).

        A token that belongs to a hub *service* (not a user) gets an identity with no groups
        and no admin flag: it sees public datasets only.

        Raises
        ------
        HubLookupError
            When the hub cannot be asked or refuses to answer.
        """
        name = model["name"]
        if model.get("kind", "user") != "user":
            return Identity(name=f"service:{name}", groups=frozenset(), admin=False)
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached and cached[0] > now:
            return cached[1]
        # one hub request per user at a time, however many requests wait for it
        pending = self._pending.get(name)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(name))
            self._pending[name] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(name, None))
        identity = await asyncio.shield(pending)
        if self.cache_seconds > 0:
            self._cache[name] = (time.monotonic() + self.cache_seconds, identity)
        return identity

    async def _lookup(self, name: str) -> Identity:
        auth = self.hub_auth
        url = url_path_join(auth.api_url, "users", quote(name, safe=""))
        ssl_options = None
        if auth.certfile or auth.keyfile:
            ssl_options = make_ssl_context(auth.keyfile, auth.certfile, cafile=auth.client_ca)
        request = HTTPRequest(
            url,
            headers={"Authorization": f"token {auth.api_token}", "Accept": "application/json"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            ssl_options=ssl_options,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError, asyncio.TimeoutError) as e:
            log.error("user %s: cannot reach the hub at %s: %s", name, url, e)
            raise HubUnavailable(
                f"the dass service cannot reach JupyterHub at {auth.api_url} to look up user "
                f"{name!r}; try again in a moment, and tell an administrator if it persists"
            ) from e
        if response.code == 599 or response.code >= 500:
            log.error("user %s: hub answered %s for %s: %s", name, response.code, url, response.error)
            raise HubUnavailable(
                f"JupyterHub failed (HTTP {response.code}) when asked for user {name!r}; "
                "try again in a moment, and tell an administrator if it persists"
            )
        if response.code == 404:
            log.warning("user %s: token is valid but the hub has no such user", name)
            raise UnknownUser(f"JupyterHub has no user {name!r} any more; sign in again")
        if response.code in (401, 403):
            log.error(
                "user %s: the hub refused the service token for %s (HTTP %s): the service's role "
                "needs the read:users scope",
                name,
                url,
                response.code,
            )
            raise HubPermissionError(
                "JupyterHub does not let the dass service read user groups; an administrator must "
                "grant the service's role the scopes read:users, list:users and read:groups"
            )
        if response.code != 200:
            log.error("user %s: unexpected hub answer %s for %s", name, response.code, url)
            raise HubUnavailable(f"JupyterHub answered HTTP {response.code} when asked for user {name!r}")
        try:
            model = json.loads(response.body)
            identity = identity_from_model(model)
        except (ValueError, KeyError, TypeError) as e:
            log.error("user %s: the hub's answer is not a user model: %r", name, response.body[:200])
            raise HubUnavailable(f"JupyterHub answered with an invalid user model for {name!r}") from e
        log.debug("user %s: groups %s, admin %s", name, sorted(identity.groups), identity.admin)
        return identity

"""The HTTP client base of the dass service's APIs (jobs, SEM classification).

Inside a JupyterLab session or a job it needs no arguments: the hub token
(``$JUPYTERHUB_API_TOKEN``) and the service URL (``$DASS_SERVICE_URL``) are in its environment.
Outside, pass ``url`` and ``token`` (or set ``$DASS_URL`` and ``$DASS_TOKEN``).
"""

from __future__ import annotations

import os
from typing import Any

import requests

from .errors import DassError

DEFAULT_URL = "http://127.0.0.1:8000/services/dass/"


class ServiceError(DassError):
    """The service refused a request; ``status`` is the HTTP status, ``message`` its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})", status=status, user_message=message)
        self.status = status
        self.message = message


class ServiceClient:
    """Talks to the dass service with a hub token; API-specific clients subclass it."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60) -> None:
        url = url or os.environ.get("DASS_URL") or os.environ.get("DASS_SERVICE_URL") or DEFAULT_URL
        self.url = url.rstrip("/") + "/"
        self.token = token or os.environ.get("DASS_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not self.token:
            raise ServiceError(401, "no hub token: pass token=, or set $DASS_TOKEN (create one on the hub's token page)")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        try:
            r = self.session.request(method, self.url + path, timeout=kw.pop("timeout", self.timeout), **kw)
        except requests.ConnectionError as e:
            raise ServiceError(503, f"cannot reach the dass service at {self.url}: {e.__class__.__name__}") from None
        if r.status_code >= 400:
            try:
                message = r.json().get("message") or r.text
            except ValueError:
                message = r.text[:500]
            raise ServiceError(r.status_code, message)
        return r

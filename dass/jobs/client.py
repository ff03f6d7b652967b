"""A small client of the dass jobs API, for scripts, the CLI and notebooks in a session.

Inside a JupyterLab session it needs no arguments: the session's own hub token
(``$JUPYTERHUB_API_TOKEN``) and the service URL (``$DASS_SERVICE_URL``) are in its environment::

    import dass.jobs
    job = dass.jobs.submit("sem/service/image_summary.ipynb",
                           parameters={"input_dataset": "p-2026-001/sem-nanowires"})
    job = dass.jobs.wait(job["id"])          # prints status changes
    dass.jobs.download(job["id"], "summary.csv", "summary.csv")

    # a parameter sweep: one job per combination, submitted at once
    sweep = dass.jobs.submit_sweep("sem/service/image_summary.ipynb",
                                   parameters={"input_dataset": "p-2026-001/sem-nanowires"},
                                   sweep={"max_images": [5, 10, 20]})
    sweep = dass.jobs.wait_sweep(sweep["id"])  # prints the counts per status as they change

Outside, pass ``url`` and ``token`` (or set ``$DASS_URL`` and ``$DASS_TOKEN``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..client import ServiceClient, ServiceError

FINISHED = ("COMPLETED", "FAILED", "STOPPED")

#: the error of every dass service call (kept under its historical name)
JobsError = ServiceError


class JobsClient(ServiceClient):
    """Talks to the dass service's jobs API with a hub token."""

    # -- the API ---------------------------------------------------------------------------
    def notebooks(self) -> list[dict]:
        return self._request("GET", "api/notebooks").json()["notebooks"]

    def submit(
        self,
        notebook: str | os.PathLike | dict,
        parameters: dict | None = None,
        *,
        datasets: list[str] | None = None,
        stack: str | None = None,
        size: str | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """Submit a job. ``notebook``: a service notebook (``"sem/service/x.ipynb"``), a local
        ``.ipynb`` file (uploaded), or ``{"home": "path/in/home.ipynb"}``."""
        body: dict[str, Any] = {"notebook": _notebook_field(notebook)}
        for key, value in (("parameters", parameters), ("datasets", datasets), ("stack", stack),
                           ("size", size), ("timeout", timeout), ("idempotency_key", idempotency_key)):
            if value is not None:
                body[key] = value
        return self._request("POST", "api/jobs", json=body).json()

    def submit_sweep(
        self,
        notebook: str | os.PathLike | dict,
        parameters: dict | None = None,
        *,
        sweep: dict[str, list] | None = None,
        parameter_sets: list[dict] | None = None,
        datasets: list[str] | None = None,
        stack: str | None = None,
        size: str | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """Submit a parameter sweep: one job for every combination of the values of ``sweep``
        (``{"threshold": [0.1, 0.2], "method": ["a", "b"]}``: four jobs), times every set of
        ``parameter_sets``, each with ``parameters`` besides. Returns the sweep (its ``jobs``)."""
        body: dict[str, Any] = {"notebook": _notebook_field(notebook)}
        for key, value in (("parameters", parameters), ("sweep", sweep), ("parameter_sets", parameter_sets),
                           ("datasets", datasets), ("stack", stack), ("size", size), ("timeout", timeout),
                           ("idempotency_key", idempotency_key)):
            if value is not None:
                body[key] = value
        return self._request("POST", "api/sweeps", json=body).json()

    def get(self, job_id: str) -> dict:
        return self._request("GET", f"api/jobs/{job_id}").json()

    def get_sweep(self, sweep_id: str) -> dict:
        """A sweep: its elements' job ids and how many are in each status (``counts``)."""
        return self._request("GET", f"api/sweeps/{sweep_id}").json()

    def list_sweeps(self, limit: int = 100) -> list[dict]:
        """Your sweeps (admins: all), newest first, each with its ``counts`` per status."""
        return self._request("GET", "api/sweeps", params={"limit": limit}).json()["sweeps"]

    def cancel_sweep(self, sweep_id: str) -> dict:
        """Cancel every element of the sweep that has not finished."""
        return self._request("POST", f"api/sweeps/{sweep_id}/cancel").json()

    def list(self, status: str | None = None, limit: int = 100, sweep: str | None = None) -> list[dict]:
        """Your jobs (admins: all), newest first; the elements of one sweep, in order, with ``sweep``."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if sweep:
            params["sweep"] = sweep
        return self._request("GET", "api/jobs", params=params).json()["jobs"]

    def cancel(self, job_id: str) -> dict:
        return self._request("POST", f"api/jobs/{job_id}/cancel").json()

    def log(self, job_id: str, offset: int = 0) -> tuple[str, int, str]:
        """(text from offset, next offset, job status)."""
        r = self._request("GET", f"api/jobs/{job_id}/log", params={"offset": offset})
        return r.text, int(r.headers.get("X-Dass-Next-Offset", offset)), r.headers.get("X-Dass-Job-Status", "")

    def follow_log(self, job_id: str, interval: float = 1.0) -> Iterator[str]:
        """Yield the log as it grows, until the job has finished."""
        offset = 0
        while True:
            text, offset, status = self.log(job_id, offset)
            if text:
                yield text
            if status in FINISHED:
                text, offset, status = self.log(job_id, offset)
                if text:
                    yield text
                return
            time.sleep(interval)

    def outputs(self, job_id: str) -> list[dict]:
        return self._request("GET", f"api/jobs/{job_id}/outputs").json()["outputs"]

    def download(self, job_id: str, path: str, target: str | os.PathLike) -> Path:
        r = self._request("GET", f"api/jobs/{job_id}/outputs/{path}", stream=True)
        target = Path(target)
        tmp = target.with_name(target.name + ".part")
        with open(tmp, "wb") as f:
            for chunk in r.iter_content(1024 * 1024):
                f.write(chunk)
        tmp.replace(target)
        return target

    def verify(self, job_id: str) -> dict:
        return self._request("POST", f"api/jobs/{job_id}/verify", timeout=600).json()

    def wait(self, job_id: str, *, interval: float = 1.0, timeout: float | None = None,
             report: Callable[[dict], None] | None = None) -> dict:
        """Wait until the job has finished; ``report`` is called at every status change."""
        return _poll(lambda: self.get(job_id), changed=lambda job: job["status"],
                     finished=lambda job: job["status"] in FINISHED,
                     late=lambda job: f"job {job_id} still {job['status']} after {timeout} s",
                     interval=interval, timeout=timeout, report=report)

    def wait_sweep(self, sweep_id: str, *, interval: float = 1.0, timeout: float | None = None,
                   report: Callable[[dict], None] | None = None) -> dict:
        """Wait until every element of the sweep has finished; ``report`` is called whenever
        the counts per status change."""
        return _poll(lambda: self.get_sweep(sweep_id), changed=lambda sweep: sweep["counts"],
                     finished=lambda sweep: sweep["finished"],
                     late=lambda sweep: f"sweep {sweep_id} not finished after {timeout} s: {sweep_counts(sweep)}",
                     interval=interval, timeout=timeout, report=report)


def sweep_counts(sweep: dict) -> str:
    """``"6 jobs: 2 COMPLETED, 1 IN_PROGRESS, 3 QUEUED"`` (statuses with no job left out)."""
    parts = [f"{n} {status}" for status, n in sweep["counts"].items() if n]
    return f"{sweep['count']} jobs: " + ", ".join(parts)


def _notebook_field(notebook: Any) -> Any:
    if isinstance(notebook, dict):
        return notebook
    text = str(notebook)
    path = Path(text)
    if text.endswith(".ipynb") and path.is_file() and (path.is_absolute() or text.startswith(".") or not _looks_registered(text)):
        return {"upload": path.read_text(), "name": path.name}
    return text


def _looks_registered(text: str) -> bool:
    parts = Path(text).parts
    return len(parts) == 3 and parts[1] == "service"


def _default_report(job: dict) -> None:
    reason = f": {job['reason']}" if job.get("reason") else ""
    print(f"job {job['id'][:8]} {job['status']}{reason}", file=sys.stderr, flush=True)


def _sweep_report(sweep: dict) -> None:
    print(f"sweep {sweep['id'][:8]} {sweep_counts(sweep)}", file=sys.stderr, flush=True)


_client: JobsClient | None = None


def client() -> JobsClient:
    """The client of this process (from the environment), made on first use."""
    global _client
    if _client is None:
        _client = JobsClient()
    return _client


def submit(notebook, parameters=None, **kw) -> dict:
    """Submit a job with the session's identity; see :meth:`JobsClient.submit`."""
    return client().submit(notebook, parameters, **kw)


def wait(job_id: str, **kw) -> dict:
    kw.setdefault("report", _default_report)
    return client().wait(job_id, **kw)


def submit_sweep(notebook, parameters=None, **kw) -> dict:
    """Submit a parameter sweep with the session's identity; see :meth:`JobsClient.submit_sweep`."""
    return client().submit_sweep(notebook, parameters, **kw)


def wait_sweep(sweep_id: str, **kw) -> dict:
    kw.setdefault("report", _sweep_report)
    return client().wait_sweep(sweep_id, **kw)


def get(job_id: str) -> dict:
    return client().get(job_id)


def download(job_id: str, path: str, target) -> Path:
    return client().download(job_id, path, target)


def _poll(fetch: Callable[[], dict], *, changed: Callable[[dict], Any], finished: Callable[[dict], bool],
          late: Callable[[dict], str], interval: float, timeout: float | None,
          report: Callable[[dict], None] | None) -> dict:
    """Fetch until ``finished``; ``report`` whenever ``changed`` of the answer changes; a
    TimeoutError saying ``late`` after ``timeout`` seconds (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = object()
    while True:
        doc = fetch()
        if changed(doc) != last:
            last = changed(doc)
            if report:
                report(doc)
        if finished(doc):
            return doc
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(late(doc))
        time.sleep(interval)

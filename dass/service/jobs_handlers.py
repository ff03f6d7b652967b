"""REST handlers of headless jobs (``api/jobs…``, ``api/sweeps…``, ``api/notebooks``).

Every handler authorizes through :class:`~dass.jobs.manager.JobManager`: a user sees, follows,
cancels and downloads only their own jobs (admins all); another user's job answers 404. The
manager's refusals (:class:`~dass.jobs.manager.JobRequestError`, a ``DassError``) answer with
their own status and message through :meth:`BaseHandler.write_error`.
"""

from __future__ import annotations

import asyncio
import mimetypes
from urllib.parse import quote
from typing import Any

from .handlers import ApiError, BaseHandler

POLL_SECONDS = 0.5
#: Largest byte offset into a job's log (1 TiB): beyond what a file seek takes, never a log's size.
MAX_LOG_OFFSET = 2**40
FOLLOW_VALUES = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


def content_disposition(name: str) -> str:
    """An attachment header for any file name (RFC 6266 / 5987: ASCII fallback + UTF-8)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class JobsBase(BaseHandler):
    @property
    def jobs(self):
        return self.settings["job_manager"]

    def body_limit(self) -> int:
        # a job request holds at most one notebook, and a little around it
        return self.jobs.max_notebook_bytes + 256 * 1024

    def json_body(self) -> Any:
        return self.parse_json(self.request.body)

    def check_request(self, body: Any) -> None:
        """Refuse names and paths that no file or database call could take (NUL, control
        characters, over-long names), before the manager looks at the request."""
        if not isinstance(body, dict):
            return  # the manager says what a request is
        notebook = body.get("notebook")
        if isinstance(notebook, str):
            self.check_name(notebook, "notebook", path=True)
        elif isinstance(notebook, dict):
            for key in ("name", "home"):
                if isinstance(notebook.get(key), str):
                    self.check_name(notebook[key], f"notebook.{key}", path=True)
        for key in ("stack", "size", "idempotency_key"):
            if isinstance(body.get(key), str):
                self.check_name(body[key], key)
        datasets = body.get("datasets")
        if isinstance(datasets, list):
            for i, d in enumerate(datasets):
                if isinstance(d, str):
                    self.check_name(d, f"datasets[{i}]", path=True)
        parameters = body.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ApiError(422, "parameters must be an object of parameter names and values, "
                                f"not {type(parameters).__name__}; see GET api/notebooks for the names")
        if datasets is not None and not isinstance(datasets, list):
            raise ApiError(422, "datasets must be a list of dataset ids (<proposal>/<name>), "
                                f"not {type(datasets).__name__}")
        if isinstance(parameters, dict):
            for name in parameters:
                self.check_name(name, "a parameter name")
        sweep, sets = body.get("sweep"), body.get("parameter_sets")
        for names in ([sweep] if isinstance(sweep, dict) else []) + (sets if isinstance(sets, list) else []):
            if isinstance(names, dict):
                for name in names:
                    self.check_name(name, "a parameter name")


class JobsHandler(JobsBase):
    def get(self) -> None:
        args = self.query_args(("status", "limit", "offset", "sweep"))
        limit = self.int_arg(args, "limit", 100, 1, 500)
        offset = self.int_arg(args, "offset", 0, 0)
        sweep = args.get("sweep") or None
        if sweep is not None:
            self.check_name(sweep, "sweep")
        jobs, total = self.jobs.list_jobs(self.identity, status=args.get("status"), limit=limit, offset=offset,
                                          sweep=sweep)
        self.write_json({"jobs": jobs, "total": total, "limit": limit, "offset": offset})

    def post(self) -> None:
        self.audit_action = "job.submit"  # one row per input dataset, denied submissions included
        self.query_args(())
        body = self.json_body()
        self.check_request(body)
        asked = body.get("datasets") if isinstance(body, dict) else None
        asked = list(dict.fromkeys(d for d in asked if isinstance(d, str))) if isinstance(asked, list) else []
        records = [self.audit(dataset=d) for d in asked]
        job, created = self.jobs.submit(self.identity, body)
        self.audit_job(records, job)
        self.set_header("Location", f"{self.base_url}api/jobs/{job['id']}")
        self.write_json(job, 201 if created else 200)


class SweepsHandler(JobsBase):
    """``POST api/sweeps``: one notebook over many parameter sets, each element an ordinary job;
    ``GET api/sweeps``: the caller's sweeps (an admin's: all), newest first."""

    def get(self) -> None:
        args = self.query_args(("limit", "offset"))
        limit = self.int_arg(args, "limit", 100, 1, 500)
        offset = self.int_arg(args, "offset", 0, 0)
        sweeps, total = self.jobs.list_sweeps(self.identity, limit=limit, offset=offset)
        self.write_json({"sweeps": sweeps, "total": total, "limit": limit, "offset": offset})

    def post(self) -> None:
        self.audit_action = "job.submit"  # as api/jobs: one row per element and input dataset
        self.query_args(())
        body = self.json_body()
        self.check_request(body)
        asked = body.get("datasets") if isinstance(body, dict) else None
        asked = list(dict.fromkeys(d for d in asked if isinstance(d, str))) if isinstance(asked, list) else []
        records = [self.audit(dataset=d) for d in asked]
        sweep, created = self.jobs.submit_sweep(self.identity, body)
        jobs, _ = self.jobs.list_jobs(self.identity, sweep=sweep["id"], limit=max(1, sweep["count"]))
        for i, job in enumerate(jobs):
            self.audit_job(records if i == 0 else [self.audit(dataset=d) for d in asked], job)
        self.set_header("Location", f"{self.base_url}api/sweeps/{sweep['id']}")
        self.write_json(sweep, 201 if created else 200)


class SweepHandler(JobsBase):
    def get(self, sweep_id: str) -> None:
        self.query_args(())
        self.write_json(self.jobs.get_sweep(self.identity, sweep_id))


class SweepCancelHandler(JobsBase):
    def post(self, sweep_id: str) -> None:
        self.query_args(())
        sweep = self.jobs.cancel_sweep(self.identity, sweep_id)
        self.write_json(sweep, 202 if sweep["counts"]["STOPPING"] else 200)


class JobHandler(JobsBase):
    def get(self, job_id: str) -> None:
        self.query_args(())
        self.write_json(self.jobs.get(self.identity, job_id))


class JobCancelHandler(JobsBase):
    def post(self, job_id: str) -> None:
        self.query_args(())
        job = self.jobs.cancel(self.identity, job_id)
        self.write_json(job, 202 if job["status"] == "STOPPING" else 200)


class JobLogHandler(JobsBase):
    """The job's log as text: from ``offset``; with ``follow=1`` it streams until the job ends."""

    async def get(self, job_id: str) -> None:
        args = self.query_args(("offset", "follow"))
        offset = self.int_arg(args, "offset", 0, 0, MAX_LOG_OFFSET)
        flag = args.get("follow", "0").strip().lower()
        if flag not in FOLLOW_VALUES:
            raise ApiError(400, f"query parameter follow must be 1 (stream until the job ends) or 0, got {flag[:40]!r}")
        follow = FOLLOW_VALUES[flag]
        text, offset, job = self.jobs.log_chunk(self.identity, job_id, offset)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.set_header("X-Dass-Job-Status", job["status"])
        self.set_header("X-Dass-Next-Offset", str(offset))
        self.write(text)
        if not follow:
            self.finish()
            return
        from ..jobs.model import Status

        while not Status(job["status"]).finished:
            await self.flush()
            await asyncio.sleep(POLL_SECONDS)
            if self.request.connection.stream is None or self.request.connection.stream.closed():
                return
            text, offset, job = self.jobs.log_chunk(self.identity, job_id, offset)
            if text:
                self.write(text)
        text, offset, job = self.jobs.log_chunk(self.identity, job_id, offset)
        self.write(text)
        self.write(f"\n[dass] job {job_id} {job['status']}" + (f": {job['reason']}" if job["reason"] else "") + "\n")
        self.finish()


class JobOutputsHandler(JobsBase):
    def get(self, job_id: str) -> None:
        self.query_args(())
        job = self.jobs.get(self.identity, job_id)
        base = f"{self.base_url}api/jobs/{job_id}/outputs/"
        self.write_json({"outputs": [dict(o, url=base + quote(o["path"])) for o in job["outputs"]]})


class JobOutputHandler(JobsBase):
    audit_action = "job.output"

    def audit_fields(self) -> dict[str, Any]:
        return {"job": self.path_args[0], "path": self.path_args[1], "bytes": 0}

    async def get(self, job_id: str, path: str) -> None:
        record = self.audit(**self.audit_fields())
        self.query_args(())
        self.check_name(path, "the output path", path=True)
        f = self.jobs.open_output(self.identity, job_id, path)
        name = path.rsplit("/", 1)[-1]
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.set_header("Content-Type", ctype)
        self.set_header("Content-Disposition", content_disposition(name))
        self.set_header("X-Content-Type-Options", "nosniff")
        with f:
            chunk = await asyncio.to_thread(f.read, 1024 * 1024)
            while chunk:
                following = await asyncio.to_thread(f.read, 1024 * 1024)
                record.bytes += len(chunk)
                self.write(chunk)
                if following:  # the last chunk leaves with finish(), after the audit row is written
                    await self.flush()
                chunk = following
        self.finish()


class JobNotebookHandler(JobsBase):
    """The executed notebook rendered as HTML (sandboxed: it is user content)."""

    audit_action = "job.output"

    def audit_fields(self) -> dict[str, Any]:
        return {"job": self.path_args[0], "path": "executed.html"}

    async def get(self, job_id: str) -> None:
        record = self.audit(**self.audit_fields())
        self.query_args(())
        f = self.jobs.open_output(self.identity, job_id, "executed.html")
        with f:
            body = await asyncio.to_thread(f.read)
        record.bytes = len(body)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(body)


class JobVerifyHandler(JobsBase):
    async def post(self, job_id: str) -> None:
        self.query_args(())
        job = self.jobs.get(self.identity, job_id)
        if not job["results_url"]:
            raise ApiError(409, f"job {job_id} is {job['status']} and has no results to verify")
        from ..jobs.provenance import verify_results

        storage = self.jobs.storage
        report = await asyncio.to_thread(verify_results, job["results_url"], storage.storage_options,
                                         repository_url=storage.url)
        self.write_json({"ok": report.ok, "checked": report.checked, "problems": list(report.problems)})


class JobResultHandler(JobsBase):
    """``PUT api/jobs/<id>/result``: the job's runner hands in its ``result.json`` with the job's
    own token (no other caller may); the service keeps it in repository storage."""

    accepts_job_tokens = True

    def body_limit(self) -> int:
        return 1024 * 1024

    async def put(self, job_id: str) -> None:
        self.query_args(())
        grant = self.grant
        if grant is None or grant.kind != "job" or grant.ref != job_id:
            raise ApiError(403, f"only job {job_id}'s own token may hand in its result")
        doc = self.json_body()
        if not isinstance(doc, dict) or doc.get("status") not in ("COMPLETED", "FAILED"):
            raise ApiError(422, "send the run's result: a JSON object whose status is COMPLETED or FAILED")
        await asyncio.to_thread(self.jobs.store_result, job_id, doc)
        self.set_status(204)
        self.finish()


class NotebooksHandler(JobsBase):
    def get(self) -> None:
        self.query_args(())
        self.write_json({"notebooks": self.jobs.service_notebooks(self.identity)})


default_handlers = [
    ("api/jobs", JobsHandler),
    (r"api/jobs/([0-9a-zA-Z]+)", JobHandler),
    (r"api/jobs/([0-9a-zA-Z]+)/cancel", JobCancelHandler),
    (r"api/jobs/([0-9a-zA-Z]+)/log", JobLogHandler),
    (r"api/jobs/([0-9a-zA-Z]+)/outputs", JobOutputsHandler),
    (r"api/jobs/([0-9a-zA-Z]+)/outputs/(.+)", JobOutputHandler),
    (r"api/jobs/([0-9a-zA-Z]+)/notebook", JobNotebookHandler),
    (r"api/jobs/([0-9a-zA-Z]+)/verify", JobVerifyHandler),
    (r"api/jobs/([0-9a-zA-Z]+)/result", JobResultHandler),
    ("api/sweeps", SweepsHandler),
    (r"api/sweeps/([0-9a-zA-Z]+)", SweepHandler),
    (r"api/sweeps/([0-9a-zA-Z]+)/cancel", SweepCancelHandler),
    ("api/notebooks", NotebooksHandler),
]

"""REST handlers of headless jobs (``api/jobs…``, ``api/notebooks``).

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


def content_disposition(name: str) -> str:
    """An attachment header for any file name (RFC 6266 / 5987: ASCII fallback + UTF-8)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class JobsBase(BaseHandler):
    @property
    def jobs(self):
        return self.settings["job_manager"]

    def json_body(self) -> Any:
        limit = self.jobs.max_notebook_bytes + 256 * 1024
        if len(self.request.body) > limit:
            raise ApiError(413, f"request body larger than {limit} bytes; the notebook limit is "
                                f"{self.jobs.max_notebook_bytes} bytes")
        return self.parse_json(self.request.body)


class JobsHandler(JobsBase):
    def get(self) -> None:
        args = self.query_args(("status", "limit", "offset"))
        limit = self.int_arg(args, "limit", 100, 1, 500)
        offset = self.int_arg(args, "offset", 0, 0)
        jobs, total = self.jobs.list_jobs(self.identity, status=args.get("status"), limit=limit, offset=offset)
        self.write_json({"jobs": jobs, "total": total, "limit": limit, "offset": offset})

    def post(self) -> None:
        self.query_args(())
        job, created = self.jobs.submit(self.identity, self.json_body())
        self.set_header("Location", f"{self.base_url}api/jobs/{job['id']}")
        self.write_json(job, 201 if created else 200)


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
        offset = self.int_arg(args, "offset", 0, 0)
        follow = args.get("follow", "0") not in ("", "0", "false", "no")
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
    async def get(self, job_id: str, path: str) -> None:
        self.query_args(())
        f = self.jobs.open_output(self.identity, job_id, path)
        name = path.rsplit("/", 1)[-1]
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.set_header("Content-Type", ctype)
        self.set_header("Content-Disposition", content_disposition(name))
        self.set_header("X-Content-Type-Options", "nosniff")
        with f:
            while True:
                chunk = await asyncio.to_thread(f.read, 1024 * 1024)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        self.finish()


class JobNotebookHandler(JobsBase):
    """The executed notebook rendered as HTML (sandboxed: it is user content)."""

    async def get(self, job_id: str) -> None:
        self.query_args(())
        f = self.jobs.open_output(self.identity, job_id, "executed.html")
        with f:
            body = await asyncio.to_thread(f.read)
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

        report = await asyncio.to_thread(verify_results, job["results_url"], self.jobs.storage.storage_options)
        self.write_json({"ok": report.ok, "checked": report.checked, "problems": list(report.problems)})


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
    ("api/notebooks", NotebooksHandler),
]

"""Server-rendered pages of headless jobs: the ``jobs`` page (a submit form and the caller's
jobs) and the page of one job (``jobs/{id}``: status, live log, outputs, executed notebook).

The pages use the :class:`~dass.jobs.manager.JobManager` directly, with the same authorization
as the REST API (``api/jobs…``): a user sees only their own jobs (an administrator all of them);
another user's job answers the same 404 page as a missing one.

CSRF: the pages' POSTs (``jobs``, ``jobs/inspect``) are authenticated by the hub OAuth cookie in
a browser, so each must carry the ``_xsrf`` token of the form (``{{ xsrf_form_html }}``, or the
``X-XSRFToken`` header from JavaScript). The check is JupyterHub's (``HubOAuth.check_xsrf_cookie``:
the token is bound to the OAuth cookie and the hub session); it is done here, in
:meth:`PageHandler.prepare`, and answers a 403 page that says to reload the form. A request
authenticated by an API token in the ``Authorization`` header is exempt (a browser never adds
that header by itself), and tornado's global ``xsrf_cookies`` setting stays off, so API token
clients are not affected. The pages' JavaScript calls the REST API with the same cookie and the
``X-XSRFToken`` header, which HubOAuth requires for every cookie-authenticated ``fetch``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import markupsafe
from jupyterhub.utils import url_path_join
from tornado import web

from ..hub.picker import picker_proposals, picker_techniques
from ..jobs.client import sweep_counts
from ..jobs.manager import JobRequestError
from ..jobs.model import Status
from ..jobs.params import ParameterError, form_fields, inspect_parameters, validate_parameters
from .handlers import ApiError, BaseHandler

__all__ = ["default_handlers"]

#: Form field names of notebook parameters start with this (``param.max_images``).
PARAM_PREFIX = "param."
#: The most datasets the form offers (the catalogue's first ones by id).
DATASET_LIMIT = 2000
#: The most jobs the table lists.
JOBS_LIMIT = 200
FINISHED = tuple(s.value for s in Status if s.finished)
XSRF_MESSAGE = (
    "this form's security token (_xsrf) is missing or does not match your login; "
    "reload the page and submit again"
)


class PageHandler(BaseHandler):
    """An HTML page of jobs: JobManager access, CSRF checks of POSTs, rendering helpers."""

    # HTML forms: tornado reads the (small) body before prepare(), so that the form's _xsrf
    # field can be checked there and the form fields parsed (the API routes stream theirs)
    stream_body = False

    @property
    def jobs(self):
        return self.settings["job_manager"]

    async def prepare(self) -> None:
        if not self._implements(self.request.method):
            raise web.HTTPError(405)
        if self.request.method == "POST" and self._cookie_only():
            # A browser POST: refuse it without a valid _xsrf token. HubOAuth would only drop
            # the cookie (a 401 saying "sign in"); this answer says what to do.
            try:
                self.check_xsrf_cookie()
            except web.HTTPError as e:
                self.log.info("%s %s refused: %s", self.request.method, self.request.path, e.log_message)
                raise ApiError(403, XSRF_MESSAGE) from None
        await super().prepare()

    def _cookie_only(self) -> bool:
        """Whether this request's only credential is the OAuth cookie (no API token)."""
        if self.hub_auth.get_token(self, in_cookie=False):
            return False
        return bool(self.get_cookie(self.hub_auth.cookie_name))

    def render_page(self, name: str, status: int = 200, **namespace: Any) -> None:
        self.set_status(status)
        namespace.setdefault("fragment", False)
        namespace.setdefault("xsrf_token", self.xsrf_token.decode("ascii")
                             if isinstance(self.xsrf_token, bytes) else self.xsrf_token)
        namespace.setdefault("xsrf_form_html", markupsafe.Markup(self.xsrf_form_html()))
        namespace.setdefault("api_url", url_path_join(self.base_url, "api/"))
        self.render_template(name, **namespace)

    def visible_records(self) -> tuple[list[Any], int]:
        """The catalogue records the caller may see (the first ``DATASET_LIMIT``) and their total."""
        return self.catalog.search(self.identity, limit=DATASET_LIMIT)

    def visible_datasets(self, found: tuple[list[Any], int] | None = None) -> tuple[list[dict[str, Any]], int]:
        """The datasets the caller may see, grouped by proposal: ``[{"name", "datasets"}]``."""
        records, total = found or self.visible_records()
        groups: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for r in records:
            groups.setdefault(r.proposal, {"name": r.proposal, "datasets": []})["datasets"].append(
                {"id": r.id, "title": r.title}
            )
        return list(groups.values()), total

    def dataset_visible(self, dataset_id: str) -> bool:
        return dataset_id in self.catalog.visible(self.identity, [dataset_id])


# -- the jobs page ------------------------------------------------------------------------------


def _new_form() -> dict[str, Any]:
    return {
        "source": "service",
        "notebook": "",
        "raw": {},
        "stack": "",
        "size": "",
        "timeout": "",
        "datasets": [],
        "upload_name": "",
        "upload_text": "",
        "idempotency_key": uuid.uuid4().hex,
    }


def _safe_name(filename: str) -> str:
    """A notebook file name the job API accepts (``[\\w.-]+.ipynb``)."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    return re.sub(r"[^\w.-]", "_", name) or "notebook.ipynb"


def _upload_fields(text: str) -> tuple[Any, dict[str, Any]]:
    """(declared parameters, {}) of an uploaded notebook's text; raises JobRequestError 422."""
    import nbformat

    try:
        nb = nbformat.reads(text, as_version=4)
        return inspect_parameters(nb), {}
    except Exception as e:  # nbformat and json raise several kinds
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise JobRequestError(422, f"the uploaded file is not a valid Jupyter notebook: {first}", "upload") from None


class JobsPage(PageHandler):
    """``GET jobs``: the submit form and the caller's jobs; ``POST jobs``: submit the form."""

    def get(self) -> None:
        form = _new_form()
        notebook = self.get_query_argument("notebook", "")
        if notebook:
            form["notebook"] = notebook
        if self.get_query_argument("source", "") == "upload":
            form["source"] = "upload"
        self.render_jobs(form)

    def render_jobs(self, form: dict[str, Any], *, status: int = 200, error: dict[str, str] | None = None,
                    upload_fields: list[dict[str, Any]] | None = None) -> None:
        identity = self.identity
        stacks = self.stack_registry.for_identity(identity)
        usable = {s.name for s in stacks}
        base = Path(self.stack_registry.notebooks_dir)
        notebooks = []
        for entry in self.jobs.service_notebooks():
            if entry["stack"] not in usable:
                continue  # its stack is closed to this user: the job could not start
            declared = inspect_parameters(str(base / entry["notebook"]))
            notebooks.append({"notebook": entry["notebook"], "stack": entry["stack"], "fields": form_fields(declared)})
        if not form["notebook"] and notebooks:
            form["notebook"] = notebooks[0]["notebook"]
        sizes: OrderedDict[str, dict[str, Any]] = OrderedDict()
        stack_info = []
        for stack in stacks:
            allowed = self.stack_registry.sizes_for(stack, identity)
            stack_info.append({"name": stack.name, "display_name": stack.display_name,
                               "default_size": stack.default_size})
            for size in allowed:
                entry = sizes.setdefault(size.name, {"name": size.name, "display_name": size.display_name,
                                                     "cpu": size.cpu, "mem_gib": size.mem_gib, "stacks": []})
                entry["stacks"].append(stack.name)
        found = self.visible_records()
        proposals, dataset_total = self.visible_datasets(found)
        titles = {p["id"]: p.get("title") or "" for p in self.catalog.proposals(self.identity)}
        picker = picker_proposals(found[0], titles)
        status_filter = (self.get_query_argument("status", "") or "").strip().upper()
        if status_filter and status_filter not in Status.__members__:
            raise ApiError(400, f"unknown status {status_filter!r}; use one of {', '.join(Status.__members__)}")
        sweep_filter = (self.get_query_argument("sweep", "") or "").strip()
        # one sweep's jobs, in its order (another user's or a missing sweep: 404)
        sweep = self.jobs.get_sweep(identity, sweep_filter) if sweep_filter else None
        jobs, total = self.jobs.list_jobs(identity, status=status_filter or None, limit=JOBS_LIMIT,
                                          sweep=sweep_filter or None)
        self.render_page(
            "jobs.html",
            status=status,
            form=form,
            error=error,
            notebooks=notebooks,
            upload_fields=upload_fields,
            stacks=stack_info,
            sizes=list(sizes.values()),
            proposals=proposals,
            picker=picker,
            techniques=picker_techniques(picker),
            dataset_total=dataset_total,
            dataset_limit=DATASET_LIMIT,
            max_datasets=self.jobs.max_datasets,
            default_timeout=self.jobs.default_timeout,
            max_timeout=self.jobs.max_timeout,
            jobs=[_job_row(j) for j in jobs],
            jobs_total=total,
            status_filter=status_filter,
            statuses=list(Status.__members__),
            sweep=sweep and {"id": sweep["id"], "short": sweep["id"][:8], "counts": sweep_counts(sweep)},
        )

    def _form(self) -> dict[str, Any]:
        arg = self.get_body_argument
        form = _new_form()
        form.update(
            source="upload" if arg("source", "service") == "upload" else "service",
            notebook=arg("notebook", ""),
            stack=arg("stack", ""),
            size=arg("size", ""),
            timeout=arg("timeout", ""),
            datasets=[d for d in self.get_body_arguments("datasets") if d],
            upload_name=arg("upload_name", ""),
            upload_text=arg("upload_text", "", strip=False),
            idempotency_key=arg("idempotency_key", "") or form["idempotency_key"],
        )
        raw: dict[str, list[str]] = {}
        for key in self.request.body_arguments:
            if key.startswith(PARAM_PREFIX):
                raw[key[len(PARAM_PREFIX):]] = self.get_body_arguments(key, strip=False)
        form["raw"] = raw
        return form

    def post(self) -> None:
        form = self._form()
        self.audit_action = "job.submit"  # as api/jobs: one row per input dataset, refusals included
        records = [self.audit(dataset=d) for d in dict.fromkeys(form["datasets"] or [])]
        upload_fields = None
        try:
            if form["source"] == "upload":
                files = [f for f in self.request.files.get("upload", []) if f.body]
                if files and len(files[-1].body) > self.jobs.max_notebook_bytes:
                    form["upload_text"] = form["upload_name"] = ""
                    raise JobRequestError(422, f"the notebook is larger than {self.jobs.max_notebook_bytes} bytes "
                                               "(c.JobManager.max_notebook_bytes)", "upload")
                if files:
                    try:
                        form["upload_text"] = files[-1].body.decode("utf-8")
                    except UnicodeDecodeError:
                        form["upload_text"] = ""
                        raise JobRequestError(422, "the uploaded file is not UTF-8 text: choose a .ipynb file",
                                              "upload") from None
                    form["upload_name"] = _safe_name(files[-1].filename)
                if not form["upload_text"]:
                    raise JobRequestError(422, "choose a notebook file (.ipynb) to upload", "upload")
                if not form["upload_name"].endswith(".ipynb"):
                    raise JobRequestError(422, f"{form['upload_name']!r} is not a notebook: choose a .ipynb file",
                                          "upload")
                declared, _ = _upload_fields(form["upload_text"])
                upload_fields = form_fields(declared)
                notebook: Any = {"upload": form["upload_text"], "name": form["upload_name"]}
            else:
                notebook = form["notebook"]
                declared = self._service_parameters(notebook)
            values: dict[str, Any] = {}
            if declared is not None:  # else the manager refuses the notebook, naming the choices
                values, _ = validate_parameters(
                    self._param_values(form["raw"], declared), declared,
                    visible_dataset=self.dataset_visible, coerce_strings=True,
                )
            body: dict[str, Any] = {
                "notebook": notebook,
                "parameters": values,
                "datasets": form["datasets"],
                "idempotency_key": form["idempotency_key"],
            }
            if form["stack"]:
                body["stack"] = form["stack"]
            if form["size"]:
                body["size"] = form["size"]
            if form["timeout"].strip():
                try:
                    body["timeout"] = int(form["timeout"])
                except ValueError:
                    raise JobRequestError(
                        422, f"timeout must be a whole number of seconds from 1 to {self.jobs.max_timeout}, "
                             f"got {form['timeout']!r}", "timeout") from None
            job, _created = self.jobs.submit(self.identity, body)
        except (ParameterError, JobRequestError) as e:
            self._refuse(form, e.status, e.message, e.field, upload_fields)
            return
        self.audit_job(records, job)
        self.redirect(url_path_join(self.base_url, "jobs", job["id"]), status=303)

    def _refuse(self, form: dict[str, Any], status: int, message: str, field: str,
                upload_fields: list[dict[str, Any]] | None) -> None:
        self.log.info("job form of %s refused (%s, field %s): %s", self.identity.name, status, field, message)
        self.render_jobs(form, status=status, error={"message": message, "field": field or ""},
                         upload_fields=upload_fields)

    def _service_parameters(self, notebook: str):
        """The declared parameters of a registered service notebook, or None when it is not
        one (the manager then refuses the submission, naming the notebooks to choose from)."""
        if not any(n["notebook"] == notebook for n in self.jobs.service_notebooks()):
            return None
        return inspect_parameters(str(Path(self.stack_registry.notebooks_dir) / notebook))

    @staticmethod
    def _param_values(raw: dict[str, list[str]], declared) -> dict[str, str]:
        """Form text by parameter name: the last value (a checkbox sends ``false`` then ``true``),
        a JSON list for a multiple dataset select."""
        out: dict[str, str] = {}
        for name, values in raw.items():
            param = declared.get(name)
            if param is not None and param.type == "datasets":
                chosen = [v for v in values if v]
                out[name] = json.dumps(chosen) if chosen else ""
            else:
                out[name] = values[-1] if values else ""
        return out


class JobInspectPage(PageHandler):
    """``POST jobs/inspect``: the parameters of an uploaded notebook, for the form.

    Takes the notebook as the ``upload`` file of a multipart form; answers
    ``{"name", "fields", "html"}`` (``fields`` from :func:`~dass.jobs.params.form_fields`,
    ``html`` the form's inputs for them) or ``{"status", "message", "field"}`` with 422.
    """

    def post(self) -> None:
        files = [f for f in self.request.files.get("upload", []) if f.body]
        try:
            if not files:
                raise JobRequestError(422, "no notebook file in the request (multipart field 'upload')", "upload")
            if len(files[-1].body) > self.jobs.max_notebook_bytes:
                raise JobRequestError(
                    422, f"the notebook is larger than {self.jobs.max_notebook_bytes} bytes", "upload")
            try:
                text = files[-1].body.decode("utf-8")
            except UnicodeDecodeError:
                raise JobRequestError(422, "the uploaded file is not UTF-8 text: choose a .ipynb file",
                                      "upload") from None
            declared, _ = _upload_fields(text)
        except JobRequestError as e:
            self.write_json({"status": e.status, "message": e.message, "field": e.field}, e.status)
            return
        fields = form_fields(declared)
        proposals, _total = self.visible_datasets()
        template = self.settings["jinja2_env"].get_template("jobs.html")
        html = template.render(
            fragment=True, fields=fields, values={}, error=None, proposals=proposals,
            prefix="upload", base_url=self.base_url, version="", identity=self.identity,
        )
        self.write_json({"name": _safe_name(files[-1].filename), "fields": fields, "html": html.strip()})


# -- the page of one job ----------------------------------------------------------------------


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    except (ValueError, TypeError):
        return ""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min"


def _bytes(n: Any) -> str:
    try:
        size = float(n)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _notebook_label(source: str) -> str:
    kind, _, rest = (source or "").partition(":")
    return {"stack": rest, "upload": f"{rest} (uploaded)", "home": f"~/{rest}"}.get(kind, source)


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    row = dict(job)
    row["short"] = job["id"][:8]
    row["notebook_label"] = _notebook_label(job["notebook"])
    row["created"] = _when(job["created_at"])
    row["finished"] = job["status"] in FINISHED
    return row


class JobPage(PageHandler):
    """``GET jobs/{id}``: one job of the caller (404 for anyone else's)."""

    def get(self, job_id: str) -> None:
        job = self.jobs.get(self.identity, job_id)
        log_text, log_offset, _ = self.jobs.log_chunk(self.identity, job_id, 0)
        api = url_path_join(self.base_url, "api/jobs", job["id"]) + "/"
        outputs = [
            dict(o, url=api + "outputs/" + quote(o["path"]), size_text=_bytes(o.get("size")))
            for o in job["outputs"] or []
        ]
        finished = job["status"] in FINISHED
        row = _job_row(job)
        row.update(
            started=_when(job["started_at"]),
            ended=_when(job["finished_at"]),
            duration=_duration(job["started_at"], job["finished_at"]),
            parameters_json={k: json.dumps(v, ensure_ascii=False) for k, v in (job["parameters"] or {}).items()},
        )
        self.render_page(
            "job.html",
            job=row,
            job_api=api,
            log_text=log_text,
            log_offset=log_offset,
            outputs=outputs,
            finished=finished,
            cancellable=job["status"] in (Status.CREATED.value, Status.QUEUED.value, Status.IN_PROGRESS.value),
            has_notebook=finished and any(o["path"] == "executed.html" for o in outputs),
            finished_statuses=list(FINISHED),
        )


#: The page routes, relative to the service's ``base_url`` (``jobs/inspect`` before ``jobs/{id}``).
default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    ("jobs", JobsPage),
    ("jobs/inspect", JobInspectPage),
    (r"jobs/([0-9a-zA-Z]+)", JobPage),
]

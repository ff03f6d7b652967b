"""The job manager: submission, authorization, the queue, execution and results.

It runs inside the dass service. State lives in the service database (:class:`~.model.Job`);
a scheduling loop starts queued jobs up to ``max_concurrency``, polls running ones, enforces
timeouts and cancellations, and records results. After a restart it re-adopts runs whose
process is still alive, finishes those that ended while it was away from their
``result.json``, and re-queues only jobs whose process never started, so nothing runs twice.

Why one module: submission, reading, cancelling and the scheduling loop all change one job row
under the same status rules (:class:`~.model.Status`); split, each part would need the others'
private state. The pure parts live beside it: :mod:`.spec` (builders), :mod:`.params`
(parameters), :mod:`.executor` (where runs happen), :mod:`.runner` (the run itself).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Bool, Float, Integer, Type, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import DassError
from ..data.access import Identity
from ..data.catalog import Catalog, as_utc
from ..data.errors import DassDataError
from ..data.grants import JOB, Grants, new_job_token
from ..data.metadata_writer import reindex_dataset
from ..data.paths import state_dir
from ..data.storage import Storage
from ..stacks.registry import StackRegistry
from ..stacks.selection import SelectionError, validate_selection
from .executor import Executor, Handle, LocalExecutor, StartFailed
from .model import Job, JobSweep, Status, utcnow
from .spec import build_execution_spec, build_runner_spec

REQUEST_KEYS = ("notebook", "parameters", "datasets", "stack", "size", "timeout", "idempotency_key")
#: a sweep request: a job request and what varies (see :mod:`.sweep`)
SWEEP_KEYS = (*REQUEST_KEYS, "sweep", "parameter_sets")
NAME_OK = re.compile(r"^[\w. ()-]+\.ipynb$")


class JobRequestError(DassError):
    """A refused request: HTTP ``status``, the ``field`` at fault and a message saying what to fix."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


@dataclass
class NotebookChoice:
    source: str  # "stack:<path>" | "upload:<name>" | "home:<path>"
    text: str
    stack: str | None  # the stack a registered service notebook belongs to


class JobManager(LoggingConfigurable):
    """Accepts, queues, runs and records headless notebook jobs."""

    max_concurrency = Integer(
        2, help="Jobs run at the same time; more wait in the queue (status QUEUED)."
    ).tag(config=True)
    default_timeout = Integer(
        3600, help="Seconds a job may run when its submission names no timeout."
    ).tag(config=True)
    max_timeout = Integer(
        24 * 3600, help="The longest timeout (seconds) a submission may ask for."
    ).tag(config=True)
    cell_timeout = Integer(
        0, help="Seconds one notebook cell may run (0: only the job's timeout applies)."
    ).tag(config=True)
    poll_interval = Float(0.5, help="Seconds between two looks at the queue and the running jobs.").tag(
        config=True
    )
    jobs_dir = Unicode(help="Folder of the jobs' working directories. Default: <state>/jobs.").tag(config=True)
    results_prefix = Unicode(
        "results",
        help="""Folder below the repository root where results go (``<prefix>/job-<id>/``); it
        is indexed in the catalogue as the pseudo-proposal of that name.""",
    ).tag(config=True)
    home_dir_template = Unicode(
        "",
        help="""Home folder of a user's sessions, for notebooks submitted by their path in the
        home (``{username}`` is replaced by the hub name). Default (empty): the home of the
        user's account, as the local spawner has it (``<c.UserAccounts.homes_root>/<account>``).""",
    ).tag(config=True)
    max_notebook_bytes = Integer(5 * 1024**2, help="Largest notebook a job accepts (bytes).").tag(config=True)
    max_datasets = Integer(8, help="The most input datasets of one job.").tag(config=True)
    max_sweep_jobs = Integer(
        100,
        help="""The most elements (jobs) one parameter sweep (``POST api/sweeps``) may have: the
        product of the numbers of swept values, times the number of parameter sets. A larger
        sweep is refused (422) before anything is queued. On Slurm a sweep is one job array:
        keep this below the cluster's ``MaxArraySize`` (Slurm's default 1001).""",
    ).tag(config=True)
    memory_headroom_gib = Integer(
        2, help="GiB added to a size's memory for the runner and kernel (as for sessions)."
    ).tag(config=True)
    enforce_memory_limit = Bool(
        True, help="Apply the size's memory as RLIMIT_AS to the job's processes."
    ).tag(config=True)
    gateway_url = Unicode(
        help="""URL of the dass service (its data gateway) as jobs reach it; jobs read their inputs
        and write their results there with a token made for the job.

        Default: set by the dass service to the address it listens on.""",
    ).tag(config=True)
    token_grace_seconds = Integer(
        900,
        help="""Seconds a job's token stays valid after the job's timeout (it is revoked as soon
        as the job ends; this bounds a token whose end the service missed).""",
    ).tag(config=True)
    executor_class = Type(
        LocalExecutor,
        klass=Executor,
        help="""The executor running jobs: ``dass.jobs.executor.LocalExecutor`` (processes on this
        machine, the default), ``dass.jobs.container.ContainerExecutor`` (podman containers of
        the stack's image, as the user's account), ``dass.jobs.slurm.SlurmExecutor`` (``sbatch``
        on a Slurm cluster, see ``c.SlurmExecutor``) or
        ``dass.jobs.kubernetes.KubernetesExecutor`` (one Kubernetes Job per run, in the stack's
        image; set ``gateway_url`` to the service's address inside the cluster).""",
    ).tag(config=True)

    @default("jobs_dir")
    def _default_jobs_dir(self) -> str:
        return str(state_dir(self.config) / "jobs")

    def __init__(
        self,
        *,
        catalog: Catalog,
        storage: Storage,
        registry: StackRegistry,
        identity_for: Callable[[str], Awaitable[Identity]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.catalog = catalog
        self.storage = storage
        self.registry = registry
        self.identity_for = identity_for
        self.executor: Executor = self.executor_class(parent=self, on_exit=self._wake_threadsafe)
        self.grants = Grants(catalog.engine)
        self._sessions = sessionmaker(catalog.engine, expire_on_commit=False)
        self._running: dict[str, Handle] = {}
        self._notebook_params: dict[str, tuple[int, dict]] = {}
        self._killing: set[str] = set()
        self._timed_out: set[str] = set()
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------------------ helpers

    def _wake_threadsafe(self) -> None:
        """Wake the scheduling loop from any thread (a job process has ended)."""
        loop = getattr(self, "_loop_ref", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def _db(self) -> Session:
        return self._sessions()

    def home_of(self, owner: str) -> Path:
        """The home folder of hub user ``owner`` (``home_dir_template``, else their account's)."""
        if self.home_dir_template:
            return Path(self.home_dir_template.format(username=owner)).resolve()
        from ..data.accounts import UserAccounts

        return UserAccounts(parent=self).home_of(owner)

    def workdir(self, job_id: str) -> Path:
        return Path(self.jobs_dir) / job_id

    def service_notebooks(self, identity: Identity | None = None) -> list[dict[str, Any]]:
        """The stacks' registered service notebooks (``<stack>/service/*.ipynb`` below
        ``StackRegistry.notebooks_dir``, by default ``dass/notebooks/``),
        of the stacks ``identity`` may use (all when None)."""
        from .params import inspect_parameters

        out = []
        base = Path(self.registry.notebooks_dir)
        stacks = self.registry.for_identity(identity) if identity else self.registry.all_stacks.values()
        for stack in stacks:
            for nb in sorted((base / stack.name / "service").glob("*.ipynb")):
                rel = f"{stack.name}/service/{nb.name}"
                mtime = nb.stat().st_mtime_ns
                cached = self._notebook_params.get(rel)
                if cached is None or cached[0] != mtime:  # parse a notebook once per change
                    cached = self._notebook_params[rel] = (mtime, inspect_parameters(str(nb)))
                params = cached[1]
                out.append(
                    {"notebook": rel, "stack": stack.name, "parameters": [p.to_json() for p in params.values()]}
                )
        return out

    def _choose_notebook(self, spec: Any, owner: str) -> NotebookChoice:
        if isinstance(spec, str):
            base = Path(self.registry.notebooks_dir).resolve()
            path = (base / spec).resolve()
            parts = Path(spec).parts
            ok = (
                len(parts) == 3
                and parts[1] == "service"
                and parts[0] in self.registry.all_stacks
                and path.is_relative_to(base)
                and path.is_file()
            )
            if not ok:
                names = ", ".join(n["notebook"] for n in self.service_notebooks()) or "none"
                raise JobRequestError(
                    422, f"notebook {spec!r} is not a registered service notebook; choose one of: {names}", "notebook"
                )
            return NotebookChoice(f"stack:{spec}", self._read_limited(path, "notebook"), parts[0])
        if isinstance(spec, dict) and set(spec) <= {"upload", "name"} and "upload" in spec:
            name = spec.get("name") or "notebook.ipynb"
            if not isinstance(name, str) or not NAME_OK.match(name):
                raise JobRequestError(422, "notebook.name must be a file name ending in .ipynb", "notebook.name")
            content = spec["upload"]
            text = content if isinstance(content, str) else json.dumps(content)
            if len(text.encode()) > self.max_notebook_bytes:
                raise JobRequestError(
                    422,
                    f"notebook is larger than {self.max_notebook_bytes} bytes (c.JobManager.max_notebook_bytes)",
                    "notebook.upload",
                )
            return NotebookChoice(f"upload:{name}", text, None)
        if isinstance(spec, dict) and set(spec) == {"home"}:
            rel = spec["home"]
            home = self.home_of(owner)
            if not isinstance(rel, str) or not rel.endswith(".ipynb"):
                raise JobRequestError(422, "notebook.home must be a path ending in .ipynb inside your home", "notebook.home")
            path = (home / rel).resolve()
            if not path.is_relative_to(home):
                raise JobRequestError(403, "notebook.home must stay inside your home folder", "notebook.home")
            if not path.is_file():
                raise JobRequestError(422, f"notebook.home: there is no {rel} in your home folder", "notebook.home")
            return NotebookChoice(f"home:{rel}", self._read_limited(path, "notebook.home"), None)
        raise JobRequestError(
            422,
            'notebook must be a registered service notebook ("sem/service/image_summary.ipynb"), '
            '{"upload": <notebook JSON>, "name": "x.ipynb"} or {"home": "path/in/home.ipynb"}',
            "notebook",
        )

    def _read_limited(self, path: Path, field: str) -> str:
        if path.stat().st_size > self.max_notebook_bytes:
            raise JobRequestError(
                422, f"{field}: larger than {self.max_notebook_bytes} bytes (c.JobManager.max_notebook_bytes)", field
            )
        return path.read_text()

    # ------------------------------------------------------------------------------ submit

    def submit(self, identity: Identity, body: Any) -> tuple[dict[str, Any], bool]:
        """Validate a submission and queue it; returns (job, created).

        Nothing is queued unless every check passed. A repeated ``idempotency_key`` of the
        same user returns the job it created first (``created`` False).
        """
        key, request_sha = self._check_request(body, REQUEST_KEYS)
        if key is not None:
            existing = self._by_key(identity.name, key, request_sha)
            if existing is not None:
                return existing, False
        choice, declared = self._load_notebook(identity, body)
        today = dt.date.today()
        seen: dict[str, Any] = {}  # dataset records found visible, so each id is checked once
        values, selection = self._check_element(identity, body, choice, declared, body.get("parameters") or {},
                                                today, seen)
        timeout = self._check_timeout(body)
        job = self._new_job(identity, choice, values, selection, timeout, key=key, request_sha=request_sha,
                            created_at=utcnow())
        try:
            with self._db() as db, db.begin():
                db.add(job)
        except IntegrityError:  # the same key, submitted twice at the same moment
            shutil.rmtree(job.workdir, ignore_errors=True)
            existing = self._by_key(identity.name, key, request_sha)
            if existing is None:
                raise
            return existing, False
        self.log.info("job %s: queued for %s (%s, %s)", job.id, identity.name, job.stack, choice.source)
        self._wake.set()
        return job.to_json(), True

    def submit_sweep(self, identity: Identity, body: Any) -> tuple[dict[str, Any], bool]:
        """Validate a parameter sweep and queue all its elements; returns (sweep, created).

        The request is a job request with ``sweep`` and/or ``parameter_sets`` (see
        :mod:`.sweep`). Every element is checked like a single job before anything is queued;
        each becomes an ordinary job with the sweep's id and its index. A repeated
        ``idempotency_key`` returns the sweep it created first.
        """
        from .params import ParameterError
        from .sweep import expand_sweep

        key, request_sha = self._check_request(body, SWEEP_KEYS)
        if key is not None:
            existing = self._sweep_by_key(identity, key, request_sha)
            if existing is not None:
                return existing, False
        choice, declared = self._load_notebook(identity, body)
        try:
            elements = expand_sweep(body.get("parameters"), body.get("sweep"), body.get("parameter_sets"),
                                    max_elements=self.max_sweep_jobs)
        except ParameterError as e:
            raise JobRequestError(e.status, str(e), e.field) from None
        today = dt.date.today()
        seen: dict[str, Any] = {}
        checked = []
        for element in elements:
            try:
                checked.append(self._check_element(identity, body, choice, declared, element.parameters, today, seen))
            except JobRequestError as e:
                # say where the refused value is: a swept value, a parameter set (a value in it,
                # or one it lacks), else the same in every element (a fixed parameter, stack,
                # size) and said as for a job
                where = element.origin.get(e.field, "")
                if where.startswith("sweep."):
                    raise JobRequestError(e.status, f"{where}: {e.message}", where.split("[", 1)[0]) from None
                if element.parameter_set is not None and (where.startswith("parameter_sets") or
                                                          (not where and e.field in declared)):
                    raise JobRequestError(
                        e.status, f"sweep element {element.index} ({element.describe()}), from "
                                  f"parameter_sets[{element.parameter_set}]: {e.message}",
                        f"parameter_sets[{element.parameter_set}]",
                    ) from None
                raise
        timeout = self._check_timeout(body)
        sweep_id = uuid.uuid4().hex
        now = utcnow()
        sweep = JobSweep(
            id=sweep_id,
            owner=identity.name,
            notebook_source=choice.source,
            parameters=dict(body.get("parameters") or {}),
            axes=dict(body.get("sweep") or {}),
            parameter_sets=list(body.get("parameter_sets") or []),
            count=len(elements),
            idempotency_key=key,
            request_sha256=request_sha,
            created_at=now,
        )
        jobs = [
            self._new_job(identity, choice, values, selection, timeout, key=None, request_sha=None, created_at=now,
                          sweep_id=sweep_id, sweep_index=element.index)
            for element, (values, selection) in zip(elements, checked)
        ]
        try:
            with self._db() as db, db.begin():
                db.add(sweep)
                db.flush()
                db.add_all(jobs)
        except IntegrityError:  # the same key, submitted twice at the same moment
            for job in jobs:
                shutil.rmtree(job.workdir, ignore_errors=True)
            existing = self._sweep_by_key(identity, key, request_sha) if key is not None else None
            if existing is None:
                raise
            return existing, False
        self.log.info("sweep %s: %d jobs queued for %s (%s, %s)", sweep_id, len(jobs), identity.name,
                      jobs[0].stack, choice.source)
        self._wake.set()
        return self.get_sweep(identity, sweep_id), True

    def _check_request(self, body: Any, keys: tuple[str, ...]) -> tuple[str | None, str]:
        """The request's shape and idempotency key; returns (key, checksum of the request)."""
        if not isinstance(body, dict):
            raise JobRequestError(422, "the request body must be a JSON object", "body")
        unknown = sorted(set(body) - set(keys))
        if unknown:
            hint = "; a sweep is sent to POST api/sweeps" if set(unknown) & {"sweep", "parameter_sets"} else ""
            raise JobRequestError(
                422, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(keys)}{hint}", unknown[0]
            )
        key = body.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
            raise JobRequestError(422, "idempotency_key must be a string of 1 to 255 characters", "idempotency_key")
        return key, _request_sha256(body)

    def _load_notebook(self, identity: Identity, body: dict[str, Any]) -> tuple[NotebookChoice, dict]:
        """The chosen notebook and its declared parameters."""
        import nbformat

        from .params import inspect_parameters

        if "notebook" not in body:
            raise JobRequestError(422, "notebook is required", "notebook")
        choice = self._choose_notebook(body["notebook"], identity.name)
        try:
            nb = nbformat.reads(choice.text, as_version=4)
            nbformat.validate(nb)
        except Exception as e:  # nbformat raises several kinds
            raise JobRequestError(422, f"notebook is not a valid Jupyter notebook: {str(e).splitlines()[0]}", "notebook") from None
        return choice, inspect_parameters(nb)

    def _check_element(self, identity: Identity, body: dict[str, Any], choice: NotebookChoice, declared: dict,
                       parameters: Any, today: dt.date, seen: dict[str, Any]):
        """One job's parameters, datasets, stack and size, checked; returns (values, selection)."""
        from .params import ParameterError, validate_parameters

        def visible(dataset_id: str) -> bool:
            if dataset_id not in seen:
                seen.update(self.catalog.visible(identity, [dataset_id], today=today))
            return dataset_id in seen

        try:
            values, param_datasets = validate_parameters(parameters, declared, visible_dataset=visible)
        except ParameterError as e:
            raise JobRequestError(e.status, str(e), e.field) from None
        self._check_with_stack(body.get("stack") or choice.stack, values)
        datasets = body.get("datasets") or []
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise JobRequestError(422, 'datasets must be a list of dataset ids like "proposal/dataset"', "datasets")
        all_ids = list(dict.fromkeys([*datasets, *param_datasets]))
        try:
            selection = validate_selection(
                {"stack": body.get("stack") or choice.stack, "size": body.get("size"), "datasets": all_ids},
                identity,
                self.registry,
                self.catalog,
                max_datasets=self.max_datasets,
                today=today,
                known=seen,
            )
        except SelectionError as e:
            raise JobRequestError(403 if e.forbidden else 422, str(e), e.field) from None
        return values, selection

    def _check_timeout(self, body: dict[str, Any]) -> int:
        timeout = body.get("timeout", self.default_timeout)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= self.max_timeout:
            raise JobRequestError(
                422, f"timeout must be a whole number of seconds from 1 to {self.max_timeout}", "timeout"
            )
        return timeout

    def _new_job(self, identity: Identity, choice: NotebookChoice, values: dict[str, Any], selection: Any,
                 timeout: int, *, key: str | None, request_sha: str | None, created_at: dt.datetime,
                 sweep_id: str | None = None, sweep_index: int | None = None) -> Job:
        """A new QUEUED job row and its working folder (with the notebook)."""
        from ..data.metadata import sha256_bytes

        job_id = uuid.uuid4().hex
        workdir = self.workdir(job_id)
        workdir.mkdir(parents=True, mode=0o700)
        (workdir / "input.ipynb").write_text(choice.text)
        return Job(
            id=job_id,
            owner=identity.name,
            status=Status.QUEUED.value,
            notebook_source=choice.source,
            notebook_sha256=sha256_bytes(choice.text.encode()),
            parameters=values,
            datasets=[d.id for d in selection.datasets],
            stack=selection.stack.name,
            size=selection.size.name,
            timeout_seconds=timeout,
            idempotency_key=key,
            request_sha256=request_sha,
            created_at=created_at,
            workdir=str(workdir),
            outputs=[],
            sweep_id=sweep_id,
            sweep_index=sweep_index,
        )

    def _check_with_stack(self, stack: str | None, values: dict[str, Any]) -> None:
        """Run the stack's own checks of parameter values (e.g. an STM processing recipe),
        so a value the notebook would refuse is refused now, with 422 naming the parameter."""
        for name, check in self.registry.parameter_checks(stack).items():
            if name in values:
                try:
                    check(values[name])
                except ValueError as e:
                    raise JobRequestError(422, f"parameter '{name}': {e}", name) from None

    def _by_key(self, owner: str, key: str, request_sha: str) -> dict[str, Any] | None:
        """The job ``owner`` created with ``key``; a reuse of the key with another request is
        refused (422), as the IETF Idempotency-Key draft answers."""
        with self._db() as db:
            job = db.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))
            if job is None:
                return None
            if job.request_sha256 and job.request_sha256 != request_sha:
                raise JobRequestError(
                    422,
                    f"idempotency_key {key!r} was already used for a different request (job {job.id}); "
                    "send the same request again, or use a new key for a new job",
                    "idempotency_key",
                )
            return job.to_json()

    def _sweep_by_key(self, identity: Identity, key: str, request_sha: str) -> dict[str, Any] | None:
        """The sweep ``identity`` created with ``key`` (the same rules as :meth:`_by_key`)."""
        with self._db() as db:
            sweep = db.scalar(select(JobSweep).where(JobSweep.owner == identity.name, JobSweep.idempotency_key == key))
            if sweep is None:
                return None
            if sweep.request_sha256 and sweep.request_sha256 != request_sha:
                raise JobRequestError(
                    422,
                    f"idempotency_key {key!r} was already used for a different request (sweep {sweep.id}); "
                    "send the same request again, or use a new key for a new sweep",
                    "idempotency_key",
                )
        return self.get_sweep(identity, sweep.id)

    # ------------------------------------------------------------------------------ read

    def _visible_job(self, db: Session, identity: Identity, job_id: str) -> Job:
        job = _owned(db, Job, identity, job_id)
        if job is None:  # the same answer for "missing" and "not yours": ids of others are not revealed
            raise JobRequestError(404, f"job {job_id} not found", "id")
        return job

    def get(self, identity: Identity, job_id: str) -> dict[str, Any]:
        with self._db() as db:
            return self._visible_job(db, identity, job_id).to_json()

    def _visible_sweep(self, db: Session, identity: Identity, sweep_id: str) -> JobSweep:
        sweep = _owned(db, JobSweep, identity, sweep_id)
        if sweep is None:
            raise JobRequestError(404, f"sweep {sweep_id[:64]} not found", "sweep")
        return sweep

    def get_sweep(self, identity: Identity, sweep_id: str) -> dict[str, Any]:
        """A sweep: its request, its elements' job ids (by index) and how many are in each status."""
        with self._db() as db:
            sweep = self._visible_sweep(db, identity, sweep_id)
            rows = db.execute(select(Job.id, Job.status).where(Job.sweep_id == sweep.id).order_by(Job.sweep_index)).all()
        return {**_sweep_json(sweep, Counter(status for _, status in rows)), "jobs": [job_id for job_id, _ in rows]}

    def list_sweeps(self, identity: Identity, *, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The sweeps ``identity`` may see (its own; an admin's: all), newest first, each as
        :meth:`get_sweep` describes it but without its jobs' ids (``GET api/jobs?sweep=`` lists
        them); and how many there are in all."""
        query = select(JobSweep)
        if not identity.admin:
            query = query.where(JobSweep.owner == identity.name)
        with self._db() as db:
            total = db.scalar(select(func.count()).select_from(query.subquery()))
            sweeps = list(db.scalars(query.order_by(JobSweep.created_at.desc(), JobSweep.id).limit(limit).offset(offset)))
            counts: dict[str, Counter[str]] = {s.id: Counter() for s in sweeps}
            if sweeps:
                counted = db.execute(select(Job.sweep_id, Job.status, func.count())
                                     .where(Job.sweep_id.in_(list(counts))).group_by(Job.sweep_id, Job.status))
                for sweep_id, status, n in counted:
                    counts[sweep_id][status] = n
            return [_sweep_json(s, counts[s.id]) for s in sweeps], int(total or 0)

    def list_jobs(
        self, identity: Identity, *, status: str | None = None, limit: int = 100, offset: int = 0,
        sweep: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """The jobs ``identity`` may see, newest first; of one sweep (in its order) when ``sweep``."""
        query = select(Job)
        if not identity.admin:
            query = query.where(Job.owner == identity.name)
        if sweep:
            with self._db() as db:
                self._visible_sweep(db, identity, sweep)
            query = query.where(Job.sweep_id == sweep)
        if status:
            names = [s.strip().upper() for s in status.split(",") if s.strip()]
            bad = [n for n in names if n not in Status.__members__]
            if bad:
                raise JobRequestError(
                    400, f"unknown status {', '.join(bad)}; use one of {', '.join(Status.__members__)}", "status"
                )
            query = query.where(Job.status.in_(names))
        with self._db() as db:
            total = db.scalar(select(func.count()).select_from(query.subquery()))
            order = (Job.sweep_index,) if sweep else (Job.created_at.desc(), Job.sweep_index)
            rows = db.scalars(query.order_by(*order).limit(limit).offset(offset))
            return [j.to_json() for j in rows], int(total or 0)

    def log_chunk(self, identity: Identity, job_id: str, offset: int = 0, limit: int = 1024**2) -> tuple[str, int, dict]:
        """Text of the job's log from byte ``offset``; returns (text, next offset, job)."""
        with self._db() as db:
            job = self._visible_job(db, identity, job_id)
            data = job.to_json()
        handle = self._stored_handle(job)
        if handle is None:  # not started yet
            return "", offset, data
        chunk = _whole_utf8(self.executor.read_log(handle, offset, limit))  # a character cut at the end is sent with the next chunk
        return chunk.decode("utf-8", "replace"), offset + len(chunk), data

    def open_output(self, identity: Identity, job_id: str, path: str):
        """An open binary file of one of the job's results (read from repository storage)."""
        with self._db() as db:
            job = self._visible_job(db, identity, job_id)
        known = {o["path"] for o in job.outputs or []}
        if path not in known:
            raise JobRequestError(404, f"job {job_id} has no output {path!r}; see its outputs list", "path")
        fs = self.storage.fs
        url = f"{job.results_url.rstrip('/')}/{path}"
        return fs.open(_strip_protocol(url, self.storage), "rb")

    # ------------------------------------------------------------------------------ cancel

    def cancel(self, identity: Identity, job_id: str) -> dict[str, Any]:
        with self._db() as db, db.begin():
            job = self._visible_job(db, identity, job_id)
            status = Status(job.status)
            if status.finished or status == Status.STOPPING:
                raise JobRequestError(409, f"job {job_id} is {job.status}: nothing to cancel", "id")
            self._cancel_row(job, identity)
            data = job.to_json()
        self.log.info("job %s: cancel requested by %s", job_id, identity.name)
        self._wake.set()
        return data

    def cancel_sweep(self, identity: Identity, sweep_id: str) -> dict[str, Any]:
        """Cancel every element of a sweep that has not finished; returns the sweep."""
        with self._db() as db, db.begin():
            sweep = self._visible_sweep(db, identity, sweep_id)
            open_ = [Status.CREATED.value, Status.QUEUED.value, Status.IN_PROGRESS.value]
            jobs = list(db.scalars(select(Job).where(Job.sweep_id == sweep.id, Job.status.in_(open_))))
            if not jobs:
                raise JobRequestError(409, f"sweep {sweep_id} has no job left to cancel: all have finished "
                                           "or are stopping", "id")
            for job in jobs:
                self._cancel_row(job, identity)
        self.log.info("sweep %s: cancel of %d jobs requested by %s", sweep_id, len(jobs), identity.name)
        self._wake.set()
        return self.get_sweep(identity, sweep_id)

    @staticmethod
    def _cancel_row(job: Job, identity: Identity) -> None:
        """A queued job stops now; a running one is stopped by the next scheduling tick."""
        job.cancelled_by = identity.name
        if Status(job.status) in (Status.QUEUED, Status.CREATED):
            job.status = Status.STOPPED.value
            job.reason = f"cancelled by {identity.name} before it started"
            job.finished_at = utcnow()
        else:
            job.status = Status.STOPPING.value

    # ------------------------------------------------------------------------------ the loop

    def start(self) -> None:
        """Start the scheduling loop in the running event loop."""
        self._loop_ref = asyncio.get_running_loop()
        self.reconcile()
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop scheduling; running jobs go on (they are re-adopted at the next start)."""
        self.executor.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad tick must not stop the queue
                self.log.exception("jobs: scheduling failed; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass

    def reconcile(self) -> None:
        """After a (re)start: adopt live runs, finish ended ones, re-queue never-started ones."""
        with self._db() as db, db.begin():
            for job in db.scalars(select(Job).where(Job.status.in_((Status.IN_PROGRESS.value, Status.STOPPING.value)))):
                if job.sweep_id is None:
                    handle = self.executor.adopt(job.id, job.workdir, self._stored_handle(job))
                else:
                    handle = self.executor.adopt_element(job.id, job.workdir, self._stored_handle(job),
                                                         job.sweep_id, job.sweep_index or 0)
                if handle is None:
                    self.log.warning("job %s: was starting when the service stopped; queued again", job.id)
                    job.status, job.started_at = Status.QUEUED.value, None
                    continue
                job.executor_handle = handle.to_json()
                if self.executor.status(handle) is None:
                    self.log.info("job %s: re-adopted its running %s run %s", job.id, handle.executor, handle.state)
                    self._running[job.id] = handle
                else:
                    self._finish(db, job, -1, handle)

    def _stored_handle(self, job: Job) -> Handle | None:
        """The handle kept in the job's row (rows of older versions kept only a pid)."""
        handle = Handle.from_json(job.id, job.executor_handle)
        if handle is None and job.pid:
            handle = Handle(job_id=job.id, executor="local", state={"pid": job.pid, "workdir": job.workdir})
        return handle

    async def tick(self) -> None:
        if self._running:
            await self.executor.refresh(list(self._running.values()))
        for job_id, handle in list(self._running.items()):
            code = self.executor.status(handle)
            with self._db() as db, db.begin():
                job = db.get(Job, job_id)
                if code is None:
                    await self._watch(job, handle)
                    continue
                self._running.pop(job_id, None)
                self._finish(db, job, code, handle)
        while len(self._running) < self.max_concurrency:
            with self._db() as db:
                job = db.scalar(
                    select(Job).where(Job.status == Status.QUEUED.value)
                    .order_by(Job.created_at, Job.sweep_index).limit(1)
                )
                jobs = [job] if job is not None else []
                if job is not None and job.sweep_id is not None:
                    # the queued elements of its sweep: all of them where the back end queues
                    # a sweep itself (one Slurm job array), else as many as may run now
                    free = None if self.executor.sweep_at_once else self.max_concurrency - len(self._running)
                    jobs = list(db.scalars(
                        select(Job).where(Job.sweep_id == job.sweep_id, Job.status == Status.QUEUED.value)
                        .order_by(Job.sweep_index).limit(free)
                    ))
            if not jobs:
                break
            if not await self._start(jobs):
                break

    async def _watch(self, job: Job, handle: Handle) -> None:
        if job.id in self._killing:
            return
        elapsed = (utcnow() - as_utc(job.started_at)).total_seconds() if job.started_at else 0
        if job.status == Status.STOPPING.value:
            self._kill_later(job.id, handle)
        elif elapsed > job.timeout_seconds:
            self.log.warning("job %s: timed out after %s s", job.id, job.timeout_seconds)
            self._timed_out.add(job.id)
            self._kill_later(job.id, handle)

    def _kill_later(self, job_id: str, handle: Handle) -> None:
        self._killing.add(job_id)

        async def kill() -> None:
            try:
                await self.executor.cancel(handle)
            finally:
                self._killing.discard(job_id)
                self._wake.set()

        asyncio.ensure_future(kill())

    async def _start(self, jobs: list[Job]) -> bool:
        """Start queued jobs of one owner (one job, or elements of one sweep, which the executor
        gets together); False when they must wait (the hub cannot be asked now)."""
        owner = jobs[0].owner
        try:
            identity = await self.identity_for(owner)
        except Exception as e:
            self.log.warning("job %s: cannot look up %s on the hub (%s); will retry", jobs[0].id, owner, e)
            return False
        specs = []
        for queued in jobs:
            with self._db() as db, db.begin():  # one transaction each: _prepare writes grants
                job = db.get(Job, queued.id)
                if job.status != Status.QUEUED.value:
                    continue
                try:
                    exec_spec = self._prepare(job, identity)
                except (JobRequestError, SelectionError, DassDataError, OSError) as e:
                    job.status, job.reason, job.finished_at = Status.FAILED.value, _one_line(str(e)), utcnow()
                    self.log.warning("job %s: cannot start: %s", job.id, e)
                    continue
                job.status, job.started_at = Status.IN_PROGRESS.value, utcnow()
                specs.append(exec_spec)
        if not specs:
            return True
        try:
            if jobs[0].sweep_id is None:
                outcomes: list[Handle | DassError] = [await self.executor.start(specs[0])]
            else:
                outcomes = await self.executor.start_sweep(specs)
        except DassError as e:  # refused: the jobs fail with its message
            outcomes = [e] * len(specs)
        except Exception as e:  # not dass's own error (an OS error, a bug): the jobs fail, said why
            self.log.exception("job %s: the %s executor failed while starting it", specs[0].job_id, self.executor.name)
            outcomes = [StartFailed.of(self.executor.name, e)] * len(specs)
        for spec, outcome in zip(specs, outcomes):
            if isinstance(outcome, Handle):
                with self._db() as db, db.begin():
                    db.get(Job, spec.job_id).executor_handle = outcome.to_json()
                self._running[spec.job_id] = outcome
                continue
            # refused where it runs (e.g. by the cluster): a failed job, said why
            self.log.error("job %s: the %s executor could not start it: %s", spec.job_id, self.executor.name, outcome)
            with self._db() as db, db.begin():
                row = db.get(Job, spec.job_id)
                row.status, row.reason, row.finished_at = Status.FAILED.value, _one_line(outcome.user_message), utcnow()
                self._end_access(row)
        return True

    def _prepare(self, job: Job, identity: Identity):
        """Check access again and write the runner's spec; returns the execution spec."""
        try:
            selection = validate_selection(
                {"stack": job.stack, "size": job.size, "datasets": job.datasets},
                identity,
                self.registry,
                self.catalog,
                max_datasets=max(self.max_datasets, len(job.datasets)),
            )
        except SelectionError as e:
            raise JobRequestError(403, f"access checked again at start: {e}") from None
        records = list(selection.datasets)
        derived_name = f"job-{job.id}"
        groups = sorted({g for r in records for g in r.access_groups})
        notebook_name = job.notebook_source.split(":", 1)[1].rsplit("/", 1)[-1]
        if not self.gateway_url:
            raise JobRequestError(503, "the job service does not know its own address (c.JobManager.gateway_url)")
        runner_spec = build_runner_spec(
            job=job.to_json(),
            notebook="input.ipynb",
            datasets=[
                {"id": r.id, "proposal": r.proposal, "name": r.name, "title": r.title, "metadata": r.metadata}
                for r in records
            ],
            gateway_url=self.gateway_url,
            stack_url=selection.stack.url,
            derived={
                "proposal": self.results_prefix,
                "name": derived_name,
                "title": f"Results of job {job.id[:8]}: {notebook_name}",
                "access_groups": groups,
                "access_users": [job.owner],
                "licence": "CC-BY-4.0",
            },
            size=selection.size,
            cell_timeout=self.cell_timeout or None,
        )
        spec_path = Path(job.workdir) / "spec.json"
        fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(runner_spec, f, indent=1, default=str)
        # the job runs as its owner's Unix account (created at first use), in a folder that is
        # theirs; the view of the inputs below stays the platform's (read-only for them)
        from ..data.accounts import UserAccounts

        account = UserAccounts(parent=self).ensure(job.owner)
        workdir = Path(job.workdir)
        for path in (workdir, *workdir.iterdir()):
            account.chown(path, recursive=path.is_dir() and path.name != "datasets")
        if self.storage.is_local and self.executor.shares_files:
            # a read-only view of the inputs the service owns (hard links, no copy); anything
            # else the runner fetches through the gateway with the job's token
            from ..data.mount import mount_datasets

            mount_datasets(self.storage, records, Path(job.workdir))
        # the job's own token: reads its inputs, writes its results, until it ends
        token = new_job_token()
        self.grants.put(
            token, kind=JOB, owner=job.owner, ref=job.id,
            read=[r.id for r in records], write=[f"{self.results_prefix}/{derived_name}"],
            expires_at=utcnow() + dt.timedelta(seconds=job.timeout_seconds + self.token_grace_seconds),
        )
        base_env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
        if self.storage.is_local and self.executor.shares_files:  # dass:// reads take the file handoff
            from ..data.localfiles import SOCKET_ENV, socket_name

            base_env[SOCKET_ENV] = socket_name(self.config)
        return build_execution_spec(
            job_id=job.id,
            workdir=job.workdir,
            stack=selection.stack,
            size=selection.size,
            timeout_seconds=job.timeout_seconds,
            base_env=base_env,
            memory_headroom_bytes=self.memory_headroom_gib * 1024**3,
            enforce_memory_limit=self.enforce_memory_limit,
            gateway_url=self.gateway_url,
            token=token,
            run_as=None if account.is_platform else account.name,
            groups=tuple(identity.groups),
            owner=job.owner,
            sweep_id=job.sweep_id or "",
            sweep_index=job.sweep_index,
        )

    def store_result(self, job_id: str, doc: dict[str, Any]) -> None:
        """Keep the ``result.json`` a job's runner sent (``PUT api/jobs/<id>/result``) where
        :meth:`load_result` reads it."""
        path = self._result_path(job_id)
        storage = self.storage
        with storage.translate_errors(f"writing the result of job {job_id}"):
            if storage.is_local:
                storage.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            storage.fs.pipe_file(path, json.dumps(doc, indent=2, default=str).encode())

    def _end_access(self, job: Job) -> None:
        """Revoke the job's token and remove the view of its inputs (the job has ended)."""
        try:
            self.grants.revoke(kind=JOB, ref=job.id)
        except DassDataError as e:  # the token still expires at its time
            self.log.error("job %s: its token could not be revoked now: %s", job.id, e)
        view = Path(job.workdir) / "datasets"
        if view.is_dir() and not view.is_symlink():
            from ..data.mount import mount_datasets

            try:
                mount_datasets(self.storage, [], Path(job.workdir))
            except (OSError, DassDataError) as e:
                self.log.warning("job %s: could not remove the view of its inputs: %s", job.id, e)

    def _result_path(self, job_id: str) -> str:
        """Where the runner writes the run's ``result.json`` in repository storage (a hidden
        folder beside the results, which the catalogue does not index)."""
        return self.storage.join(self.results_prefix, ".runs", f"job-{job_id}.json")

    def load_result(self, job: Job, handle: Handle | None) -> dict[str, Any] | None:
        """The run's result: read from repository storage, wherever the run ran; else what the
        executor kept when the runner could not write to storage (its reason is in there)."""
        path = self._result_path(job.id)
        try:
            fs = self.storage.fs
            fs.invalidate_cache(path.rsplit("/", 1)[0])
            doc = json.loads(fs.cat_file(path)) if fs.exists(path) else None
        except (OSError, ValueError) as e:
            self.log.warning("job %s: result in storage unreadable (%s)", job.id, e)
            doc = None
        if not isinstance(doc, dict):
            doc = self.executor.local_result(handle, job.workdir)
        return doc

    def _finish(self, db: Session, job: Job, code: int, handle: Handle | None = None) -> None:
        result = self.load_result(job, handle)
        if job.status == Status.STOPPING.value:
            job.status = Status.STOPPED.value
            job.reason = f"cancelled by {job.cancelled_by or 'an administrator'}"
        elif job.id in self._timed_out:
            self._timed_out.discard(job.id)
            job.status = Status.FAILED.value
            job.reason = f"timed out after {job.timeout_seconds} s (the job's timeout)"
        elif result:
            job.status = Status.COMPLETED.value if result.get("status") == "COMPLETED" else Status.FAILED.value
            job.reason = result.get("reason")
        else:
            job.status = Status.FAILED.value
            job.reason = f"the job's process ended (exit status {code}) without a result; see the job's log"
        job.finished_at = utcnow()
        self._end_access(job)
        if result and result.get("results_url"):
            # where the results are is the service's to say, never the job's
            job.results_url = self.storage.url_of(self.storage.join(self.results_prefix, f"job-{job.id}"))
            job.outputs = result.get("outputs") or []
            job.derived_dataset = self._register(job)
        self.log.info("job %s: %s%s", job.id, job.status, f" ({job.reason})" if job.reason else "")

    def _register(self, job: Job) -> str | None:
        """Index the job's results in the catalogue as a derived dataset."""
        dataset_id = f"{self.results_prefix}/job-{job.id}"
        try:
            report = reindex_dataset(self.storage, self.catalog, self.results_prefix, f"job-{job.id}")
        except DassDataError as e:
            self.log.error("job %s: results not indexed: %s", job.id, e)
            return None
        for err in report.errors:  # only this dataset's
            self.log.error("job %s: results metadata rejected: %s", job.id, err)
            return None
        return dataset_id if self.catalog.get(dataset_id) else None



def _whole_utf8(chunk: bytes) -> bytes:
    """``chunk`` without a UTF-8 character cut off at its end (at most 3 bytes held back)."""
    for cut in range(1, min(4, len(chunk)) + 1):
        byte = chunk[-cut]
        if byte < 0x80:  # ASCII: nothing is cut
            return chunk
        if byte >= 0xC0:  # the lead byte of the last character
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return chunk if cut >= need else chunk[:-cut]
    return chunk


def _request_sha256(body: Any) -> str:
    """Checksum of a job request, its idempotency key left out (canonical JSON)."""
    import hashlib

    doc = {k: v for k, v in body.items() if k != "idempotency_key"} if isinstance(body, dict) else body
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _sweep_json(sweep: JobSweep, counts: Counter[str]) -> dict[str, Any]:
    """A sweep's request and ``counts``, how many of its jobs are in each status."""
    return {
        "id": sweep.id,
        "owner": sweep.owner,
        "notebook": sweep.notebook_source,
        "parameters": sweep.parameters,
        "sweep": sweep.axes,
        "parameter_sets": sweep.parameter_sets,
        "count": sweep.count,
        "created_at": as_utc(sweep.created_at).isoformat(),
        "idempotency_key": sweep.idempotency_key,
        "counts": {**{s.value: 0 for s in Status}, **counts},
        "finished": all(Status(status).finished for status, n in counts.items() if n),
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _strip_protocol(url: str, storage: Storage) -> str:
    return type(storage.fs)._strip_protocol(url)


def _owned(db: Session, model: type, identity: Identity, ident: str) -> Any:
    """The row of ``model`` (a job or a sweep) with id ``ident`` when ``identity`` may see it
    (its owner, or an admin); None when it is missing, not theirs or not an id at all."""
    row = db.get(model, ident) if re.fullmatch(r"[0-9a-f]{32}", ident or "") else None
    return row if row is not None and (identity.admin or row.owner == identity.name) else None

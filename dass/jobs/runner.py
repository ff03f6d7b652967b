"""Run one headless job: ``python -m dass.jobs.runner WORKDIR``.

Why one module: this is the whole life of one job process, read top to bottom in the order it
happens (the steps below); it imports only the data layer and papermill, so every executor
(local, container, Slurm, Kubernetes) runs the same file.

The dass service's executor starts this module as a process of its own (its own session and
process group, ``cwd=WORKDIR``) after writing ``WORKDIR/spec.json`` and the notebook. The
runner then:

1. writes ``runner.json`` ``{"pid", "started"}`` at once, so the service knows it started;
2. logs to ``job.log`` (UTC timestamps, one line per record, flushed at once), including the
   notebook's stdout and stderr (papermill's ``log_output``) and ``cell 3/7`` per cell;
3. creates ``output/`` (``$DASS_OUTPUT_DIR``), takes the job's datasets under
   ``datasets/<proposal>/<dataset>`` (the read-only view the service made, or else a copy
   fetched through the data gateway with the job's token), writes the manifest
   ``.dass/session.json`` (``$DASS_SESSION_MANIFEST``) so that ``dass.data.datasets()`` works
   in the notebook, sets ``$DASS_JOB_ID``, and checksums every input file;
4. runs the notebook with papermill into ``executed.ipynb`` (saved after every cell);
5. renders ``executed.html`` (also from a partly executed notebook);
6. writes the derived dataset ``results/job-<id>`` through the data gateway (``dass://``, with
   the job's own token ``$DASS_TOKEN``; the job never holds a storage credential), for
   completed and failed runs alike:
   ``input.ipynb``, ``executed.ipynb``, ``executed.html``, ``output/…``, ``job.log``, then
   ``ro-crate-metadata.json`` (:mod:`dass.jobs.provenance`), then ``dataset.json`` last (its
   presence marks a complete dataset for the catalogue); then removes the dataset mounts;
7. sends ``result.json`` to the service (``PUT api/jobs/<id>/result``, with the same token),
   which keeps it wherever the run ran, then writes it last of all into ``WORKDIR``, atomically, and
   exits 0 (``COMPLETED``) or 1 (``FAILED``).

``result.json``::

    {"status": "COMPLETED" | "FAILED",
     "reason": null | "cell 4 raised ValueError: bad value",
     "started": "2026-05-01T10:00:00+00:00", "finished": "…",
     "results_url": "dass://results/job-<id>" | null (when it could not be written),
     "outputs": [{"path": "output/result.json", "sha256": "<64 hex>", "size": 123}, …],
     "failed_cell": 4 | null}

``outputs`` lists every file written to the results folder (``dataset.json`` included).

Cells are numbered as the executed notebook shows them (``In [4]``): the code cells that run,
counted from 1, papermill's injected-parameters cell included. Failure reasons are one line,
written for the job's owner: ``cell 4 raised ValueError: bad value``, ``the kernel died while
running cell 4 (out of memory or killed)``, ``cell 4 timed out after 600 s``, the text of a
:class:`~dass.data.errors.StorageError`, or ``internal error: <type>: <message>`` (the
traceback is only in ``job.log``).

SIGTERM (or SIGINT) ends the runner at once: it kills its kernel and exits with status 143
(130) without writing ``result.json``; the service records the job as stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .kernels import hand_over, kernel_manager_class

from ..errors import DassError

__all__ = [
    "COMPLETED",
    "FAILED",
    "JobFailed",
    "CellProgress",
    "build_derived_metadata",
    "describe_failure",
    "load_result",
    "run",
    "main",
]

# named explicitly: as ``python -m`` this module's __name__ is "__main__"
log = logging.getLogger("dass.jobs.runner")

SPEC_FILE = "spec.json"
RUNNER_FILE = "runner.json"
RESULT_FILE = "result.json"
LOG_FILE = "job.log"
#: ``python -m dass.jobs.runner WORKDIR --log-stdout``: the log goes to standard output too
LOG_STDOUT_FLAG = "--log-stdout"
EXECUTED_NOTEBOOK = "executed.ipynb"
EXECUTED_HTML = "executed.html"
OUTPUT_DIR = "output"
MANIFEST_FILE = ".dass/session.json"
METADATA_FILE = "dataset.json"
#: Environment variables the runner sets for the kernel.
OUTPUT_ENV = "DASS_OUTPUT_DIR"
JOB_ID_ENV = "DASS_JOB_ID"
#: the job's own token for the data gateway (reads its inputs, writes its results)
TOKEN_ENV = "DASS_TOKEN"
#: how long the runner keeps trying to reach the data gateway while it cannot (the service
#: restarting) before the job fails; the first retry comes after 0.5 s, then twice as long,
#: at most 10 s apart
GATEWAY_RETRY_SECONDS = 300.0

COMPLETED = "COMPLETED"
FAILED = "FAILED"

_CHUNK = 1024 * 1024
_MAX_REASON = 500
_QUIET_LOGGERS = ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "asyncio", "traitlets", "PIL")


class JobFailed(DassError):
    """A run failed for a reason that is already worded for the job's owner."""

    def __init__(self, reason: str, failed_cell: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failed_cell = failed_cell


# ---------------------------------------------------------------------------------------------
# pure helpers


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _one_line(text: Any) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def hide_paths(text: str, places: Mapping[str, str]) -> str:
    """``text`` with the platform's internal locations replaced by names a user understands.

    The job's log and its reason are shown to its owner: they must not reveal where the
    platform keeps its state or its repository.

    Parameters
    ----------
    text : str
        A log line, a traceback, a reason.
    places : mapping
        Location (a folder or URL) -> what to write instead, e.g.
        ``{"/srv/dass/jobs/ab12": "<job folder>", "file:///srv/dass/repository": "<repository>"}``.
        Longer locations are replaced first, so a folder inside another keeps its own name.

    Returns
    -------
    str

    Examples
    --------
    >>> hide_paths("cannot write /srv/repo/results/job-1/x.csv", {"/srv/repo": "<repository>"})
    'cannot write <repository>/results/job-1/x.csv'
    """
    for place in sorted((p for p in places if p and p not in ("/", ".")), key=len, reverse=True):
        text = text.replace(place, places[place])
    return text


def internal_places(workdir: Path | None, spec: Mapping[str, Any] | None) -> dict[str, str]:
    """The internal locations of a run (job folder, state folder, repository) for
    :func:`hide_paths`."""
    places: dict[str, str] = {}
    state = os.environ.get("DASS_STATE_DIR")
    if state:
        places[str(Path(state).resolve())] = "<state>"
        places[state.rstrip("/")] = "<state>"
    if workdir is not None:
        places[str(workdir)] = "<job folder>"
    return places


def describe_failure(
    exc: BaseException,
    *,
    cell: int | None = None,
    cell_timeout: float | None = None,
    kernel_exit: int | None = None,
) -> str:
    """The one-line, user-facing reason of a failed run.

    Parameters
    ----------
    exc : BaseException
        What ended the run.
    cell : int, optional
        Number of the cell that was running (see the module docstring).
    cell_timeout : float, optional
        The per-cell limit in seconds, for timeouts.

    Returns
    -------
    str

    Examples
    --------
    >>> describe_failure(ValueError("boom"))
    'internal error: ValueError: boom'
    >>> from nbclient.exceptions import DeadKernelError
    >>> describe_failure(DeadKernelError("Kernel died"), cell=4)
    'the kernel died while running cell 4 (out of memory or killed)'
    """
    return _one_line(_reason(exc, cell, cell_timeout, kernel_exit))


def _kernel_death(kernel_exit: int | None) -> str:
    """Why a kernel ended, from its exit status (negative: the signal that killed it)."""
    if kernel_exit is None or kernel_exit == -signal.SIGKILL:
        return "out of memory or killed"
    if kernel_exit < 0:
        try:
            name = signal.Signals(-kernel_exit).name
        except ValueError:
            name = f"signal {-kernel_exit}"
        return f"killed by {name}"
    return f"the kernel process exited by itself with status {kernel_exit}, e.g. os._exit() or sys.exit() in the notebook"


def _reason(exc: BaseException, cell: int | None, cell_timeout: float | None, kernel_exit: int | None = None) -> str:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from ..data.errors import DassDataError

    where = f"cell {cell}" if cell else "a cell"
    if isinstance(exc, JobFailed):
        return exc.reason
    if isinstance(exc, PapermillExecutionError):
        value = str(exc.evalue or "").strip()
        return f"{where} raised {exc.ename}: {value}" if value else f"{where} raised {exc.ename}"
    if isinstance(exc, DeadKernelError):
        if cell:
            return f"the kernel died while running cell {cell} ({_kernel_death(kernel_exit)})"
        return f"the kernel died before running any cell ({_kernel_death(kernel_exit)})"
    if isinstance(exc, CellTimeoutError):
        if "IOPub" in str(exc):
            return f"{where} timed out waiting for the kernel's output"
        if cell_timeout:
            return f"{where} timed out after {cell_timeout:g} s"
        return f"{where} timed out"
    if isinstance(exc, RuntimeError) and "Kernel died" in str(exc):  # jupyter_client, at start
        return "the kernel died while starting (out of memory or killed)"
    if isinstance(exc, DassDataError):
        return str(exc)
    message = str(exc).strip()
    return f"internal error: {type(exc).__name__}: {message}" if message else f"internal error: {type(exc).__name__}"


def build_derived_metadata(
    spec: Mapping[str, Any],
    outputs: list[Mapping[str, Any]],
    today: dt.date,
    *,
    status: str = COMPLETED,
    reason: str | None = None,
) -> dict[str, Any]:
    """The ``dataset.json`` (schema ``dass.dataset/1``) of a job's derived dataset.

    Parameters
    ----------
    spec : mapping
        The job's ``spec.json``.
    outputs : list of dict
        ``{"path", "sha256", "size"}`` of every file of the results folder written before
        ``dataset.json``; ``sha256`` as 64 hex digits or ``sha256:<hex>``.
    today : datetime.date
        ``dates.created``.
    status : {"COMPLETED", "FAILED"}
        How the run ended (``domain.job.status``).
    reason : str, optional
        Why it failed, for the description.

    Returns
    -------
    dict
        Ready for :func:`dass.data.metadata.dump_metadata`; it passes
        :func:`dass.data.metadata.parse_metadata` with ``proposal=derived["proposal"]``.
    """
    derived = spec.get("derived") or {}
    job_id = str(spec["job_id"])
    owner = str(spec["owner"])
    stack = str(spec.get("stack") or "")
    inputs = [str(d["id"]) for d in spec.get("datasets") or []]
    source = spec.get("notebook_source") or spec.get("notebook")
    used = f"the input datasets {', '.join(inputs)}" if inputs else "no input datasets"
    ended = "It completed." if status == COMPLETED else f"It failed: {reason or 'unknown reason'}."
    doc: dict[str, Any] = {
        "schema": "dass.dataset/1",
        "title": derived.get("title") or f"Results of dass job {job_id}",
        "creators": [{"name": owner}],
        "dates": {"created": today.isoformat()},
        "licence": derived.get("licence") or "CC-BY-4.0",
        "keywords": ["dass job"] + ([stack] if stack else []),
        "description": (
            f"Results of the dass job {job_id} run by {owner}: the notebook {source} with {used}. "
            f"{ended}"
        ),
        "technique": None,
        "stacks": [stack] if stack else [],
        "domain": {
            "job": {
                "id": job_id,
                "owner": owner,
                "notebook_source": source,
                "parameters": dict(spec.get("parameters") or {}),
                "status": status,
            },
            "derived_from": inputs,
        },
        "access": {
            "groups": list(derived.get("access_groups") or []),
            "users": list(derived.get("access_users") or [owner]),
            "public": False,
        },
        "checksums": {
            str(o["path"]): (o["sha256"] if str(o["sha256"]).startswith("sha256:") else f"sha256:{o['sha256']}")
            for o in outputs
            if o["path"] != METADATA_FILE  # a file cannot hold its own checksum
        },
    }
    if isinstance(spec.get("sweep"), dict):  # an element of a parameter sweep: which, and where
        doc["domain"]["job"]["sweep"] = {"id": str(spec["sweep"].get("id")), "index": spec["sweep"].get("index")}
    if any((d.get("metadata") or {}).get("synthetic") for d in spec.get("datasets") or []):
        doc["synthetic"] = True  # derived from synthetic data: says so, like its inputs
    return doc


def load_result(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``result.json`` of a job's working directory, or None while there is none.

    A file that cannot be parsed (never left by the runner, which writes it atomically) is
    logged and taken as absent.
    """
    path = Path(workdir) / RESULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except ValueError as e:
        log.warning("job result %s is not valid JSON (%s); ignored", path, e)
        return None
    return doc if isinstance(doc, dict) else None


# ---------------------------------------------------------------------------------------------
# files


def _write_json_atomic(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(dict(doc), indent=2, ensure_ascii=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sha256_local(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _format_safe(path: Path) -> str:
    """A path papermill will not take as a format string (it calls ``str.format`` on it)."""
    return str(path).replace("{", "{{").replace("}", "}}")


class CellProgress:
    """Numbers the code cells as they run, and logs ``cell 3/7`` as each starts.

    Its methods are nbclient hooks (``on_notebook_start``, ``on_cell_start``), passed through
    papermill to the notebook client.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.numbers: dict[int, int] = {}
        self.total = 0
        self.current: int | None = None

    def on_notebook_start(self, notebook: Any, **kwargs: Any) -> None:
        self.numbers = {}
        for index, cell in enumerate(notebook.cells):
            if cell.get("cell_type") == "code" and str(cell.get("source", "")).strip():
                self.numbers[index] = len(self.numbers) + 1
        self.total = len(self.numbers)
        log.info("job %s: kernel started, %d code cells to run", self.job_id, self.total)

    def on_cell_start(self, cell: Any, cell_index: int, **kwargs: Any) -> None:
        number = self.numbers.get(cell_index)
        if number is not None:
            self.current = number
            log.info("job %s: cell %d/%d", self.job_id, number, self.total)

    def number(self, cell_index: int | None) -> int | None:
        return None if cell_index is None else self.numbers.get(cell_index)


class JobRun:
    """One run of a job in its working directory (the stateful part of the runner)."""

    def __init__(self, workdir: Path, spec: Mapping[str, Any], started: dt.datetime, kernel: Any = None) -> None:
        self.workdir = workdir
        self.spec = spec
        self.started = started
        self.job_id = str(spec["job_id"])
        self.input = self._inside(str(spec.get("notebook") or "input.ipynb"))
        self.executed = workdir / EXECUTED_NOTEBOOK
        self.html = workdir / EXECUTED_HTML
        self.output = workdir / OUTPUT_DIR
        self.manifest = workdir / MANIFEST_FILE
        self.inputs: list[dict[str, Any]] = []
        self.progress = CellProgress(self.job_id)
        self.written: list[dict[str, Any]] = []
        self._fs: Any = None
        self._fetched: list[Path] = []
        self._km_class: Any = None
        self._kernel = kernel  # a kernel started ahead of the job, or None

    @property
    def results_id(self) -> str:
        """The id of the dataset the results become (``results/job-<id>``)."""
        derived = self.spec.get("derived") or {}
        if derived.get("proposal") and derived.get("name"):
            return f"{derived['proposal']}/{derived['name']}"
        return f"job-{self.job_id}"

    def _inside(self, rel: str) -> Path:
        path = (self.workdir / rel).resolve()
        if not path.is_relative_to(self.workdir.resolve()):
            raise JobFailed(f"internal error: the notebook {rel!r} is outside the job folder")
        return path

    def _gateway(self) -> Any:
        """The data gateway (``dass://``) with the job's own token (``$DASS_TOKEN``), which may
        read the job's inputs and write its results dataset, nothing else."""
        if self._fs is None:
            from ..data.dassfs import DassFileSystem

            url = str((self.spec.get("gateway") or {}).get("url") or os.environ.get("DASS_SERVICE_URL") or "")
            token = os.environ.get(TOKEN_ENV) or ""
            if not url or not token:
                raise JobFailed("internal error: the job was started without the data gateway's address or its token")
            self._fs = DassFileSystem(url=url, token=token)
        return self._fs

    def _retrying(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, tried again with backoff while the data gateway cannot be
        reached (``ConnectionError``: the service restarting), each retry logged; gives up
        after :data:`GATEWAY_RETRY_SECONDS`. Refusals and other failures are not retried."""
        deadline = time.monotonic() + GATEWAY_RETRY_SECONDS
        delay = 0.5
        while True:
            try:
                return fn(*args, **kwargs)
            except ConnectionError as e:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("job %s: %s: the data gateway cannot be reached (%s); retrying in %.1f s",
                            self.job_id, doing, e, delay)
                time.sleep(delay)
                delay = min(2 * delay, 10.0)

    # -- 3. datasets, manifest, environment -----------------------------------------------------

    def prepare(self) -> None:
        from ..data.mount import DATASETS_DIR, fetch_tree, write_manifest
        from ..data.session import MANIFEST_ENV

        self.output.mkdir(parents=True, exist_ok=True)
        os.environ[OUTPUT_ENV] = str(self.output)
        os.environ[JOB_ID_ENV] = self.job_id
        os.environ[MANIFEST_ENV] = str(self.manifest)

        fs = self._gateway()
        entries = []
        for d in self.spec.get("datasets") or []:
            dataset_id = d.get("id") or f"{d['proposal']}/{d['name']}"
            view = self.workdir / DATASETS_DIR / d["proposal"] / d["name"]
            if view.is_dir():  # the read-only view the service made (file:// storage, shared folders)
                how = "view made by the service"
            else:  # fetched through the gateway with the job's token
                with _storage_errors(f"reading dataset {dataset_id} through the data gateway"):
                    self._retrying(f"reading dataset {dataset_id}", fetch_tree, fs, dataset_id, view,
                                   what=f"dataset {dataset_id}")
                self._fetched.append(view)
                how = "fetched through the data gateway"
            files, total = [], 0
            for dirpath, dirnames, filenames in os.walk(view):
                dirnames.sort()
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    size_bytes = path.stat().st_size
                    files.append({"path": path.relative_to(view).as_posix(), "sha256": _sha256_local(path),
                                  "size": size_bytes})
                    total += size_bytes
            self.inputs.append({"id": dataset_id, "url": f"dass://{dataset_id}", "files": files})
            entries.append({"id": dataset_id, "proposal": d["proposal"], "name": d["name"],
                            "url": f"dass://{dataset_id}", "mount": str(view), "metadata": d.get("metadata") or {}})
            log.info("job %s: input %s (%s): %d files, %d bytes checksummed", self.job_id, dataset_id, how,
                     len(files), total)
        size = self.spec.get("size") or {}
        write_manifest(
            self.manifest,
            stack=self.spec.get("stack"),
            size=size.get("name") if isinstance(size, Mapping) else None,
            service_url=fs.url,
            entries=entries,
        )
        log.info("job %s: %d datasets under datasets/", self.job_id, len(entries))

    def unmount(self) -> None:
        """Remove the copies fetched through the gateway once the results are out (the views
        the service made are the service's to remove)."""
        from ..data.mount import _remove

        for view in self._fetched:
            try:
                _remove(view)
                if view.parent.is_dir() and not any(view.parent.iterdir()):
                    view.parent.rmdir()  # the proposal's folder, when this was its last dataset
            except OSError:
                log.warning("job %s: could not remove the copy of its inputs", self.job_id, exc_info=True)

    # -- 4. the notebook ------------------------------------------------------------------------

    @property
    def kernel_exit(self) -> int | None:
        """Exit status of the notebook's kernel when it died (None: alive, or unknown)."""
        km = getattr(self._km_class, "last", None)
        return None if km is None else km.exit_status

    def _warm_kernel(self) -> Any:
        """The kernel started ahead of the job, given the job's environment and folder; None
        when there is none or it did not survive the wait (papermill then starts one)."""
        from jupyter_core.utils import run_sync

        km, self._kernel = self._kernel, None
        if km is None:
            return None

        try:
            if not run_sync(km.is_alive)():
                raise RuntimeError("the kernel started ahead has ended")
            hand_over(km, str(self.workdir), dict(os.environ))
        except Exception as e:
            log.warning("job %s: not using the kernel started ahead (%s); starting one", self.job_id, e)
            try:
                run_sync(km.shutdown_kernel)(now=True)
            except Exception:
                pass
            return None
        log.info("job %s: using the kernel started ahead of the job", self.job_id)
        return km

    def execute(self) -> None:
        import papermill
        from jupyter_core.utils import run_sync

        self._km_class = kernel_manager_class()
        km = self._warm_kernel()
        if km is not None:
            type(km).last = km

        timeout = self.spec.get("cell_timeout")
        log.info(
            "job %s: running %s (kernel %s, cell timeout %s)",
            self.job_id,
            self.spec.get("notebook_source") or self.input.name,
            self.spec.get("kernel_name"),
            f"{timeout} s" if timeout else "none",
        )
        try:
            papermill.execute_notebook(
                _format_safe(self.input),
                _format_safe(self.executed),
                parameters=dict(self.spec.get("parameters") or {}),
                kernel_name=self.spec.get("kernel_name") or None,
                language=_notebook_language(self.input),
                cwd=str(self.workdir),
                log_output=True,
                progress_bar=False,
                execution_timeout=timeout or None,
                request_save_on_cell_execute=True,
                on_notebook_start=self.progress.on_notebook_start,
                on_cell_start=self.progress.on_cell_start,
                kernel_manager_class=self._km_class,
                **({"km": km} if km is not None else {}),
            )
        finally:
            if km is not None:  # papermill leaves running a kernel it did not start
                try:
                    if run_sync(km.is_alive)():
                        run_sync(km.shutdown_kernel)(now=False)
                except Exception:  # a dead kernel: the leftovers are ended after the run
                    log.debug("job %s: kernel shutdown failed", self.job_id, exc_info=True)
        log.info("job %s: notebook completed", self.job_id)

    def failed_cell(self, exc: BaseException) -> int | None:
        from papermill.exceptions import PapermillExecutionError

        if isinstance(exc, PapermillExecutionError):
            return self.progress.number(exc.cell_index) or exc.exec_count or exc.cell_index + 1
        if isinstance(exc, JobFailed):
            return exc.failed_cell
        return self.progress.current

    # -- 5. HTML --------------------------------------------------------------------------------

    def render_html(self) -> None:
        if not self.executed.exists():
            return
        try:
            import nbformat
            from nbconvert import HTMLExporter

            nb = nbformat.read(self.executed, as_version=4)
            body, _ = HTMLExporter().from_notebook_node(nb)
            self.html.write_text(body, encoding="utf-8")
            log.info("job %s: rendered %s", self.job_id, self.html.name)
        except Exception:  # the run's outcome does not depend on its HTML view
            log.exception("job %s: could not render %s", self.job_id, self.html.name)

    # -- 6. the derived dataset -----------------------------------------------------------------

    def _local_files(self) -> list[tuple[str, Path]]:
        files = [("input.ipynb", self.input)]
        files += [(p.name, p) for p in (self.executed, self.html) if p.is_file()]
        if self.output.is_dir():
            for dirpath, dirnames, filenames in os.walk(self.output):
                dirnames.sort()
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    rel = path.relative_to(self.workdir).as_posix()
                    if path.is_symlink() or not path.is_file():
                        log.warning("job %s: %s is not a regular file; not saved", self.job_id, rel)
                    elif "\\" in rel:
                        log.warning("job %s: %s has a backslash in its name; not saved", self.job_id, rel)
                    else:
                        files.append((rel, path))
        return files

    def publish(self, status: str, reason: str | None, finished: dt.datetime) -> None:
        from .provenance import CRATE_FILE, build_crate, package_versions

        fs = self._gateway()
        root = self.results_id
        log.info("job %s: writing the results to dataset %s", self.job_id, root)

        def put(rel: str, local: Path) -> None:
            entry = {"path": rel, "sha256": _sha256_local(local), "size": local.stat().st_size}
            with _storage_errors(f"writing {rel} of the results"):
                self._retrying(f"writing {rel}", fs.put_file, str(local), f"{root}/{rel}")
            self.written.append(entry)

        def pipe(rel: str, data: bytes) -> None:
            with _storage_errors(f"writing {rel} of the results"):
                self._retrying(f"writing {rel}", fs.pipe_file, f"{root}/{rel}", data)
            self.written.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})

        for rel, local in self._local_files():
            put(rel, local)
        notebook_sha = self.written[0]["sha256"]
        log.info("job %s: %d files written; then job.log, the crate and dataset.json", self.job_id, len(self.written))
        for handler in logging.getLogger().handlers:
            handler.flush()
        pipe(LOG_FILE, (self.workdir / LOG_FILE).read_bytes())  # the log as it is now

        crate = build_crate(
            spec={**self.spec, "results_url": f"dass://{root}"},  # where the crate says it is
            started=self.started,
            finished=finished,
            status=status,
            reason=reason,
            notebook_sha256=notebook_sha,
            inputs=self.inputs,
            outputs=[w for w in self.written if w["path"] != "input.ipynb"],
            packages=package_versions(),
        )
        pipe(CRATE_FILE, (json.dumps(crate, indent=2, ensure_ascii=False) + "\n").encode())
        metadata = build_derived_metadata(self.spec, self.written, finished.date(), status=status, reason=reason)
        # validated against dass.dataset/1 by the gateway and written atomically there (the
        # service indexes it under the dataset's lock when the job ends)
        pipe(METADATA_FILE, (json.dumps(metadata, indent=2, ensure_ascii=False) + "\n").encode())
        log.info("job %s: derived dataset %s written", self.job_id, self.results_id)

    def publish_result(self, result: Mapping[str, Any]) -> None:
        """Send ``result.json`` to the service (``PUT api/jobs/<id>/result``, with the job's
        token), which keeps it wherever the run ran; a failure is logged (the local copy in
        the job folder still tells what happened)."""
        try:
            fs = self._gateway()
            self._retrying("sending its result", fs._request, "PUT", f"api/jobs/{self.job_id}/result",
                        data=json.dumps(dict(result), default=str).encode(),
                        headers={"Content-Type": "application/json"})
        except Exception:
            log.exception("job %s: could not send its result to the service", self.job_id)


@contextlib.contextmanager
def _storage_errors(doing: str):
    """The gateway's refusals and failures as a :class:`JobFailed` whose reason says what was
    being done (the service's message names the cause)."""
    try:
        yield
    except JobFailed:
        raise
    except (OSError, ValueError) as e:
        raise JobFailed(_one_line(f"{doing} failed: {e}")) from e


# ---------------------------------------------------------------------------------------------
# the process


class _JobLogFilter(logging.Filter):
    """Drops papermill's ``Executing Cell 2-----`` banners (which count markdown cells too;
    ``cell 1/4`` lines replace them) and the trailing newlines of the notebook's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "papermill" and isinstance(record.msg, str):
            if record.msg.startswith(("Executing Cell ", "Ending Cell ")):
                return False
            record.msg = record.msg.rstrip("\n")
        return True


#: internal location -> its name in the job's log and reason (see :func:`hide_paths`)
_hidden: dict[str, str] = {}


class _HidingFormatter(logging.Formatter):
    """Writes every record (tracebacks included) with the internal locations hidden."""

    def format(self, record: logging.LogRecord) -> str:
        return hide_paths(super().format(record), _hidden)


def _setup_logging(path: Path, also_stdout: bool = False) -> logging.Handler:
    _hidden.update(internal_places(path.parent, None))
    stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    handler = logging.StreamHandler(stream)
    formatter = _HidingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_JobLogFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    if also_stdout:  # a container's log is its standard output (kubectl logs, the executor)
        echo = logging.StreamHandler(sys.stdout)
        echo.setFormatter(formatter)
        echo.addFilter(_JobLogFilter())
        root.addHandler(echo)
    root.setLevel(logging.INFO)
    logging.getLogger("papermill").setLevel(logging.INFO)  # the notebook's output (log_output)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler


def _become_subreaper() -> None:
    """Adopt every orphan of the job (a process the notebook starts in a session of its own
    is reparented to the runner, not to init), so that the end of the job can end them too."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.warning("cannot become the subreaper of the job's processes (errno %d)", ctypes.get_errno())
    except (OSError, AttributeError):  # not Linux
        log.warning("cannot become the subreaper of the job's processes on this system")


def _end_leftovers(job_id: str) -> None:
    """End every process the job left behind (the kernel is shut down by then)."""
    import psutil

    try:
        left = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    if left:
        log.info("job %s: ending %d process(es) the notebook left running", job_id, len(left))
        _kill_children()


def _kill_children() -> None:
    """Kill the kernel (and anything else this process started)."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=3)


def _install_signal_handlers(job: dict[str, str]) -> None:
    def stop(signum: int, frame: Any) -> None:
        log.warning("job %s: stopped by %s; killing the kernel", job.get("id", "?"), signal.Signals(signum).name)
        try:
            _kill_children()
        finally:
            logging.shutdown()
            os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def run(workdir: str | os.PathLike[str], kernel: Any = None, log_stdout: bool = False) -> int:
    """Run the job of ``workdir`` (see the module docstring); returns the exit status.

    ``kernel``: a kernel manager with a kernel already running (a standby runner's, see
    :mod:`dass.jobs.standby`), used instead of starting one. ``log_stdout``: write the job's
    log to standard output as well (in a container, whose log is its output).
    """
    workdir = Path(workdir).resolve()
    started = _now()
    _write_json_atomic(workdir / RUNNER_FILE, {"pid": os.getpid(), "started": started.isoformat()})
    _become_subreaper()
    current: dict[str, str] = {}
    _install_signal_handlers(current)
    _setup_logging(workdir / LOG_FILE, also_stdout=log_stdout)

    status, reason, failed_cell = COMPLETED, None, None
    job_run: JobRun | None = None
    try:
        spec = json.loads((workdir / SPEC_FILE).read_text(encoding="utf-8"))
        current["id"] = str(spec["job_id"])
        log.info("job %s: runner started (pid %d)", spec["job_id"], os.getpid())
        _hidden.update(internal_places(workdir, spec))
        job_run = JobRun(workdir, spec, started, kernel=kernel)
    except Exception as e:
        log.exception("job %s: cannot start from %s", current.get("id", "?"), SPEC_FILE)
        status = FAILED
        if isinstance(e, JobFailed):
            reason = e.reason
        else:
            reason = _one_line(f"internal error: cannot read {SPEC_FILE}: {type(e).__name__}: {e}")
        spec = {}

    if job_run is not None:
        _warm_html_exporter()
        try:
            job_run.prepare()
            job_run.execute()
        except Exception as e:
            status = FAILED
            failed_cell = job_run.failed_cell(e)
            reason = describe_failure(
                e, cell=failed_cell, cell_timeout=spec.get("cell_timeout"), kernel_exit=job_run.kernel_exit
            )
            if reason.startswith("internal error"):
                log.exception("job %s: failed: %s", job_run.job_id, reason)
            else:
                log.error("job %s: failed: %s\n%s", job_run.job_id, reason, _details(e))
        job_run.render_html()
        _end_leftovers(job_run.job_id)

    finished = _now()
    results_url = None
    if job_run is not None:
        try:
            job_run.publish(status, reason, finished)
            results_url = f"dass://{job_run.results_id}"
        except Exception as e:
            log.exception("job %s: could not write the results to dataset %s", job_run.job_id, job_run.results_id)
            if status == COMPLETED:
                status, reason = FAILED, describe_failure(e)
        job_run.unmount()

    if reason:
        reason = hide_paths(reason, _hidden)
    result = {
        "status": status,
        "reason": reason,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "results_url": results_url,
        "outputs": job_run.written if job_run is not None else [],
        "failed_cell": failed_cell,
    }
    log.info("job %s: %s%s", current.get("id", "?"), status, f" ({reason})" if reason else "")
    for handler in logging.getLogger().handlers:
        handler.flush()
    if job_run is not None:
        job_run.publish_result(result)
    _write_json_atomic(workdir / RESULT_FILE, result)
    # the result is out: skip the final collection over everything papermill and nbconvert
    # loaded (about 0.3 s of a process exit)
    gc.freeze()
    return 0 if status == COMPLETED else 1


def _warm_html_exporter() -> None:
    """Import nbconvert and compile its templates while the kernel runs (about 0.5 s that
    would otherwise come after the last cell); errors surface later, in render_html."""

    # what the kernel's client imports too, imported here first: two threads importing modules
    # that import each other can meet a partially initialised module (Python breaks the
    # deadlock that way), e.g. "cannot import name 'AsyncKernelManager' from partially
    # initialized module 'jupyter_client.manager'"
    import jupyter_client.manager  # noqa: F401
    import nbclient  # noqa: F401
    import nbformat  # noqa: F401
    import papermill  # noqa: F401 - and what papermill imports, before the thread starts

    def warm() -> None:
        try:
            import nbformat
            from nbconvert import HTMLExporter

            HTMLExporter().from_notebook_node(nbformat.v4.new_notebook())
        except Exception:  # render_html reports the real problem, if any
            pass

    threading.Thread(target=warm, name="warm-nbconvert", daemon=True).start()


def _details(exc: BaseException) -> str:
    """What goes to job.log besides the reason (the notebook's traceback, without colours)."""
    from papermill.exceptions import PapermillExecutionError, strip_color

    if isinstance(exc, PapermillExecutionError):
        return strip_color("\n".join(exc.traceback or []))
    return f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    """``python -m dass.jobs.runner WORKDIR [--log-stdout]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    log_stdout = LOG_STDOUT_FLAG in args
    if log_stdout:
        args.remove(LOG_STDOUT_FLAG)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(f"usage: python -m dass.jobs.runner WORKDIR [{LOG_STDOUT_FLAG}]\n\nRun the dass job whose spec.json is "
              f"in WORKDIR.\n{LOG_STDOUT_FLAG}: write the job's log to standard output too (containers).")
        return 2
    if not os.path.isfile(os.path.join(args[0], SPEC_FILE)):
        print(f"{args[0]}: no {SPEC_FILE} there; the dass service writes it before starting the runner")
        return 2
    return run(args[0], log_stdout=log_stdout)


def _notebook_language(path) -> str:
    """The notebook's language, "python" when it names none (notebooks written by tools
    often lack kernelspec and language_info; dass kernels are Python)."""
    try:
        meta = json.loads(Path(path).read_text()).get("metadata", {})
    except (OSError, ValueError):
        return "python"
    return (meta.get("kernelspec") or {}).get("language") or (meta.get("language_info") or {}).get("name") or "python"


if __name__ == "__main__":
    sys.exit(main())


"""Provenance of a job's results: an RO-Crate, and the check that the files still match it.

:func:`build_crate` (pure) describes one run in the ``ro-crate-metadata.json`` that the runner
writes next to the results. The root dataset is the results folder; one ``CreateAction``
records the run::

    CreateAction #job-<id>
      instrument  -> input.ipynb             (File, SoftwareSourceCode, sha256)
      agent       -> #person-<owner>         (Person)
      object      -> <dataset URL>/          (Dataset, hasPart: one File per input file,
                                              each with its sha256 and size)
                     #param-<name>           (PropertyValue, one per parameter)
      result      -> executed.ipynb, executed.html, job.log, output/...  (File, sha256)
      startTime, endTime, actionStatus (Completed/FailedActionStatus), error

The notebook names the stack it ran in (``SoftwareApplication`` ``#stack-<name>``), which
lists one ``SoftwareApplication`` per package with its version (:func:`package_versions`).

Input files are web-based data entities: their ``@id`` is the absolute URL of the file in the
repository (``file:///…`` or ``s3://bucket/…``). Files of the results folder have relative
ids, resolved against the folder's URL (the root dataset's ``url``).

:func:`verify` (and :func:`verify_results`, which ``dass jobs verify ID`` prints) re-reads every
file the crate gives a ``sha256`` for, outputs and inputs, and reports what is missing or
changed. ``sha256`` values in the crate are 64 lowercase hex digits (no ``sha256:`` prefix).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import mimetypes
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "CRATE_FILE",
    "PACKAGES",
    "VerifyReport",
    "build_crate",
    "package_versions",
    "verify",
    "verify_results",
]

log = logging.getLogger(__name__)

#: File name of the crate in the results folder.
CRATE_FILE = "ro-crate-metadata.json"

#: Distributions whose versions are recorded when installed (``python`` is always recorded).
PACKAGES = (
    "dass",
    "papermill",
    "nbclient",
    "nbconvert",
    "nbformat",
    "ipykernel",
    "ipython",
    "jupyter_client",
    "fsspec",
    "s3fs",
    "rocrate",
    "numpy",
    "scipy",
    "pandas",
    "h5py",
    "pillow",
    "tifffile",
    "scikit-image",
    "scikit-learn",
    "torch",
    "torchvision",
    "matplotlib",
    "xrayutilities",
    "xsocs",
    "pyfastspm",
    "pynxtools",
)

_ACTION_STATUS = {
    "COMPLETED": "http://schema.org/CompletedActionStatus",
    "FAILED": "http://schema.org/FailedActionStatus",
}
_CHUNK = 1024 * 1024
_NOTEBOOK_MIME = "application/x-ipynb+json"


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Versions of Python and of the installed packages among ``names``.

    Returns
    -------
    dict
        ``{"python": "3.11.9", "dass": "0.1.0", "papermill": "2.7.0", …}``; packages that are
        not installed are left out.

    Examples
    --------
    >>> versions = package_versions()
    >>> "python" in versions and "dass" in versions
    True
    """
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def software_url(name: str, version: str) -> str:
    """Where a recorded piece of software is described: its release page.

    Examples
    --------
    >>> software_url("papermill", "2.7.0")
    'https://pypi.org/project/papermill/2.7.0/'
    >>> software_url("python", "3.11.9")
    'https://www.python.org/downloads/release/python-3119/'
    """
    if name == "python":
        return f"https://www.python.org/downloads/release/python-{version.replace('.', '')}/"
    return f"https://pypi.org/project/{quote(name)}/{quote(version)}/"


def _iso(value: str | dt.datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat(timespec="seconds")


def _mime(path: str) -> str:
    if path.endswith(".ipynb"):
        return _NOTEBOOK_MIME
    if path.endswith(".log"):
        return "text/plain"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _hex(sha: str) -> str:
    """``sha256:<hex>`` or ``<hex>`` → ``<hex>`` (lowercase)."""
    return sha.split(":", 1)[1].lower() if sha.startswith("sha256:") else sha.lower()


def _uri(url: str) -> str:
    """A URL as a JSON-LD id: spaces and other unsafe characters %-escaped (undone by verify)."""
    return quote(url, safe="/:@!$&'()*+,;=~")


def _parameter_value(value: Any) -> Any:
    """A JSON-LD literal: scalars as they are, anything else as its JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def build_crate(
    *,
    spec: Mapping[str, Any],
    started: str | dt.datetime,
    finished: str | dt.datetime,
    status: str,
    reason: str | None,
    notebook_sha256: str,
    inputs: list[Mapping[str, Any]],
    outputs: list[Mapping[str, Any]],
    packages: Mapping[str, str],
) -> dict[str, Any]:
    """The RO-Crate JSON-LD of one job run (what goes to ``ro-crate-metadata.json``).

    Parameters
    ----------
    spec : mapping
        The job's ``spec.json`` (job_id, owner, notebook_source, parameters, datasets, stack,
        results_url, derived).
    started, finished : str or datetime
        When the run started and ended (ISO 8601).
    status : {"COMPLETED", "FAILED"}
        How it ended.
    reason : str or None
        The one-line failure reason (recorded as the action's ``error``).
    notebook_sha256 : str
        Checksum of ``input.ipynb`` (hex, with or without a ``sha256:`` prefix).
    inputs : list of dict
        ``{"id": "p/d", "url": "<dataset folder URL>", "files": [{"path", "sha256", "size"}]}``
        per input dataset; ``path`` is relative to the dataset folder.
    outputs : list of dict
        ``{"path", "sha256", "size"}`` per result file, ``path`` relative to the results folder.
    packages : mapping
        Package versions (see :func:`package_versions`).

    Returns
    -------
    dict
        The JSON-LD document (``@context``, ``@graph``).

    Raises
    ------
    ValueError
        When ``status`` is neither ``"COMPLETED"`` nor ``"FAILED"``.
    """
    from rocrate.model import ContextEntity, Person, SoftwareApplication
    from rocrate.rocrate import ROCrate

    if status not in _ACTION_STATUS:
        raise ValueError(f"status must be COMPLETED or FAILED, not {status!r}")
    job_id = str(spec["job_id"])
    owner = str(spec["owner"])
    derived = spec.get("derived") or {}
    stack = spec.get("stack") or "unknown"
    titles = {d.get("id"): d.get("title") for d in spec.get("datasets") or []}

    crate = ROCrate()
    root = crate.root_dataset
    root["name"] = derived.get("title") or f"Results of dass job {job_id}"
    root["description"] = (
        f"Results of the dass job {job_id}: notebook {spec.get('notebook_source')} run by "
        f"{owner} in the {stack} stack ({status.lower()})."
    )
    root["datePublished"] = _iso(finished)
    root["identifier"] = f"{derived.get('proposal', 'results')}/{derived.get('name', 'job-' + job_id)}"
    if spec.get("results_url"):
        root["url"] = _uri(spec["results_url"])
    root["keywords"] = ["dass job", stack]
    licence = derived.get("licence")
    if licence:
        root["license"] = crate.add(
            ContextEntity(
                crate,
                f"https://spdx.org/licenses/{quote(licence)}",
                properties={"@type": "CreativeWork", "name": licence, "identifier": licence},
            )
        )

    person = crate.add(Person(crate, f"#person-{quote(owner)}", properties={"name": owner}))
    root["creator"] = person

    apps = [
        crate.add(
            SoftwareApplication(
                crate,
                f"#software-{quote(name)}",
                properties={"name": name, "version": str(version), "url": software_url(name, str(version))},
            )
        )
        for name, version in sorted(packages.items())
    ]
    stack_app = crate.add(
        SoftwareApplication(
            crate,
            f"#stack-{quote(stack)}",
            properties={
                "name": f"dass stack {stack}",
                "identifier": stack,
                # a stack is defined by the dass release that ships it (or the deployer's image)
                "version": str(spec.get("stack_version") or packages.get("dass") or "unknown"),
                "url": str(spec.get("stack_url") or f"urn:dass:stack:{quote(stack)}"),
            },
        )
    )
    if apps:
        stack_app["softwareRequirements"] = apps

    notebook = crate.add_file(
        dest_path="input.ipynb",
        properties={
            "@type": ["File", "SoftwareSourceCode"],
            "name": "input.ipynb",
            "description": f"The notebook as submitted ({spec.get('notebook_source')})",
            "identifier": spec.get("notebook_source"),
            "encodingFormat": _NOTEBOOK_MIME,
            "programmingLanguage": "Python",
            "sha256": _hex(notebook_sha256),
        },
    )
    notebook["softwareRequirements"] = stack_app

    objects = []
    for item in inputs:
        url = str(item["url"]).rstrip("/")
        parts = []
        for f in item.get("files") or []:
            parts.append(
                crate.add_file(
                    source=_uri(f"{url}/{f['path']}"),
                    fetch_remote=False,
                    properties={
                        "name": f["path"],
                        "sha256": _hex(f["sha256"]),
                        "contentSize": int(f["size"]),
                        "encodingFormat": _mime(f["path"]),
                    },
                )
            )
        dataset = crate.add_dataset(
            source=_uri(url + "/"),
            fetch_remote=False,
            properties={
                "name": titles.get(item["id"]) or item["id"],
                "identifier": item["id"],
                "url": _uri(url + "/"),
            },
        )
        if parts:
            dataset["hasPart"] = parts
        objects.append(dataset)
    for name, value in (spec.get("parameters") or {}).items():
        objects.append(
            crate.add(
                ContextEntity(
                    crate,
                    f"#param-{quote(str(name))}",
                    properties={
                        "@type": "PropertyValue",
                        "name": str(name),
                        "value": _parameter_value(value),
                    },
                )
            )
        )

    results = []
    for f in outputs:
        results.append(
            crate.add_file(
                dest_path=f["path"],
                properties={
                    "name": f["path"],
                    "sha256": _hex(f["sha256"]),
                    "contentSize": int(f["size"]),
                    "encodingFormat": _mime(f["path"]),
                },
            )
        )

    properties: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"dass job {job_id}",
        "startTime": _iso(started),
        "endTime": _iso(finished),
        "actionStatus": {"@id": _ACTION_STATUS[status]},
    }
    if reason:
        properties["error"] = reason
    action = crate.add_action(
        notebook,
        identifier=f"#job-{quote(job_id)}",
        object=objects or None,
        result=results or None,
        properties=properties,
    )
    action["agent"] = person
    root["mentions"] = [action]
    return crate.metadata.generate()


# ---------------------------------------------------------------------------------------------
# verification


@dataclass
class VerifyReport:
    """What :func:`verify_results` found.

    Attributes
    ----------
    ok : bool
        True when every listed file was found with its recorded checksum.
    checked : int
        How many files were read.
    problems : list of str
        One line per missing or changed file, naming the file and both checksums.
    results_url : str
        The results folder that was checked.
    """

    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    results_url: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict ``{"ok", "checked", "problems", "results_url"}``."""
        return {"ok": self.ok, "checked": self.checked, "problems": list(self.problems), "results_url": self.results_url}


StorageFactory = Callable[[str], tuple[Any, str]]


def _sha256_of(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_absolute(identifier: str) -> bool:
    return bool(urlsplit(identifier).scheme)


def _expected_files(crate_json: Mapping[str, Any], base_url: str | None) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``[(label, url, sha256 hex)]`` for every entity with a ``sha256``, and the problems found."""
    graph = crate_json.get("@graph")
    if not isinstance(graph, list):
        return [], ["the crate has no @graph: it is not an RO-Crate"]
    entities = {e.get("@id"): e for e in graph if isinstance(e, dict)}
    descriptor = entities.get(CRATE_FILE) or {}
    root_id = (descriptor.get("about") or {}).get("@id", "./")
    root = entities.get(root_id) or {}
    base = base_url or root.get("url")
    expected, problems = [], []
    for identifier, entity in entities.items():
        sha = entity.get("sha256")
        if not identifier or not isinstance(sha, str):
            continue
        if _is_absolute(identifier):
            url = unquote(identifier)
            expected.append((f"input {url}", url, _hex(sha)))
        elif base:
            rel = unquote(identifier.removeprefix("./"))
            expected.append((rel, f"{unquote(str(base)).rstrip('/')}/{rel}", _hex(sha)))
        else:
            problems.append(f"{identifier}: the crate does not say where the results folder is (no url)")
    return expected, problems


def _check(
    expected: list[tuple[str, str, str]], storage_factory: StorageFactory, seen: dict[str, str | None]
) -> list[str]:
    problems = []
    unique: dict[tuple[str, str], str] = {}
    for label, url, sha in expected:  # a file listed by the crate and by dataset.json: once
        unique.setdefault((url, sha), label)
    for (url, sha), label in unique.items():
        if url not in seen:
            fs, path = storage_factory(url)
            try:
                seen[url] = _sha256_of(fs, path)
            except FileNotFoundError:
                seen[url] = None
            except (IsADirectoryError, PermissionError) as e:
                problems.append(f"{label}: cannot be read at {url} ({type(e).__name__}: {e})")
                seen[url] = ""
                continue
        actual = seen[url]
        if actual == "":
            continue
        if actual is None:
            problems.append(f"{label}: missing (expected sha256 {sha} at {url})")
        elif actual != sha:
            problems.append(f"{label}: sha256 mismatch at {url}: expected {sha}, actual {actual}")
    return problems


def verify(
    crate_json: Mapping[str, Any],
    storage_factory: StorageFactory,
    *,
    base_url: str | None = None,
) -> list[str]:
    """Re-read every file a crate records a ``sha256`` for and report what does not match.

    Parameters
    ----------
    crate_json : mapping
        The crate (content of ``ro-crate-metadata.json``).
    storage_factory : callable
        ``storage_factory(url) -> (fsspec filesystem, path)``, e.g.
        ``lambda url: fsspec.core.url_to_fs(url, **options)``.
    base_url : str, optional
        URL of the results folder; relative ids are resolved against it. Default: the root
        dataset's ``url`` (where the runner wrote the results).

    Returns
    -------
    list of str
        One line per problem (missing file, changed file); empty when all match.
    """
    expected, problems = _expected_files(crate_json, base_url)
    return problems + _check(expected, storage_factory, {})


def verify_results(results_url: str, storage_options: Mapping[str, Any] | None = None, *,
                   repository_url: str | None = None) -> VerifyReport:
    """Check a job's results folder against its crate and its ``dataset.json`` checksums.

    Every output listed in ``ro-crate-metadata.json`` is re-read from ``results_url``, every
    input file from its URL in the repository; the ``checksums`` of ``dataset.json`` (which
    include the crate itself) are checked too.

    Parameters
    ----------
    results_url : str
        URL of the results folder (``file:///…/results/job-<id>``, ``s3://bucket/…``).
    storage_options : mapping, optional
        fsspec options for ``results_url`` (``Storage.options``); used for every URL of the
        same protocol.
    repository_url : str, optional
        The repository that the crate's ``dass://<proposal>/<dataset>/…`` input URLs name (the
        service passes its own ``Storage.url``; the inputs are then read there with
        ``storage_options``). Without it they are read through the data gateway
        (``$DASS_SERVICE_URL`` and the caller's token).

    Returns
    -------
    VerifyReport

    Raises
    ------
    StorageError
        When the storage cannot be reached at all.
    """
    import fsspec.core

    from ..data.storage import Storage

    results_url = results_url.rstrip("/")
    storage = Storage(url=results_url, options=dict(storage_options or {}))
    options = storage.storage_options
    protocol = storage.protocol

    def factory(url: str) -> tuple[Any, str]:
        if repository_url and url.startswith("dass://"):
            url = f"{repository_url.rstrip('/')}/{url.removeprefix('dass://')}"
        head = url.split("://", 1)[0] if "://" in url else "file"
        same = head == protocol or {head, protocol} <= {"file", "local"}
        return fsspec.core.url_to_fs(url, **(options if same else {}))

    seen: dict[str, str | None] = {}
    problems: list[str] = []
    with storage.translate_errors(f"verifying {results_url}"):
        fs, root = storage.fs, storage.root
        crate_path = f"{root}/{CRATE_FILE}"
        try:
            crate_bytes = fs.cat_file(crate_path)
        except FileNotFoundError:
            return VerifyReport(
                ok=False,
                checked=0,
                problems=[f"{CRATE_FILE}: missing at {results_url}: these are not the results of a dass job"],
                results_url=results_url,
            )
        try:
            crate_json = json.loads(crate_bytes)
        except ValueError as e:
            return VerifyReport(
                ok=False, checked=0, problems=[f"{CRATE_FILE}: not valid JSON ({e})"], results_url=results_url
            )
        expected, problems = _expected_files(crate_json, results_url)
        try:
            doc = json.loads(fs.cat_file(f"{root}/dataset.json"))
        except FileNotFoundError:
            doc = None
            problems.append(f"dataset.json: missing at {results_url}")
        except ValueError as e:
            doc = None
            problems.append(f"dataset.json: not valid JSON ({e})")
        if isinstance(doc, dict) and isinstance(doc.get("checksums"), dict):
            expected += [
                (rel, f"{results_url}/{rel}", _hex(str(value)))
                for rel, value in doc["checksums"].items()
            ]
        problems += _check(expected, factory, seen)
    report = VerifyReport(ok=not problems, checked=len(seen), problems=problems, results_url=results_url)
    log.info("verify %s: %d files checked, %d problems", results_url, report.checked, len(problems))
    return report

"""The datasets of this JupyterLab session (or headless job), for use in notebooks.

Examples
--------
>>> from dass.data import datasets                      # doctest: +SKIP
>>> ds = datasets()                                      # doctest: +SKIP
>>> ds                                                   # a table in Jupyter  # doctest: +SKIP
>>> grains = ds["p1/grains"]                             # doctest: +SKIP
>>> grains.ls()                                          # doctest: +SKIP
['dataset.json', 'raw']
>>> with grains.open("raw/image_001.tif") as f:          # doctest: +SKIP
...     data = f.read()

Reading goes through the session's read-only local view ``~/datasets/<proposal>/<dataset>``
(made by the platform at spawn, under the access rule) where it holds the dataset, else through
the dass service's data gateway (``dass://<proposal>/<dataset>/…``, :mod:`dass.data.dassfs`)
with the session's own token (a job's token in a job), which may read exactly the datasets
chosen at spawn (a job's declared inputs); the session holds no storage credential; :meth:`Dataset.local_path` gives real local files (that view,
or a copy made on demand in ``~/.cache/dass``) for libraries that need them (h5py with
external links, pyfastspm…).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, SupportsIndex, overload

from .errors import DassDataError, StorageError

__all__ = ["datasets", "input_dataset", "output_dir", "repository", "Dataset", "DatasetList", "MANIFEST_ENV", "DEFAULT_MANIFEST", "OUTPUT_ENV", "CACHE_ENV", "LOCAL_COPY_MAX_ENV"]

#: Environment variable naming the session manifest (set by the spawner and the job runner).
MANIFEST_ENV = "DASS_SESSION_MANIFEST"
#: Manifest used when neither an argument nor ``$DASS_SESSION_MANIFEST`` names one.
DEFAULT_MANIFEST = "~/.dass/session.json"

_WRITE_FLAGS = set("wax+")

#: folder of the local copies made by :meth:`Dataset.local_path` (default ``~/.cache/dass``)
CACHE_ENV = "DASS_CACHE_DIR"
#: the most bytes one :meth:`Dataset.local_path` copies, when the manifest does not say
LOCAL_COPY_MAX_ENV = "DASS_LOCAL_COPY_MAX_BYTES"
DEFAULT_LOCAL_COPY_MAX = 20 * 1024**3


class Dataset:
    """One dataset given to this session: read-only access to its files.

    Attributes
    ----------
    id : str
        ``"<proposal>/<name>"``.
    proposal, name : str
        The two parts of the id.
    url : str
        ``dass://<proposal>/<name>``: the dataset through the data gateway (the default; any
        fsspec URL of a folder works too).
    path : pathlib.Path or None
        The read-only local view, ``~/datasets/<proposal>/<name>`` (None when none was made).
    metadata : dict
        The ``dataset.json`` content.
    title : str
        ``metadata["title"]`` (the id when absent).
    """

    def __init__(
        self,
        *,
        id: str,
        proposal: str,
        name: str,
        url: str | None = None,
        path: Path | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        service_url: str | None = None,
        local_copy_max_bytes: int | None = None,
    ) -> None:
        self.id = id
        self.proposal = proposal
        self.name = name
        self.url = url or f"dass://{proposal}/{name}"
        self.path = Path(path) if path else None
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.title: str = str(self.metadata.get("title") or id)
        self._service_url = service_url
        self._local_copy_max = local_copy_max_bytes
        self._fs: Any = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], manifest: Mapping[str, Any] | None = None) -> Dataset:
        """Build from one ``datasets`` entry of the session manifest."""
        manifest = manifest or {}
        try:
            return cls(
                id=entry["id"],
                proposal=entry["proposal"],
                name=entry["name"],
                path=entry.get("mount"),
                metadata=entry.get("metadata") or {},
                service_url=manifest.get("service_url"),
                local_copy_max_bytes=manifest.get("local_copy_max_bytes"),
            )
        except (KeyError, TypeError) as e:
            raise DassDataError(f"invalid dataset entry in the session manifest ({e!r}): {entry!r}") from None

    @property
    def fs(self) -> Any:
        """An fsspec filesystem rooted at the dataset folder (paths are relative to it).

        A ``DirFileSystem`` over the session's read-only view when it holds the dataset (made
        by the platform at spawn, under the same access rule; the fastest way to the files),
        else over ``dass://`` (the data gateway, with this session's token). Either way
        ``ds.fs.ls("")``, ``ds.fs.open("raw/x.tif")``, ``ds.fs.glob("**/*.tif")`` work the same.
        Read-only: a write answers ``PermissionError``.
        """
        if self._fs is None:
            from fsspec.implementations.dirfs import DirFileSystem

            if self.path is not None and self.path.is_dir() and self.url.startswith("dass://"):
                import fsspec

                backend, inner = fsspec.filesystem("file"), str(self.path)
            elif self.url.startswith("dass://"):
                from .dassfs import DassFileSystem

                url = os.environ.get("DASS_SERVICE_URL") or self._service_url
                backend, inner = DassFileSystem(url=url), f"{self.proposal}/{self.name}"
            else:  # a dataset given by another fsspec URL (a folder of a test, a notebook's own)
                import fsspec

                backend, inner = fsspec.core.url_to_fs(self.url)
            self._fs = DirFileSystem(path=inner, fs=backend)
        return self._fs

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """Open a file of the dataset for reading.

        Parameters
        ----------
        path : str
            Path relative to the dataset folder, e.g. ``"raw/image_001.tif"``.
        mode : str
            ``"rb"`` (default) or ``"r"`` (text; ``encoding=`` may be given).

        Raises
        ------
        PermissionError
            For any writing mode: datasets are read-only.
        """
        if _WRITE_FLAGS & set(mode):
            raise PermissionError("datasets are read-only; write results to your home folder")
        local = self._local_file(path)
        if local is not None:
            return open(local, mode, **kwargs)
        return self.fs.open(path.lstrip("/"), mode, **kwargs)

    def _local_file(self, path: str) -> Path | None:
        """The file in the local view, when there is one (no trip to the service)."""
        if self.path is None:
            return None
        rel = Path(path.lstrip("/"))
        if ".." in rel.parts:
            return None
        local = self.path / rel
        return local if local.is_file() else None

    def ls(self, path: str = "") -> list[str]:
        """Names (relative to the dataset folder) of the entries of ``path``, sorted."""
        names = self.fs.ls(path.strip("/"), detail=False)
        return sorted(str(n).rstrip("/") for n in names)

    def local_path(self, *, max_bytes: int | None = None, progress: bool = True) -> Path:
        """A folder of real local files of this dataset, read-only, for libraries that need
        paths (h5py masters with external links, pyfastspm, tifffile series…).

        The session's view ``~/datasets/<proposal>/<name>`` when it holds the dataset;
        otherwise a copy made now through the data gateway into ``~/.cache/dass/datasets/``
        (``$DASS_CACHE_DIR``), reused while the remote files keep their sizes.

        Parameters
        ----------
        max_bytes : int, optional
            The most bytes to copy; default the manifest's ``local_copy_max_bytes``, else
            ``$DASS_LOCAL_COPY_MAX_BYTES``, else 20 GiB.
        progress : bool
            Show a progress bar (tqdm) while copying.

        Raises
        ------
        DassDataError
            When the dataset is larger than ``max_bytes``.
        """
        if self.path is not None and self.path.is_dir() and any(self.path.iterdir()):
            return self.path
        from .mount import fetch_tree, is_complete_copy

        limit = max_bytes or self._local_copy_max or int(os.environ.get(LOCAL_COPY_MAX_ENV) or DEFAULT_LOCAL_COPY_MAX)
        cache = Path(os.environ.get(CACHE_ENV) or "~/.cache/dass").expanduser()
        target = cache / "datasets" / self.proposal / self.name
        fs = self.fs
        if is_complete_copy(fs, "", target):
            return target
        bar = None

        def show(total: int | None, step: int | None) -> None:
            nonlocal bar
            if total is not None and progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"copying {self.id}")
            elif step and bar is not None:
                bar.update(step)

        try:
            fetch_tree(fs, "", target, max_bytes=limit, progress=show, what=f"dataset {self.id}")
        except StorageError as e:
            raise DassDataError(
                f"{e}: read the files you need with ds.open()/ds.fs, or pass max_bytes= to local_path() "
                "(the administrator sets the default)"
            ) from None
        finally:
            if bar is not None:
                bar.close()
        return target

    def __repr__(self) -> str:
        return f"<Dataset {self.id!r} {self.title!r} at {self.path or self.url}>"

    def _repr_html_(self) -> str:
        return DatasetList([self])._repr_html_()


class DatasetList(list):
    """The session's datasets: a list, also indexable by id (``ds["p1/grains"]``).

    A plain dataset name works too when no other chosen dataset has the same name.
    """

    @overload
    def __getitem__(self, key: SupportsIndex) -> Dataset: ...

    @overload
    def __getitem__(self, key: slice) -> DatasetList: ...

    @overload
    def __getitem__(self, key: str) -> Dataset: ...

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            for ds in self:
                if ds.id == key:
                    return ds
            by_name = [ds for ds in self if ds.name == key]
            if len(by_name) == 1:
                return by_name[0]
            ids = ", ".join(ds.id for ds in self) or "none"
            raise KeyError(f"no dataset {key!r} in this session (chosen at spawn: {ids})")
        result = super().__getitem__(key)
        return DatasetList(result) if isinstance(key, slice) else result

    @property
    def ids(self) -> list[str]:
        """Ids of the datasets, in order."""
        return [ds.id for ds in self]

    def _repr_html_(self) -> str:
        rows = []
        for ds in self:
            md = ds.metadata
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(v))}</td>"
                    for v in (ds.id, ds.title, md.get("technique") or "", md.get("instrument") or "", ds.path)
                )
                + "</tr>"
            )
        if not rows:
            return "<p>No datasets were chosen for this session.</p>"
        head = "".join(f"<th>{h}</th>" for h in ("id", "title", "technique", "instrument", "path"))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _manifest_path(manifest: str | os.PathLike[str] | None) -> Path:
    chosen = manifest or os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST
    return Path(chosen).expanduser()


def datasets(manifest: str | os.PathLike[str] | None = None) -> DatasetList:
    """The datasets chosen when this session (or job) was started.

    Parameters
    ----------
    manifest : path-like, optional
        The session manifest; default ``$DASS_SESSION_MANIFEST``, else ``~/.dass/session.json``.

    Returns
    -------
    DatasetList

    Raises
    ------
    DassDataError
        When there is no manifest (no datasets were chosen at spawn) or it is unreadable.
    """
    path = _manifest_path(manifest)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        given = None if manifest else _from_gateway()
        if given is not None:
            return given
        raise DassDataError(
            f"no session manifest at {path}: no datasets were chosen when this session was "
            "started. Stop your server (File > Hub Control Panel) and start it again with "
            "datasets selected in the spawn form."
        ) from None
    except OSError as e:
        raise DassDataError(f"cannot read the session manifest {path}: {e}") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DassDataError(
            f"session manifest {path} is not valid JSON (line {e.lineno} column {e.colno}: {e.msg}); "
            "restart your server to have it written again"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets", []), list):
        raise DassDataError(f"session manifest {path} is not a dass manifest; restart your server")
    entries: Iterable[Mapping[str, Any]] = doc.get("datasets", [])
    return DatasetList(Dataset.from_entry(e, doc) for e in entries)


def _from_gateway() -> DatasetList | None:
    """The datasets this session's (or job's) token was given, asked of the data gateway
    (``GET api/data``) where no manifest was written (sessions on Slurm, in containers, in
    pods); None without a service address and token, or for a person's own token."""
    url = os.environ.get("DASS_SERVICE_URL")
    if not url or not (os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("DASS_TOKEN")):
        return None
    from .dassfs import DassFileSystem

    try:
        doc = DassFileSystem(url=url)._get("api/data").json()
    except (OSError, ValueError) as e:
        raise DassDataError(f"cannot ask the dass service at {url} for this session's datasets: {e}") from None
    if doc.get("datasets") is None:
        return None
    return DatasetList(Dataset.from_entry({**e, "mount": None}, {"service_url": url}) for e in doc["datasets"])


def repository(manifest: str | os.PathLike[str] | None = None) -> Any:
    """What the platform shares with every session and job beside the datasets, read-only
    through the data gateway: the SEM model registry (``models/``; ``dass://_repository/models``).

    Returns an object with ``fs`` and ``root`` (what :class:`dass.sem.registry.ModelRegistry`
    takes). Raises :class:`DassDataError` as :func:`datasets` does."""
    from .dassfs import REPOSITORY, DassFileSystem

    path = _manifest_path(manifest)
    datasets(path)  # the same checks and messages
    doc = json.loads(path.read_text(encoding="utf-8"))
    url = os.environ.get("DASS_SERVICE_URL") or doc.get("service_url")

    class _Repository:
        fs = DassFileSystem(url=url)
        root = REPOSITORY

    return _Repository()


#: the folder a job's notebook writes its results to (set by the job runner)
OUTPUT_ENV = "DASS_OUTPUT_DIR"


def input_dataset(dataset_id: str, *, kind: str, example: str, manifest=None) -> "Dataset":
    """The mounted dataset a notebook's dataset parameter names.

    Parameters
    ----------
    dataset_id : str
        The parameter's value, ``"proposal/dataset"``.
    kind, example : str
        What the notebook expects ("an SEM dataset") and an example id, for the message when
        the parameter is empty.

    Raises
    ------
    ValueError
        When ``dataset_id`` is empty.
    KeyError
        When the dataset was not mounted in this session or job.
    """
    if not dataset_id:
        raise ValueError(f"input_dataset is empty: set it to the id of {kind}, e.g. {example!r}")
    return datasets(manifest)[dataset_id]


def output_dir() -> Path:
    """The folder results go to: ``$DASS_OUTPUT_DIR`` in a job, else ``output`` (created)."""
    path = Path(os.environ.get(OUTPUT_ENV, "output"))
    path.mkdir(parents=True, exist_ok=True)
    return path

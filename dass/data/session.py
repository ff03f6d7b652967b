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

The same code works whether the repository is a local folder (the dataset is a symbolic link
under ``~/datasets``) or S3 (the dataset was copied there, and :attr:`Dataset.fs` reads the
bucket directly).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, SupportsIndex, overload

from .errors import DassDataError

__all__ = ["datasets", "input_dataset", "output_dir", "repository", "Dataset", "DatasetList", "MANIFEST_ENV", "DEFAULT_MANIFEST", "OUTPUT_ENV"]

#: Environment variable naming the session manifest (set by the spawner and the job runner).
MANIFEST_ENV = "DASS_SESSION_MANIFEST"
#: Manifest used when neither an argument nor ``$DASS_SESSION_MANIFEST`` names one.
DEFAULT_MANIFEST = "~/.dass/session.json"

_WRITE_FLAGS = set("wax+")


class Dataset:
    """One dataset given to this session: read-only access to its files.

    Attributes
    ----------
    id : str
        ``"<proposal>/<name>"``.
    proposal, name : str
        The two parts of the id.
    url : str
        fsspec URL of the dataset folder in the repository.
    path : pathlib.Path
        The local mount, ``~/datasets/<proposal>/<name>``.
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
        url: str,
        path: Path | str,
        metadata: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.proposal = proposal
        self.name = name
        self.url = url
        self.path = Path(path)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.title: str = str(self.metadata.get("title") or id)
        self._storage_options = dict(storage_options or {})
        self._fs: Any = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], storage_options: Mapping[str, Any] | None = None) -> Dataset:
        """Build from one ``datasets`` entry of the session manifest."""
        try:
            return cls(
                id=entry["id"],
                proposal=entry["proposal"],
                name=entry["name"],
                url=entry["url"],
                path=entry["mount"],
                metadata=entry.get("metadata") or {},
                storage_options=storage_options,
            )
        except (KeyError, TypeError) as e:
            raise DassDataError(f"invalid dataset entry in the session manifest ({e!r}): {entry!r}") from None

    @property
    def fs(self) -> Any:
        """An fsspec filesystem rooted at the dataset folder (paths are relative to it).

        A ``DirFileSystem`` over the repository's backend (local folder or S3), so that
        ``ds.fs.ls("")``, ``ds.fs.open("raw/x.tif")``, ``ds.fs.glob("**/*.tif")`` work the same
        everywhere. Treat it as read-only.
        """
        if self._fs is None:
            import fsspec
            from fsspec.implementations.dirfs import DirFileSystem

            from . import dassfs  # noqa: F401 - registers dass:// where the entry point is not installed

            backend, inner = fsspec.core.url_to_fs(self.url, **self._storage_options)
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
        return self.fs.open(path.lstrip("/"), mode, **kwargs)

    def ls(self, path: str = "") -> list[str]:
        """Names (relative to the dataset folder) of the entries of ``path``, sorted."""
        names = self.fs.ls(path.strip("/"), detail=False)
        return sorted(str(n).rstrip("/") for n in names)

    def __repr__(self) -> str:
        return f"<Dataset {self.id!r} {self.title!r} at {self.path}>"

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
    storage = doc.get("storage") or {}
    options = storage.get("options") or {}
    entries: Iterable[Mapping[str, Any]] = doc.get("datasets", [])
    return DatasetList(Dataset.from_entry(e, options) for e in entries)


def repository(manifest: str | os.PathLike[str] | None = None) -> Any:
    """The repository storage this session (or job) reads from, as a
    :class:`dass.data.storage.Storage` -- for what lives beside the datasets, such as the SEM
    model registry (``models/``). Raises :class:`DassDataError` as :func:`datasets` does."""
    from .storage import Storage

    path = _manifest_path(manifest)
    datasets(path)  # the same checks and messages
    storage = json.loads(path.read_text(encoding="utf-8")).get("storage") or {}
    if not storage.get("url"):
        raise DassDataError(f"session manifest {path} names no repository storage; restart your server")
    return Storage(url=storage["url"], options=dict(storage.get("options") or {}))


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

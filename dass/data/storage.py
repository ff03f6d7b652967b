"""The repository storage: one fsspec URL plus storage options reaches every byte of data.

The repository is a tree ``<root>/<proposal>/<dataset>/`` (docs/metadata.md). ``root`` is any
fsspec URL: ``file:///srv/repo`` on one machine, ``s3://bucket/prefix`` on Ceph RGW, MinIO or
AWS. The hub, the service, sessions and jobs all reach it through :class:`Storage`, configured
once (``c.Storage.url``, ``c.Storage.options``).

Every backend exception (botocore, aiohttp, ``OSError``) leaving this module is translated into
:class:`~dass.data.errors.StorageError` with a message that says what to fix.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from traitlets import Dict, TraitError, Unicode, default, observe, validate
from traitlets.config import LoggingConfigurable

from .errors import DassDataError, StorageError
from .metadata import NAME_RE
from .paths import state_dir

__all__ = ["Storage", "S3_DEFAULT_CONFIG_KWARGS"]

#: botocore client settings merged into s3 storage options when the deployer set no
#: ``config_kwargs``: an unreachable endpoint fails within seconds, not minutes.
S3_DEFAULT_CONFIG_KWARGS: dict[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 10,
    "retries": {"max_attempts": 2},
}


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exception classes meaning "the endpoint cannot be reached" (backends imported lazily)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        # EndpointConnectionError, ConnectTimeoutError, SSLError; ReadTimeoutError, …
        errors += [BotoConnectionError, HTTPClientError]
    except ImportError:  # pragma: no cover - s3fs brings botocore
        pass
    try:
        import aiohttp

        errors += [aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from fsspec.exceptions import FSTimeoutError

        errors.append(FSTimeoutError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


@functools.cache
def _credential_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        return (NoCredentialsError, PartialCredentialsError)
    except ImportError:  # pragma: no cover
        return ()


@functools.cache
def _other_backend_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return text or type(err).__name__


class Storage(LoggingConfigurable):
    """Where the repository lives, and how to read it.

    Examples
    --------
    One machine (the default is ``file://<state dir>/repository``)::

        c.Storage.url = "file:///srv/dass/repository"

    S3 (Ceph RGW, MinIO, AWS)::

        c.Storage.url = "s3://facility-data/repository"
        c.Storage.options = {
            "endpoint_url": "https://rgw.example.org",
            "key": "…",
            "secret": "…",
        }
    """

    url = Unicode(
        config=True,
        help="""fsspec URL of the repository root, the folder that holds one folder per
        proposal, each holding one folder per dataset (see docs/metadata.md). Examples:
        ``file:///srv/dass/repository`` on one machine, ``s3://bucket/prefix`` for S3 (Ceph
        RGW, MinIO, AWS; set the endpoint and credentials in ``c.Storage.options``). A plain
        absolute path is taken as a ``file://`` URL. The same URL serves the hub, the dass
        service, sessions and jobs. Default: ``file://<state dir>/repository``, the state
        dir being ``c.Platform.state_dir``, else ``$DASS_STATE_DIR``, else ``./.dass``.""",
    )

    options = Dict(
        config=True,
        help="""fsspec storage options passed with ``c.Storage.url`` to the filesystem, e.g.
        for S3 ``{"endpoint_url": "https://rgw.example.org", "key": "…", "secret": "…"}``
        (see the s3fs documentation for all of them). For S3, unless ``config_kwargs`` is
        given here, dass adds ``config_kwargs={"connect_timeout": 3, "read_timeout": 10,
        "retries": {"max_attempts": 2}}`` so that an unreachable endpoint fails within
        seconds. These options are written, readable only by the user, into each session's
        manifest so that the session can read the datasets it was given.""",
    )

    lock_dir = Unicode(
        config=True,
        help="""Local folder of the per-dataset locks that serialize writes of ``dataset.json``
        (SEM labels, ``dass stm annotate``, job results; see dass.data.metadata_writer): one
        file ``<lock_dir>/<proposal>/<dataset>.lock`` held with ``flock``. Every process that
        writes metadata of this repository on this machine (the dass service, the ``dass``
        command line) must use the same folder. Default: ``<state dir>/locks``.""",
    )

    _fs: Any = None
    _root: str | None = None

    @default("url")
    def _default_url(self) -> str:
        return "file://" + str(state_dir(self.config) / "repository")

    @default("lock_dir")
    def _default_lock_dir(self) -> str:
        return str(state_dir(self.config) / "locks")

    @validate("url")
    def _validate_url(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"]).strip()
        if not value:
            raise TraitError("Storage.url must not be empty: set an fsspec URL such as file:///srv/repo")
        if "://" not in value and "::" not in value:
            if not os.path.isabs(value):
                raise TraitError(
                    f"Storage.url {value!r} is neither a URL nor an absolute path: "
                    "write file:///absolute/path or s3://bucket/prefix"
                )
            value = "file://" + value
        if len(value) > len(value.split("://", 1)[0]) + 4:  # keep file:/// intact
            value = value.rstrip("/")
        return value

    @observe("url", "options")
    def _reset_fs(self, change: dict[str, Any]) -> None:
        self._fs = None
        self._root = None

    # -----------------------------------------------------------------------------------------
    # the filesystem

    @property
    def protocol(self) -> str:
        """The URL's protocol: ``"file"``, ``"s3"``, … (``"file"`` for a plain path)."""
        head = self.url.split("::", 1)[0]
        protocol = head.split("://", 1)[0] if "://" in head else "file"
        return "file" if protocol == "local" else protocol

    @property
    def is_local(self) -> bool:
        """True when the repository is a folder of this machine (``file://``)."""
        return self.protocol == "file"

    @property
    def storage_options(self) -> dict[str, Any]:
        """The options actually passed to fsspec: ``options`` plus the S3 timeout defaults."""
        options = copy.deepcopy(dict(self.options))
        if self.protocol in ("s3", "s3a") and "config_kwargs" not in options:
            options["config_kwargs"] = copy.deepcopy(S3_DEFAULT_CONFIG_KWARGS)
        return options

    @property
    def endpoint(self) -> str:
        """The S3 endpoint in use, for messages (``"the default AWS endpoint"`` when none)."""
        options = self.options
        endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
        if endpoint:
            return str(endpoint)
        if self.protocol in ("s3", "s3a"):
            return "the default AWS S3 endpoint"
        return self.url

    def _connect(self) -> None:
        try:
            fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except (ImportError, ValueError) as e:
            raise StorageError(
                f"cannot use storage URL {self.url}: {_reason(e)}; "
                "check c.Storage.url (and that the fsspec backend for its protocol is installed)"
            ) from e
        except TypeError as e:
            raise StorageError(
                f"invalid storage options for {self.url}: {_reason(e)}; check c.Storage.options"
            ) from e
        root = root.rstrip("/")
        if not root and self.is_local:
            root = "/"
        self._fs, self._root = fs, root

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of the repository (created once, reset when config changes)."""
        if self._fs is None:
            self._connect()
        return self._fs

    @property
    def root(self) -> str:
        """Path of the repository root inside :attr:`fs`, without a trailing slash."""
        if self._root is None:
            self._connect()
        assert self._root is not None
        return self._root

    def join(self, *parts: str) -> str:
        """Path inside :attr:`fs` of ``root/part/part…``."""
        base = self.root.rstrip("/")
        rest = "/".join(p.strip("/") for p in parts if p)
        return f"{base}/{rest}" if rest else self.root

    def url_of(self, path: str) -> str:
        """Full URL of a path inside :attr:`fs` (``file:///…``, ``s3://bucket/…``)."""
        if self.is_local:
            return "file://" + path
        return f"{self.protocol}://{path.lstrip('/')}"

    def dataset_path(self, proposal: str, name: str) -> str:
        """Path inside :attr:`fs` of a dataset folder.

        Raises
        ------
        StorageError
            When ``proposal`` or ``name`` is not a valid folder name (see ``NAME_RE``).
        """
        for kind, value in (("proposal", proposal), ("dataset", name)):
            if not isinstance(value, str) or not NAME_RE.match(value):
                raise StorageError(
                    f"invalid {kind} name {value!r}: names are 1-64 letters, digits, '.', '_' "
                    "or '-', starting with a letter or digit"
                )
        return self.join(proposal, name)

    def dataset_url(self, proposal: str, name: str) -> str:
        """Full URL of a dataset folder, e.g. ``s3://bucket/prefix/p1/d1``."""
        return self.url_of(self.dataset_path(proposal, name))

    # -----------------------------------------------------------------------------------------
    # error translation

    @contextlib.contextmanager
    def translate_errors(self, what: str) -> Iterator[None]:
        """Turn backend exceptions raised inside the block into :class:`StorageError`.

        Parameters
        ----------
        what : str
            What was being done, for the message (e.g. ``"listing s3://bucket/p1"``).
        """
        try:
            yield
        except DassDataError:
            raise
        except _connection_errors() as e:
            if self.is_local:
                raise StorageError(f"{what}: {_reason(e)}") from e
            raise StorageError(
                f"cannot reach the storage endpoint {self.endpoint}: {_reason(e)}; "
                "check c.Storage.options['endpoint_url'] and that the server is running"
            ) from e
        except _credential_errors() as e:
            raise StorageError(
                f"{what}: no usable credentials for {self.endpoint} ({_reason(e)}); "
                "set c.Storage.options['key'] and c.Storage.options['secret']"
            ) from e
        except PermissionError as e:
            raise StorageError(
                f"permission denied {what}: {_reason(e)}; check the credentials in "
                "c.Storage.options and the permissions of the repository"
            ) from e
        except FileNotFoundError as e:
            raise StorageError(f"{what}: not found ({_reason(e)})") from e
        except _other_backend_errors() as e:
            raise StorageError(f"{what}: {type(e).__name__}: {_reason(e)}") from e

    # -----------------------------------------------------------------------------------------
    # operations

    def check(self) -> None:
        """Verify that the repository root can be listed.

        Raises
        ------
        StorageError
            With a message naming the fix: root missing, endpoint unreachable, bucket missing,
            permission denied, bad credentials.
        """
        fs, root = self.fs, self.root
        missing = f"repository root {self.url} does not exist: create it or set c.Storage.url"
        if self.is_local:
            if not os.path.isdir(root):
                raise StorageError(missing)
            if not os.access(root, os.R_OK | os.X_OK):
                raise StorageError(
                    f"permission denied reading the repository root {self.url}: "
                    "let the hub and service users read it, or set c.Storage.url"
                )
            return
        with self.translate_errors(f"checking the repository root {self.url}"):
            fs.invalidate_cache(root)
            bucket = root.split("/", 1)[0]
            try:
                fs.ls(root, detail=False)
            except FileNotFoundError:
                if self.protocol in ("s3", "s3a"):
                    if root == bucket or not fs.exists(bucket):
                        raise StorageError(
                            f"bucket {bucket!r} does not exist on {self.endpoint}: create it "
                            f"(e.g. `aws s3 mb s3://{bucket}`) or fix c.Storage.url"
                        ) from None
                    raise StorageError(
                        f"repository root {self.url} does not exist (bucket {bucket!r} holds "
                        "nothing under this prefix): upload the repository there or set "
                        "c.Storage.url"
                    ) from None
                raise StorageError(missing) from None
        self.log.debug("Storage: repository root %s is reachable", self.url)

    def _subdirs(self, path: str) -> list[str]:
        """Names of the visible, validly named sub-folders of ``path`` (sorted)."""
        with self.translate_errors(f"listing {self.url_of(path)}"):
            entries = self.fs.ls(path, detail=True)
        names = []
        for entry in entries:
            if entry.get("type") != "directory":
                continue
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if NAME_RE.match(name):
                names.append(name)
            elif not name.startswith("."):
                self.log.debug("Storage: ignoring folder %s (not a valid name)", self.url_of(entry["name"]))
        return sorted(set(names))

    def iter_proposal_dirs(self) -> Iterator[tuple[str, str]]:
        """Yield ``(proposal, path)`` for each proposal folder under the root.

        Only names matching ``NAME_RE`` are yielded (so hidden folders are skipped). Listings
        are read fresh (fsspec's listing cache is cleared first).
        """
        self.check()
        with self.translate_errors(f"listing {self.url}"):
            self.fs.invalidate_cache(self.root)
        for proposal in self._subdirs(self.root):
            yield proposal, self.join(proposal)

    def iter_dataset_dirs(self) -> Iterator[tuple[str, str, str]]:
        """Yield ``(proposal, dataset, path)`` for each dataset folder of the repository.

        ``path`` is the folder's path inside :attr:`fs`. Only names matching ``NAME_RE`` are
        yielded; hidden folders are skipped.
        """
        for proposal, ppath in self.iter_proposal_dirs():
            for name in self._subdirs(ppath):
                yield proposal, name, self.join(proposal, name)

    def list_files(self, path: str) -> dict[str, int]:
        """All files below a folder, as ``{relative path: size in bytes}``.

        Raises
        ------
        StorageError
            When the folder cannot be listed.
        """
        base = path.rstrip("/")
        with self.translate_errors(f"listing {self.url_of(base)}"):
            self.fs.invalidate_cache(base)
            found = self.fs.find(base, detail=True)
        files: dict[str, int] = {}
        for full, info in found.items():
            if info.get("type", "file") != "file" or full.endswith("/"):
                continue
            rel = full[len(base) + 1 :] if full.startswith(base + "/") else full.rsplit("/", 1)[-1]
            files[rel] = int(info.get("size") or 0)
        return files

    def exists(self, path: str) -> bool:
        """Whether ``path`` (inside :attr:`fs`) exists."""
        with self.translate_errors(f"looking up {self.url_of(path)}"):
            return bool(self.fs.exists(path))

    def read_bytes(self, path: str, max_bytes: int) -> bytes:
        """Read a whole (small) file.

        Parameters
        ----------
        path : str
            Path inside :attr:`fs`.
        max_bytes : int
            Largest size accepted; at most ``max_bytes + 1`` bytes are transferred.

        Raises
        ------
        StorageError
            When the file is missing, unreadable, or larger than ``max_bytes``.
        """
        url = self.url_of(path)
        with self.translate_errors(f"reading {url}"):
            data = self.fs.cat_file(path, start=0, end=max_bytes + 1)
        if len(data) > max_bytes:
            raise StorageError(f"{url} is larger than the limit of {max_bytes} bytes")
        return data

    def local_path(self, path: str) -> Path:
        """The local filesystem path of ``path`` (only for ``file://`` storage)."""
        if not self.is_local:
            raise StorageError(f"{self.url} is not a local folder; use Storage.fs to read it")
        return Path(path)

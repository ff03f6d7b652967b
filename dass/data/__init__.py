"""dass.data: the repository, its catalogue, access rules and the session API.

``import dass.data`` stays light: the errors are imported at once, everything else (traitlets,
fsspec, SQLAlchemy, Alembic) on first use of the name.

Inside a session::

    from dass.data import datasets
    ds = datasets()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DassDataError, MetadataError, StorageError

if TYPE_CHECKING:  # pragma: no cover
    from .access import Identity, can_see
    from .catalog import Catalog
    from .session import Dataset, datasets
    from .storage import Storage

__all__ = [
    "datasets",
    "input_dataset",
    "output_dir",
    "repository",
    "Dataset",
    "Storage",
    "Catalog",
    "Identity",
    "can_see",
    "MetadataError",
    "StorageError",
    "DassDataError",
]

_LAZY = {
    "datasets": "session",
    "input_dataset": "session",
    "output_dir": "session",
    "repository": "session",
    "Dataset": "session",
    "Storage": "storage",
    "Catalog": "catalog",
    "Identity": "access",
    "can_see": "access",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""JSON-able Python from the values STM readers return (numpy scalars and arrays, h5py
attributes, library tuples, bytes), for normalized metadata and ``dataset.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

__all__ = ["plain"]


def plain(value: Any, text: Callable[[Any], str] | None = None) -> Any:
    """``value`` as plain JSON-able Python: arrays and tuples to lists, numpy scalars to Python
    numbers, mappings to dicts with text keys, recursively. Text (``str``/``bytes``) goes through
    ``text`` when given (a format's own decoding); else bytes are decoded as UTF-8 (undecodable
    bytes replaced) and strings are kept."""
    if isinstance(value, (str, bytes)):
        if text is not None:
            return text(value)
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if isinstance(value, np.ndarray):
        return plain(value.tolist() if value.ndim else value.item(), text)
    if isinstance(value, np.generic):
        return plain(value.item(), text)
    if isinstance(value, Mapping):
        return {str(k): plain(v, text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, text) for v in value]
    return value

"""Omicron MATRIX images read through ``access2theMatrix``.

A MATRIX measurement is a chain of files in one folder: data files named
``<chain>--<session>_<cycle>.<channel>_mtrx`` (e.g. ``default_2014Jun04-094807_STM-STM_Spectroscopy--1_1.Z_mtrx``)
and the *result file* ``<chain>_0001.mtrx`` (continued in ``_0002.mtrx``, …) that holds the
parameters of all of them. ``access2theMatrix.MtrxData().open(data_file)`` needs both.

:func:`open_matrix` checks the name, the ``ONTMATRX0101`` signature of both files and that the
result file exists next to the data file, then lets access2theMatrix read it, and raises
:class:`~dass.stm.errors.MatrixFileError` naming the file (and the missing result file) when
something is wrong. :meth:`MatrixFile.image` returns one trace (``"forward/up"``,
``"backward/up"``, ``"forward/down"``, ``"backward/down"``) as a
:class:`~dass.stm.still.StillImage`, with access2theMatrix's array as it returns it.

Limitation, stated honestly: no MATRIX sample files are publicly distributed, so dass's tests
cover only the error paths (missing result file, not a MATRIX file, damaged file); reading real
MATRIX images is untested here and relies on access2theMatrix alone.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MatrixFileError
from .values import plain
from .still import StillImage

__all__ = ["TRACES", "MatrixFile", "open_matrix", "read_matrix", "result_file_for"]

log = logging.getLogger(__name__)

#: Image traces of access2theMatrix (``MtrxData.ALL_2D_TRACES``).
TRACES: tuple[str, ...] = ("forward/up", "backward/up", "forward/down", "backward/down")
_SIGNATURE = b"ONTMATRX0101"
_NAME = re.compile(r"^(?P<chain>.+)--(?P<session>\d+)_(?P<cycle>\d+)\.(?P<channel>[^.]+)_mtrx$")


def result_file_for(data_file: str | os.PathLike[str]) -> Path:
    """The ``*_0001.mtrx`` result file that access2theMatrix needs for ``data_file``.

    Raises
    ------
    MatrixFileError
        The name is not ``<chain>--<session>_<cycle>.<channel>_mtrx``.
    """
    path = Path(data_file)
    match = _NAME.match(path.name)
    if not match:
        raise MatrixFileError(
            os.fspath(data_file),
            "not a MATRIX data file name: expected <name>--<session>_<cycle>.<channel>_mtrx "
            "(e.g. default_2014Jun04-094807_STM-STM_Spectroscopy--1_1.Z_mtrx); keep the "
            "name the instrument gave it",
        )
    return path.with_name(f"{match['chain']}_0001.mtrx")


def _signature_ok(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_SIGNATURE)) == _SIGNATURE


def _parameter(param: dict[str, Any], name: str) -> dict[str, Any] | None:
    """``{"value", "unit"}`` from an ``EEPA::`` parameter stored as ``[value, unit]``."""
    stored = param.get(f"EEPA::{name}")
    if not isinstance(stored, (list, tuple)) or not stored:
        return None
    value = plain(stored[0])
    unit = str(stored[1]) if len(stored) > 1 else ""
    return {"value": value, "unit": unit}


class MatrixFile:
    """An opened MATRIX data file: access2theMatrix's ``MtrxData`` plus catalogue metadata.

    Attributes
    ----------
    path : str
    mtrx : access2theMatrix.MtrxData
    traces : list of str
        The image traces this file holds.
    metadata : dict
        JSON-able: ``format``, ``channel``, ``unit``, ``traces``, ``session``, ``cycle``,
        ``sample``, ``comment`` (creation comment), ``data_set``, ``bias`` and ``setpoint``
        (when the parameters hold them), ``parameters`` (every experiment-element parameter).
    """

    def __init__(self, path: str, mtrx: Any, metadata: dict[str, Any]) -> None:
        self.path = path
        self.mtrx = mtrx
        self.metadata = metadata
        self.traces: list[str] = list(metadata["traces"])

    def __repr__(self) -> str:
        return f"<MatrixFile {self.path!r}: {self.metadata['channel']}, traces {', '.join(self.traces)}>"

    def image(self, trace: str = "forward/up") -> StillImage:
        """One trace as a :class:`StillImage` (pixel size from the image width/height).

        Raises
        ------
        MatrixFileError
            The file has no such trace (the message lists those it has).
        """
        if trace not in self.traces:
            raise MatrixFileError(
                self.path, f"no trace {trace!r}; the file has {', '.join(self.traces) or 'none'}"
            )
        im, message = self.mtrx.select_image(trace)
        data = np.asarray(im.data, dtype=np.float64)
        if data.ndim != 2 or 0 in data.shape:
            raise MatrixFileError(self.path, f"access2theMatrix returned no image for {trace!r}: {message}")
        rows, cols = data.shape
        width, height = float(im.width), float(im.height)
        pixel_size = (width / cols, height / rows) if width > 0 and height > 0 else None
        name, unit = (list(im.channel_name_and_unit) + ["", ""])[:2]
        metadata = dict(self.metadata) | {
            "source": self.path,
            "points_x": cols,
            "points_y": rows,
            "size_x": {"value": width, "unit": "m"},
            "size_y": {"value": height, "unit": "m"},
            "offset_x": {"value": float(im.x_offset), "unit": "m"},
            "offset_y": {"value": float(im.y_offset), "unit": "m"},
            "orientation": "as access2theMatrix returns it",
        }
        if hasattr(im, "angle"):
            metadata["angle"] = {"value": float(im.angle), "unit": "deg"}
        return StillImage(
            data, channel=str(name or self.metadata["channel"]), unit=str(unit),
            direction=trace, pixel_size=pixel_size, metadata=metadata,
        )


def open_matrix(path_or_url: str | os.PathLike[str]) -> MatrixFile:
    """Open a MATRIX image data file with access2theMatrix after checking it.

    Parameters
    ----------
    path_or_url : str or path-like
        The data file (``*.Z_mtrx``, ``*.I_mtrx``, …). A remote URL is not supported (the
        result file must be found next to it); mount or copy the folder first.

    Raises
    ------
    FileNotFoundError
        No such data file.
    MatrixFileError
        A name that is not a MATRIX data file name, no ``ONTMATRX0101`` signature (not a MATRIX
        file), the ``*_0001.mtrx`` result file missing next to it or not a MATRIX file, a
        spectroscopy curve instead of an image, or access2theMatrix cannot read it (its
        message is quoted).
    """
    shown = os.fspath(path_or_url) if isinstance(path_or_url, os.PathLike) else str(path_or_url)
    if "://" in shown and not shown.startswith("file://"):
        raise MatrixFileError(shown, "MATRIX files are read from a folder (the result file must lie "
                              "next to the data file); use the mounted dataset path")
    path = Path(shown.removeprefix("file://"))
    if not path.exists():
        raise FileNotFoundError(f"{shown}: no such file")
    if path.is_dir():
        raise MatrixFileError(shown, "is a folder, not a MATRIX data file")
    result = result_file_for(path)
    if not _signature_ok(path):
        raise MatrixFileError(shown, "not a MATRIX file: it does not start with the ONTMATRX0101 signature")
    if not result.exists():
        raise MatrixFileError(
            shown,
            f"the MATRIX result file {result.name} is missing; access2theMatrix needs it in the "
            f"same folder ({result.parent}) to read the data file: copy the whole measurement "
            "folder",
        )
    if not _signature_ok(result):
        raise MatrixFileError(
            shown, f"the result file {result.name} is not a MATRIX file (no ONTMATRX0101 signature)"
        )
    channel = _NAME.match(path.name)["channel"]  # type: ignore[index]
    if "(" in channel:
        raise MatrixFileError(shown, f"channel {channel!r} is a spectroscopy curve, not an image")

    from access2thematrix import MtrxData

    mtrx = MtrxData()
    traces, message = mtrx.open(str(path))
    if not str(message).startswith("Successfully") or mtrx.scan is None:
        raise MatrixFileError(shown, f"access2theMatrix cannot read it: {message}")
    image_traces = [t for t in traces.values() if t in TRACES]
    if not image_traces:
        raise MatrixFileError(shown, f"holds no image (object type {mtrx.object_type!r})")
    name, unit = (list(mtrx.channel_name_and_unit) + ["", ""])[:2]
    eepas, _ = mtrx.get_experiment_element_parameters()
    metadata: dict[str, Any] = {
        "format": "Omicron MATRIX",
        "channel": str(name or channel),
        "unit": str(unit),
        "traces": image_traces,
        "session": mtrx.session,
        "cycle": mtrx.cycle,
        "sample": str(mtrx.sample_name or "").strip(),
        "comment": str(mtrx.creation_comment or "").strip(),
        "data_set": str(mtrx.data_set_name or "").strip(),
        "bias": _parameter(mtrx.param, "GapVoltageControl.Voltage"),
        "setpoint": _parameter(mtrx.param, "Regulator.Setpoint_1"),
        "result_file": result.name,
        "parameters": {str(p[0]): plain(p[1:]) for p in eepas},
    }
    log.debug("opened MATRIX file %s: traces %s", shown, image_traces)
    return MatrixFile(shown, mtrx, {k: v for k, v in metadata.items() if v is not None})


def read_matrix(path_or_url: str | os.PathLike[str], trace: str = "forward/up") -> StillImage:
    """Shortcut: ``open_matrix(path).image(trace)``."""
    return open_matrix(path_or_url).image(trace)

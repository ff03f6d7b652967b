"""Nanonis ``.sxm`` scans and ``.dat`` point spectra, read through ``nanonispy2``.

:func:`open_sxm` checks the file, reads it with :class:`nanonispy2.read.Scan` and returns a
:class:`SxmFile`: the channels (name, unit, directions), a normalised, JSON-able ``metadata``
dict for the catalogue (points, scan range in metres, offset, angle, scan direction, bias,
feedback setpoint, date, temperature, comment, every header entry under ``attributes``) and
:meth:`SxmFile.image` for one channel and direction as a :class:`~dass.stm.still.StillImage`.
:func:`open_dat` does the same for bias spectroscopy and other ``.dat`` files (:class:`Spectrum`).

Orientation. nanonispy2 returns the lines in the order they were recorded. With ``orient=True``
(the default) :meth:`SxmFile.image` returns them as Nanonis and Gwyddion display them: row 0 is
the top of the scan frame (an ``up`` scan, recorded bottom to top, is flipped vertically) and
backward images are mirrored left-right so that they overlay the forward ones.
``orient=False`` gives nanonispy2's arrays unchanged.

Errors are :class:`~dass.stm.errors.NanonisFileError` naming the file: wrong extension, not a
Nanonis file (no header end tag), a header without the fields a scan needs, a truncated data
block, an unknown channel or direction.

Examples
--------
>>> sxm = open_sxm("Au_mica_058.sxm")  # doctest: +SKIP
>>> sxm.channel_names, sxm.metadata["bias"]  # doctest: +SKIP
(['Z', 'Current'], {'value': -0.05, 'unit': 'V'})
>>> sxm.image("Z", "backward").pixel_size  # doctest: +SKIP
(1.5625e-11, 1.5625e-11)
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NanonisFileError
from .values import plain
from .still import StillImage

__all__ = [
    "DIRECTIONS",
    "SxmFile",
    "Spectrum",
    "open_sxm",
    "read_sxm",
    "open_dat",
    "sxm_metadata",
    "dat_metadata",
]

log = logging.getLogger(__name__)

#: Scan directions of an ``.sxm`` channel.
DIRECTIONS: tuple[str, ...] = ("forward", "backward")

# header fields nanonispy2 needs to parse a scan (it raises a bare KeyError without them)
_SXM_REQUIRED = ("scan_pixels", "scan_range", "scan_offset", "scan_time", "bias", "acq_time")


# ---------------------------------------------------------------------------------------------
# values


def _number(text: Any) -> float | None:
    """A header number as float: ``'-50E-3'``, ``'1,5951E+0'`` (decimal comma), ``'Inf'``;
    ``None`` for text that is not a number (``'N/A'``, ``''``)."""
    if isinstance(text, (int, float, np.number)) and not isinstance(text, bool):
        return float(text)
    if isinstance(text, np.ndarray) and text.size == 1:
        return float(text.item())
    if not isinstance(text, str):
        return None
    cleaned = text.strip().replace(",", ".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _quantity(value: Any, unit: str) -> dict[str, Any] | None:
    number = _number(value)
    if number is None or not math.isfinite(number):
        return None
    return {"value": number, "unit": unit}


def _date(date_text: str, time_text: str = "") -> str:
    """``'12.05.2023'`` + ``'13:50:59'`` -> ``'2023-05-12T13:50:59'`` (ISO 8601, local time of
    the instrument; Nanonis stores no time zone). Unparseable text is returned unchanged."""
    text = f"{date_text.strip()} {time_text.strip()}".strip()
    for fmt in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return text


def _unit_in_name(name: str) -> tuple[str, str]:
    """``'Current (A)'`` -> ``('Current', 'A')``; ``'Bias calc (V)'`` -> ``('Bias calc', 'V')``."""
    match = re.fullmatch(r"(.*?)\s*\(([^()]*)\)\s*(\[.*\])?", name.strip())
    if not match:
        return name.strip(), ""
    base = match.group(1) + (f" {match.group(3)}" if match.group(3) else "")
    return base, match.group(2)


def _find(header: Mapping[str, Any], pattern: str) -> Any:
    """The first header value whose (lower-case) key matches ``pattern``."""
    regex = re.compile(pattern)
    for key, value in header.items():
        if regex.fullmatch(str(key).lower()):
            return value
    return None


# ---------------------------------------------------------------------------------------------
# locating and checking files


def _local(path_or_url: str | os.PathLike[str]) -> tuple[Path, Path | None, str]:
    from .fast import _local_path  # the same fsspec copy rule as FAST files

    shown = os.fspath(path_or_url) if isinstance(path_or_url, os.PathLike) else str(path_or_url)
    local, tmpdir = _local_path(path_or_url)
    return local, tmpdir, shown


def _check_file(path: Path, shown: str, ext: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{shown}: no such file")
    if path.is_dir():
        raise NanonisFileError(shown, f"is a folder, not a Nanonis .{ext} file")
    if path.suffix != f".{ext}":
        raise NanonisFileError(
            shown,
            f"not a Nanonis .{ext} file (the extension is {path.suffix or 'missing'!r}; "
            f"nanonispy2 reads only files named *.{ext})",
        )
    if path.stat().st_size == 0:
        raise NanonisFileError(shown, "empty file (0 bytes): the copy or the recording was cut")


def _nanonis_call(shown: str, kind: str, make: Any) -> Any:
    """Run a nanonispy2 constructor and turn its errors into :class:`NanonisFileError`."""
    from nanonispy2.read import FileHeaderNotFoundError, UnhandledFileError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "non-utf-8 characters": decoded with replacement
            return make()
    except FileHeaderNotFoundError as exc:
        raise NanonisFileError(
            shown, f"no header end tag ({exc}): not a Nanonis {kind} file, or one cut off "
            "within its header"
        ) from None
    except UnhandledFileError as exc:
        raise NanonisFileError(shown, f"not a Nanonis {kind} file: {exc}") from None
    except KeyError as exc:
        raise NanonisFileError(
            shown, f"Nanonis {kind} header lacks the field {exc.args[0]!r}; the file is damaged "
            "or was written by an unsupported program"
        ) from None
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise NanonisFileError(
            shown, f"unreadable Nanonis {kind} file, truncated or damaged ({detail})"
        ) from None


# ---------------------------------------------------------------------------------------------
# .sxm


def sxm_metadata(header: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise a parsed ``.sxm`` header (``nanonispy2.read.Scan(...).header``).

    Returns
    -------
    dict
        JSON-able: ``format``, ``points_x``/``points_y``, ``size_x``/``size_y`` and
        ``offset_x``/``offset_y`` (``{"value", "unit": "m"}``), ``angle`` (degrees),
        ``scan_direction`` (``"up"``/``"down"``), ``bias`` (V), ``setpoint`` (with the feedback
        signal's unit), ``feedback`` (controller name), ``date`` (ISO 8601, instrument time),
        ``acquisition_time`` (s), ``line_time`` (s per line, forward/backward), ``temperature``
        (K, when recorded), ``comment``, ``software``, ``channels`` (name, unit, direction,
        calibration, offset) and ``attributes`` (every header entry, as stored).
    """
    pixels = [int(v) for v in np.asarray(header["scan_pixels"]).tolist()]
    scan_range = [float(v) for v in np.asarray(header["scan_range"]).tolist()]
    offset = [float(v) for v in np.asarray(header["scan_offset"]).tolist()]
    info = header.get("data_info") or {}
    channels = []
    for i, name in enumerate(info.get("Name", ())):
        def column(key: str, default: str = "") -> str:
            values = info.get(key, ())
            return values[i] if i < len(values) else default

        channels.append(
            {
                "name": name,
                "unit": column("Unit"),
                "direction": column("Direction", "both"),
                "calibration": _number(column("Calibration")),
                "offset": _number(column("Offset")),
            }
        )
    setpoint_unit = str(header.get("z-controller>setpoint unit", "")).strip()
    setpoint = _quantity(header.get("z-controller>setpoint"), setpoint_unit)
    if setpoint is None:  # older files: only the :Z-CONTROLLER: table, "2.500E-11 A"
        table = header.get("z-controller") or {}
        text = (table.get("Setpoint") or ("",))[0]
        value, _, unit = str(text).partition(" ")
        setpoint = _quantity(value, unit.strip())
    feedback = header.get("z-controller>controller name")
    if feedback is None:
        feedback = ((header.get("z-controller") or {}).get("Name") or ("",))[0]
    line_time = [float(v) for v in np.asarray(header.get("scan_time", [])).tolist()]
    temperature = _find(header, r"temperature \d+>temperature \d+ \(k\)")
    md: dict[str, Any] = {
        "format": "Nanonis SXM",
        "points_x": pixels[0],
        "points_y": pixels[1],
        "size_x": {"value": scan_range[0], "unit": "m"},
        "size_y": {"value": scan_range[1], "unit": "m"},
        "offset_x": {"value": offset[0], "unit": "m"},
        "offset_y": {"value": offset[1], "unit": "m"},
        "angle": _quantity(header.get("scan_angle", 0), "deg"),
        "scan_direction": str(header.get("scan_dir", "")).strip(),
        "bias": _quantity(header.get("bias"), "V"),
        "setpoint": setpoint,
        "feedback": str(feedback).strip(),
        "date": _date(str(header.get("rec_date", "")), str(header.get("rec_time", ""))),
        "acquisition_time": _quantity(header.get("acq_time"), "s"),
        "line_time": (
            {"forward": line_time[0], "backward": line_time[1], "unit": "s"}
            if len(line_time) == 2 else None
        ),
        "temperature": _quantity(temperature, "K") if temperature is not None else None,
        "comment": str(header.get("comment", "")).strip(),
        "software": str(header.get("nanonismain>sw version", "")).strip(),
        "nanonis_version": str(header.get("nanonis_version", "")).strip(),
        "channels": channels,
        "attributes": {str(k): plain(v) for k, v in header.items()},
    }
    return {k: v for k, v in md.items() if v is not None}


class SxmFile:
    """An opened Nanonis scan: nanonispy2's ``Scan`` plus catalogue metadata.

    Made by :func:`open_sxm`.

    Attributes
    ----------
    path : str
        The file as given.
    scan : nanonispy2.read.Scan
        nanonispy2's object (``scan.header``, ``scan.signals[name][direction]``).
    metadata : dict
        See :func:`sxm_metadata`.
    """

    def __init__(self, path: str, scan: Any, metadata: dict[str, Any]) -> None:
        self.path = path
        self.scan = scan
        self.metadata = metadata

    def __repr__(self) -> str:
        md = self.metadata
        return (
            f"<SxmFile {self.path!r}: {md['points_x']}x{md['points_y']} px, "
            f"channels {', '.join(self.channel_names)}>"
        )

    @property
    def channel_names(self) -> list[str]:
        """Channel names in file order (``'Z'``, ``'Current'``, …)."""
        return [c["name"] for c in self.metadata["channels"]]

    def unit(self, channel: str) -> str:
        """The unit of ``channel`` as the header gives it."""
        return next(c["unit"] for c in self.metadata["channels"] if c["name"] == channel)

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        """``(dx, dy)`` in metres (scan range / pixels), ``None`` if the range is not positive."""
        md = self.metadata
        dx = md["size_x"]["value"] / md["points_x"]
        dy = md["size_y"]["value"] / md["points_y"]
        return (dx, dy) if dx > 0 and dy > 0 else None

    def image(self, channel: str | None = None, direction: str = "forward", *, orient: bool = True) -> StillImage:
        """One channel and direction as a :class:`StillImage`.

        Parameters
        ----------
        channel : str, optional
            A name of :attr:`channel_names`; default ``"Z"`` when present, else the first one.
        direction : {"forward", "backward"}
        orient : bool
            True: display orientation (see the module docstring); False: nanonispy2's arrays.

        Raises
        ------
        NanonisFileError
            Unknown channel or direction (the message lists the available ones).
        """
        names = self.channel_names
        if channel is None:
            channel = "Z" if "Z" in names else names[0]
        if channel not in self.scan.signals:
            raise NanonisFileError(
                self.path, f"no channel {channel!r}; the file has {', '.join(names) or 'none'}"
            )
        if direction not in DIRECTIONS:
            raise NanonisFileError(
                self.path, f"direction {direction!r} is unknown; use one of {', '.join(DIRECTIONS)}"
            )
        data = np.asarray(self.scan.signals[channel][direction], dtype=np.float64)
        if orient:
            if direction == "backward":
                data = data[:, ::-1]
            if self.metadata.get("scan_direction") == "up":
                data = data[::-1, :]
        metadata = {
            k: v for k, v in self.metadata.items() if k != "attributes"
        } | {"source": self.path, "orientation": "display" if orient else "as recorded"}
        return StillImage(
            data,
            channel=channel,
            unit=self.unit(channel),
            direction=direction,
            pixel_size=self.pixel_size,
            metadata=metadata,
        )


def open_sxm(path_or_url: str | os.PathLike[str]) -> SxmFile:
    """Open a Nanonis ``.sxm`` scan with nanonispy2 after checking it.

    Parameters
    ----------
    path_or_url : str or path-like
        A local path, ``file://`` URL or any fsspec URL (copied to a temporary folder first:
        nanonispy2 reads by file name).

    Raises
    ------
    FileNotFoundError
        No such file.
    NanonisFileError
        Not ``*.sxm``, empty, not a Nanonis file, a header without scan pixels/range, channels
        recorded in one direction only, or a data block shorter (truncated) or longer than the
        header announces.
    """
    local, tmpdir, shown = _local(path_or_url)
    try:
        return _open_sxm(local, shown)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _open_sxm(path: Path, shown: str) -> SxmFile:
    from nanonispy2.read import Scan

    _check_file(path, shown, "sxm")
    # parse the header on its own first, so a cut data block is reported as such
    from nanonispy2.read import NanonisFile, _parse_sxm_header  # noqa: PLC2701 - see below

    # NanonisFile finds the :SCANIT_END: tag and reads the raw header (public class); the
    # header parser is the one Scan itself uses.
    raw = _nanonis_call(shown, ".sxm", lambda: NanonisFile(str(path)))
    try:
        header = _parse_sxm_header(raw.header_raw)
    except KeyError as exc:
        raise NanonisFileError(
            shown, f"Nanonis .sxm header lacks the field :{str(exc.args[0]).upper()}:; "
            "the file is damaged or not a scan"
        ) from None
    except (ValueError, IndexError) as exc:
        raise NanonisFileError(shown, f"unreadable Nanonis .sxm header ({exc})") from None
    missing = [k for k in _SXM_REQUIRED if k not in header]
    if missing:
        raise NanonisFileError(shown, f"Nanonis .sxm header lacks {', '.join(missing)}")
    info = header.get("data_info") or {}
    names = list(info.get("Name", ()))
    if not names:
        raise NanonisFileError(shown, "Nanonis .sxm header lists no channels (:DATA_INFO: is empty)")
    one_way = [n for n, d in zip(names, info.get("Direction", ())) if d.strip() != "both"]
    if one_way:
        raise NanonisFileError(
            shown,
            f"channel(s) {', '.join(one_way)} were recorded in one direction only; nanonispy2 "
            "reads only scans saved in both directions (forward and backward)",
        )
    nx, ny = (int(v) for v in header["scan_pixels"])
    expected = 4 * len(names) * 2 * nx * ny  # float32, both directions
    found = path.stat().st_size - (raw.byte_offset + 4)
    if found < expected:
        raise NanonisFileError(
            shown,
            f"truncated .sxm: the header announces {len(names)} channels x 2 directions x "
            f"{nx}x{ny} px = {expected} bytes of data, the file holds {max(found, 0)}; "
            "copy the file again from the instrument",
        )
    if found > expected:
        raise NanonisFileError(
            shown,
            f"the .sxm data block holds {found} bytes, more than the {expected} the header "
            "announces: wrong :SCAN_PIXELS: or :DATA_INFO:",
        )
    scan = _nanonis_call(shown, ".sxm", lambda: Scan(str(path)))
    metadata = sxm_metadata(scan.header)
    log.debug("opened Nanonis scan %s: %s", shown, ", ".join(names))
    return SxmFile(shown, scan, metadata)


def read_sxm(
    path_or_url: str | os.PathLike[str],
    channel: str | None = None,
    direction: str = "forward",
    *,
    orient: bool = True,
) -> StillImage:
    """Shortcut: ``open_sxm(path).image(channel, direction, orient=orient)``."""
    return open_sxm(path_or_url).image(channel, direction, orient=orient)


# ---------------------------------------------------------------------------------------------
# .dat


class Spectrum:
    """A Nanonis ``.dat`` point spectrum (bias spectroscopy, Z spectroscopy, …).

    Attributes
    ----------
    path : str
    columns : dict[str, numpy.ndarray]
        Every column by its name as stored (``'Bias calc (V)'``, ``'Current (A) [filt]'``).
    units : dict[str, str]
        The unit of each column, from the ``(…)`` in its name.
    metadata : dict
        See :func:`dat_metadata`.
    """

    def __init__(self, path: str, columns: dict[str, np.ndarray], metadata: dict[str, Any]):
        self.path = path
        self.columns = columns
        self.units = {name: _unit_in_name(name)[1] for name in columns}
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"<Spectrum {self.path!r}: {self.metadata['points']} points, {len(self.columns)} columns>"

    def column(self, name: str) -> np.ndarray:
        """One column; ``name`` as stored or without its unit (``'Current'`` finds
        ``'Current (A)'``).

        Raises
        ------
        NanonisFileError
            No such column (the message lists them).
        """
        if name in self.columns:
            return self.columns[name]
        matches = [c for c in self.columns if _unit_in_name(c)[0] == name]
        if len(matches) == 1:
            return self.columns[matches[0]]
        raise NanonisFileError(
            self.path, f"no column {name!r}; the file has {', '.join(self.columns)}"
        )


def dat_metadata(header: Mapping[str, Any], columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Normalise a ``.dat`` header (``nanonispy2.read.Spec(...).header``) and its columns.

    Returns
    -------
    dict
        JSON-able: ``format``, ``experiment``, ``points``, ``columns`` (name, unit), ``date``
        (start time, ISO), ``saved``, ``position_x/y/z`` (m), ``bias`` (V), ``sweep_start``,
        ``sweep_end`` (V), ``sweeps``, ``setpoint``, ``feedback``, ``temperature`` (K), ``user``
        and ``attributes`` (every header entry).
    """
    def get(name: str) -> Any:
        return _find(header, re.escape(name.lower()))

    start = str(get("Start time") or "")
    saved = str(get("Saved Date") or "")
    start_date, _, start_time = start.partition(" ")
    saved_date, _, saved_time = saved.partition(" ")
    setpoint_unit = str(get("Z-Controller>Setpoint unit") or "").strip()
    temperature = _find(header, r"temperature \d+>temperature \d+ \(k\)")
    lengths = {len(v) for v in columns.values()}
    md: dict[str, Any] = {
        "format": "Nanonis DAT",
        "experiment": str(get("Experiment") or "").strip(),
        "points": max(lengths) if lengths else 0,
        "columns": [{"name": n, "unit": _unit_in_name(n)[1]} for n in columns],
        "date": _date(start_date, start_time) if start else None,
        "saved": _date(saved_date, saved_time) if saved else None,
        "position_x": _quantity(get("X (m)"), "m"),
        "position_y": _quantity(get("Y (m)"), "m"),
        "position_z": _quantity(get("Z (m)"), "m"),
        "bias": _quantity(get("Bias>Bias (V)"), "V"),
        "sweep_start": _quantity(get("Bias Spectroscopy>Sweep Start (V)"), "V"),
        "sweep_end": _quantity(get("Bias Spectroscopy>Sweep End (V)"), "V"),
        "sweeps": _number(get("Bias Spectroscopy>Number of sweeps")),
        "setpoint": _quantity(get("Z-Controller>Setpoint"), setpoint_unit),
        "feedback": str(get("Z-Controller>Controller name") or "").strip() or None,
        "temperature": _quantity(temperature, "K") if temperature is not None else None,
        "user": str(get("User") or "").strip(),
        "attributes": {str(k): plain(v) for k, v in header.items()},
    }
    if isinstance(md["sweeps"], float) and md["sweeps"].is_integer():
        md["sweeps"] = int(md["sweeps"])
    return {k: v for k, v in md.items() if v is not None}


def _check_dat_rows(path: Path, shown: str) -> None:
    """A ``.dat`` file must have, after its ``[DATA]`` line, a line of column names and at
    least one data row; nanonispy2 fails on anything less with numpy's own words."""
    raw = path.read_bytes()
    tag = raw.find(b"[DATA]")
    if tag < 0:
        return  # no [DATA] at all: nanonispy2's "no header end tag" says it
    lines = [line for line in raw[tag + len(b"[DATA]"):].splitlines() if line.strip()]
    if not lines:
        raise NanonisFileError(
            shown, "Nanonis .dat file ends after its header: no column names and no data rows "
            "after [DATA] (the recording or the copy was cut); use the complete file"
        )
    if len(lines) == 1:
        raise NanonisFileError(
            shown, "Nanonis .dat file without data rows after [DATA]: only the column names "
            "are there (the recording or the copy was cut); use the complete file"
        )


def open_dat(path_or_url: str | os.PathLike[str]) -> Spectrum:
    """Read a Nanonis ``.dat`` spectrum with nanonispy2 after checking it.

    Raises
    ------
    FileNotFoundError
        No such file.
    NanonisFileError
        Not ``*.dat``, empty, no ``[DATA]`` section (not a Nanonis spectrum), a header without
        column names or data rows, or rows with missing or non-numeric values (a truncated
        file).
    """
    local, tmpdir, shown = _local(path_or_url)
    try:
        _check_file(local, shown, "dat")
        _check_dat_rows(local, shown)
        from nanonispy2.read import Spec

        spec = _nanonis_call(shown, ".dat", lambda: Spec(str(local)))
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    columns = {str(k): np.asarray(v, dtype=np.float64) for k, v in spec.signals.items()}
    if not columns or any(v.ndim != 1 or v.size == 0 for v in columns.values()):
        raise NanonisFileError(shown, "Nanonis .dat file without data rows after [DATA]")
    bad = [name for name, v in columns.items() if np.isnan(v).any()]
    if bad:
        rows = int(np.isnan(columns[bad[0]]).sum())
        raise NanonisFileError(
            shown,
            f"Nanonis .dat data has missing or non-numeric values in {len(bad)} column(s) "
            f"(e.g. {bad[0]!r}, {rows} row(s)): truncated or edited file",
        )
    metadata = dat_metadata(spec.header, columns)
    return Spectrum(shown, columns, metadata)

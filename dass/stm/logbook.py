"""Sample-preparation logbook -> measurement metadata.

Why one module: reading a logbook (CSV, YAML, as written), its checks and matching its steps
to files are one format, documented here and in docs/stm-logbook.md.

A lab keeps one row per preparation step (sputtering, annealing, deposition, dosing …). This
module reads that logbook, finds the steps that belong to a measurement (by sample name or by
time) and attaches them to the measurement's catalogue metadata as a ``preparation`` list and,
when asked, to an HDF5 file as attributes of a separate group — never touching the raw data.

Logbook format
--------------
CSV (first row = column names, comma separated, UTF-8) or YAML (a list of mappings, or a mapping
with an ``entries:`` list). Column names are case-insensitive; blank cells mean "not given".

=============  ========  ====================================================================
column         needed    meaning
=============  ========  ====================================================================
sample         yes       sample name, as in the measurement's metadata (``"Gr/Ni(111)"``)
step           yes       what was done (``"sputter"``, ``"anneal"``, ``"deposit C60"``)
start          yes [1]_  when the step began: ISO 8601 (``2014-10-03T09:30``,
                         ``2014-10-03 09:30:00+02:00``) or ``03.10.2014 09:30`` (day first)
date, time     [1]_      instead of ``start``: the day (ISO or day-first) and the clock time
end            no        when the step ended (same forms); or give ``duration``
duration       no        a number of minutes, or a number with unit ``s``, ``min``, ``h``
                         (``"30 min"``, ``"1.5 h"``)
temperature    no        a number in kelvin, or with unit ``K`` or ``°C``/``C`` (``"650 °C"``)
pressure       no        a number in mbar, or with unit ``mbar``, ``Pa``, ``Torr``
                         (``"2e-6 mbar"``)
operator       no        who did it
notes          no        free text
=============  ========  ====================================================================

.. [1] ``start``, or ``date`` (with ``time`` optional, default 00:00).

Every value is read as the text written and parsed here, in YAML as in CSV: YAML 1.1 (PyYAML)
would turn an unquoted ``11:00:30`` into the base-60 number 39630 (and a time of
``09:30`` into 570), which then names the wrong clock time. An unquoted YAML value that
YAML 1.1 would read as a number other than the one written is kept as text and reported with a
:class:`LogbookWarning` that names the file, line and column; quoting it silences the warning.

Any other column is an error (a misspelt ``temprature`` would otherwise be lost silently).
Times without a zone are the lab's wall-clock time; when a measurement time carries a zone and a
logbook time does not (or the other way round), the wall-clock readings are compared.

Matching (:func:`match_preparation`): ``by="sample"`` takes every step of the measurement's
``sample``; ``by="time"`` takes the steps that began before the measurement and ended (or
began, without an end) at most ``window`` before it; ``by="both"`` requires both; ``by="auto"``
(default) uses the sample name when the measurement has one, else time.

Examples
--------
>>> book = parse_logbook(
...     "sample,step,start,duration,temperature\\n"
...     "Au(111),anneal,2023-05-12T09:00,30 min,720 K\\n", fmt="csv", source="lab.csv")
>>> book[0].end.isoformat(), book[0].temperature
('2023-05-12T09:30:00', {'value': 720.0, 'unit': 'K'})
>>> attach_preparation({"sample": "Au(111)"}, book)["preparation"][0]["step"]
'anneal'
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import LogbookError

__all__ = [
    "COLUMNS",
    "LogbookEntry",
    "LogbookWarning",
    "read_logbook",
    "parse_logbook",
    "match_preparation",
    "attach_preparation",
    "write_preparation_h5",
]

#: Accepted columns (lower case); ``sample`` and ``step`` plus ``start`` or ``date`` are needed.
COLUMNS: tuple[str, ...] = (
    "sample", "step", "start", "date", "time", "end", "duration", "temperature", "pressure",
    "operator", "notes",
)
_MATCH_MODES = ("auto", "sample", "time", "both")
#: Attribute marking an HDF5 group written by :func:`write_preparation_h5`.
_MARK = "dass.stm.logbook"


class LogbookWarning(UserWarning):
    """A logbook value dass reads differently from YAML 1.1 (kept as the text written)."""


@dataclasses.dataclass(frozen=True)
class LogbookEntry:
    """One preparation step of a logbook.

    Attributes
    ----------
    row : int
        Where it is: CSV line number (the header is line 1) or YAML list position (from 1).
    sample, step : str
    start : datetime.datetime
    end : datetime.datetime or None
    temperature, pressure : dict or None
        ``{"value": float, "unit": str}``; temperature in ``K`` or ``°C``, pressure in ``mbar``,
        ``Pa`` or ``Torr``, as written.
    operator, notes : str
    """

    row: int
    sample: str
    step: str
    start: dt.datetime
    end: dt.datetime | None = None
    temperature: dict[str, Any] | None = None
    pressure: dict[str, Any] | None = None
    operator: str = ""
    notes: str = ""

    @property
    def duration(self) -> dt.timedelta | None:
        """``end - start``, or ``None`` without an end."""
        return None if self.end is None else self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for the catalogue (times ISO 8601, duration in minutes)."""
        record: dict[str, Any] = {
            "sample": self.sample,
            "step": self.step,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "duration": (
                {"value": self.duration.total_seconds() / 60.0, "unit": "min"}
                if self.duration is not None else None
            ),
            "temperature": dict(self.temperature) if self.temperature else None,
            "pressure": dict(self.pressure) if self.pressure else None,
            "operator": self.operator or None,
            "notes": self.notes or None,
            "logbook_row": self.row,
        }
        return {k: v for k, v in record.items() if v is not None}


# ---------------------------------------------------------------------------------------------
# field parsers: each raises ValueError with a message for a person


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    text = _text(value)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(
        f"{text!r} is not a date/time; write ISO 8601 (2014-10-03T09:30 or "
        "2014-10-03 09:30:00+02:00) or day first (03.10.2014 09:30)"
    )


def _clock(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    text = _text(value)
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a clock time; write HH:MM or HH:MM:SS") from None


_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def _number_unit(value: Any, units: Mapping[str, str], default: str, what: str) -> dict[str, Any]:
    """``"650 °C"`` -> ``{"value": 650.0, "unit": "°C"}``; a bare number gets ``default``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"value": float(value), "unit": default}
    text = _text(value)
    if "," in text and "." not in text:  # decimal comma: "1,5e-9 mbar"
        text = text.replace(",", ".")
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a {what}; write a number with an optional unit "
                         f"({', '.join(sorted(set(units.values())))})")
    number, unit = match.groups()
    if not unit:
        return {"value": float(number), "unit": default}
    canonical = units.get(unit.lower().replace(" ", ""))
    if canonical is None:
        raise ValueError(f"unit {unit!r} of {text!r} is not a {what} unit; use "
                         f"{', '.join(sorted(set(units.values())))}")
    return {"value": float(number), "unit": canonical}


_TEMPERATURE_UNITS = {"k": "K", "°c": "°C", "c": "°C", "degc": "°C", "ºc": "°C"}
_PRESSURE_UNITS = {"mbar": "mbar", "pa": "Pa", "torr": "Torr"}
_DURATION_UNITS = {"s": 1 / 60, "sec": 1 / 60, "min": 1.0, "m": 1.0, "h": 60.0, "hr": 60.0}


def _duration(value: Any) -> dt.timedelta:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minutes = float(value)
    else:
        match = _NUMBER_UNIT.match(_text(value))
        if not match:
            raise ValueError(f"{_text(value)!r} is not a duration; write minutes or e.g. '30 min', '1.5 h'")
        number, unit = match.groups()
        factor = _DURATION_UNITS.get(unit.lower() or "min")
        if factor is None:
            raise ValueError(f"unit {unit!r} of duration {_text(value)!r} is unknown; use s, min or h")
        minutes = float(number) * factor
    if minutes < 0:
        raise ValueError(f"duration {_text(value)!r} is negative")
    return dt.timedelta(minutes=minutes)


# ---------------------------------------------------------------------------------------------
# parsing


def _entry(raw: Mapping[str, Any], row: int, source: str) -> LogbookEntry:
    where = f"row {row}"
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        name = _text(key).lower()
        if not name and _text(value) == "":
            continue
        if name not in COLUMNS:
            raise LogbookError(
                source, f"{where}: unknown column {key!r}; the columns are {', '.join(COLUMNS)}"
            )
        if value is not None and _text(value) != "":
            fields[name] = value

    def need(name: str) -> str:
        if name not in fields:
            raise LogbookError(source, f"{where}: field {name!r} is empty; every step needs it")
        return _text(fields[name])

    def parse(name: str, parser: Any, *args: Any) -> Any:
        if name not in fields:
            return None
        try:
            return parser(fields[name], *args)
        except (ValueError, TypeError, OverflowError) as exc:
            raise LogbookError(source, f"{where}: field {name!r}: {exc}") from None

    sample, step = need("sample"), need("step")
    if "start" in fields:
        if "date" in fields or "time" in fields:
            raise LogbookError(source, f"{where}: give either 'start' or 'date'/'time', not both")
        start = parse("start", _datetime)
    elif "date" in fields:
        day = parse("date", _datetime)
        clock = parse("time", _clock) or dt.time(0, 0)
        start = dt.datetime.combine(day.date(), clock, tzinfo=day.tzinfo)
    else:
        raise LogbookError(source, f"{where}: no 'start' (or 'date') given; every step needs a time")
    end = parse("end", _datetime)
    duration = parse("duration", _duration)
    if end is not None and duration is not None:
        if abs(_naive_delta(end, start) - duration) > dt.timedelta(minutes=1):
            raise LogbookError(
                source, f"{where}: 'end' ({end.isoformat()}) and 'duration' "
                f"({duration.total_seconds() / 60:g} min) disagree; give one of them"
            )
    elif duration is not None:
        end = start + duration
    if end is not None and _naive_delta(end, start) < dt.timedelta(0):
        raise LogbookError(source, f"{where}: 'end' ({end.isoformat()}) is before 'start' "
                           f"({start.isoformat()})")
    return LogbookEntry(
        row=row,
        sample=sample,
        step=step,
        start=start,
        end=end,
        temperature=parse("temperature", _number_unit, _TEMPERATURE_UNITS, "K", "temperature"),
        pressure=parse("pressure", _number_unit, _PRESSURE_UNITS, "mbar", "pressure"),
        operator=_text(fields.get("operator")),
        notes=_text(fields.get("notes")),
    )


def parse_logbook(text: str, *, fmt: str, source: str = "<logbook>") -> list[LogbookEntry]:
    """Parse logbook text (see the module docstring for the columns).

    Parameters
    ----------
    text : str
    fmt : {"csv", "yaml"}
    source : str
        Named in error messages (the file name).

    Returns
    -------
    list of LogbookEntry
        In file order.

    Raises
    ------
    LogbookError
        Malformed CSV/YAML, no rows, an unknown column, a required field empty, a field that
        does not parse; the message names the source, the row and the field.
    """
    if fmt == "csv":
        rows = _csv_rows(text, source)
    elif fmt == "yaml":
        rows = _yaml_rows(text, source)
    else:
        raise ValueError(f"logbook format {fmt!r} is unknown; use 'csv' or 'yaml'")
    if not rows:
        raise LogbookError(source, "the logbook has no entries")
    return [_entry(raw, row, source) for row, raw in rows]


def _csv_rows(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        lines = list(reader)
    except csv.Error as exc:
        raise LogbookError(source, f"malformed CSV (line {reader.line_num}: {exc})") from None
    if not lines:
        raise LogbookError(source, "empty CSV file: the first line must name the columns")
    header = [h.strip() for h in lines[0]]
    if len(set(h.lower() for h in header)) != len(header):
        raise LogbookError(source, f"row 1: a column name appears twice in {header}")
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(header):
            raise LogbookError(
                source, f"row {number}: {len(cells)} cells, but the header names {len(header)} "
                "columns (a comma inside a field needs quotes)"
            )
        rows.append((number, dict(zip(header, cells))))
    return rows


def _text_loader() -> type:
    """A safe YAML loader that leaves every plain scalar as text except null (no numbers,
    booleans or timestamps): the logbook's fields are parsed by this module."""
    import yaml

    class TextLoader(yaml.SafeLoader):
        pass

    TextLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return TextLoader


def _yaml_number(text: str) -> Any:
    """What YAML 1.1 (PyYAML's safe loader) makes of an unquoted scalar ``text``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _warn_numbers(node: Any, source: str, key: str = "") -> None:
    """Warn for every plain scalar under ``node`` that YAML 1.1 would turn into a number
    other than the decimal number written (base 60, octal, underscores …)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            _warn_numbers(v, source, str(k.value) if isinstance(k, yaml.ScalarNode) else key)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _warn_numbers(item, source, key)
    elif isinstance(node, yaml.ScalarNode) and node.style is None:
        number = _yaml_number(node.value)
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            try:
                same = float(node.value) == float(number)
            except ValueError:
                same = False
            if not same:
                warnings.warn(LogbookWarning(
                    f"{source}: line {node.start_mark.line + 1}, field {key!r}: "
                    f"{node.value!r} is read as written (text); YAML 1.1 would read it as the "
                    f"number {number!r}. Quote it ('{node.value}') to make that explicit"
                ), stacklevel=4)


def _yaml_rows(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    import yaml

    loader = _text_loader()(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _warn_numbers(node, source)
        doc = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise LogbookError(source, f"malformed YAML ({' '.join(str(exc).split())})") from None
    finally:
        loader.dispose()
    if isinstance(doc, Mapping) and "entries" in doc:
        doc = doc["entries"]
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise LogbookError(source, "a YAML logbook must be a list of steps (or have an 'entries:' list)")
    rows = []
    for number, item in enumerate(doc, start=1):
        if not isinstance(item, Mapping):
            raise LogbookError(source, f"row {number}: a step must be a mapping of columns, got {item!r}")
        rows.append((number, dict(item)))
    return rows


def read_logbook(path: str | os.PathLike[str], *, fmt: str | None = None) -> list[LogbookEntry]:
    """Read a logbook file; the format from ``fmt`` or the extension (``.csv``, ``.yaml``,
    ``.yml``). Local paths or fsspec URLs.

    Raises
    ------
    FileNotFoundError
        No such file.
    LogbookError
        Unknown extension without ``fmt``, not UTF-8 text, or any :func:`parse_logbook` error.
    """
    shown = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if fmt is None:
        suffix = Path(shown.split("?")[0]).suffix.lower()
        fmt = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
        if fmt is None:
            raise LogbookError(shown, f"cannot tell the logbook format from {suffix or 'no extension'!r}; "
                               "name it .csv or .yaml, or pass fmt='csv'/'yaml'")
    import fsspec

    try:
        with fsspec.open(shown, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such logbook file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LogbookError(shown, f"not UTF-8 text (byte {exc.start}); save the logbook as UTF-8") from None
    return parse_logbook(text, fmt=fmt, source=shown)


# ---------------------------------------------------------------------------------------------
# matching


def _naive_delta(a: dt.datetime, b: dt.datetime) -> dt.timedelta:
    """``a - b``; with one aware and one naive time, their wall-clock readings are compared."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return a - b


def _measurement_time(metadata: Mapping[str, Any]) -> dt.datetime | None:
    value = metadata.get("date") or metadata.get("start_time")
    if not value:
        return None
    try:
        return _datetime(value)
    except ValueError:
        return None


def _same_sample(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def match_preparation(
    entries: Iterable[LogbookEntry],
    metadata: Mapping[str, Any],
    *,
    by: str = "auto",
    window: dt.timedelta = dt.timedelta(days=2),
) -> list[LogbookEntry]:
    """The logbook steps that prepared one measurement, oldest first.

    Parameters
    ----------
    entries : iterable of LogbookEntry
    metadata : mapping
        The measurement's catalogue metadata: ``sample`` (name) and ``date`` (ISO 8601), as
        :func:`dass.stm.fast.fast_metadata` and :func:`dass.stm.nanonis.sxm_metadata` give them.
    by : {"auto", "sample", "time", "both"}
        See the module docstring.
    window : datetime.timedelta
        For time matching: the longest gap between the end of a step and the measurement.

    Raises
    ------
    ValueError
        Unknown ``by``; ``by`` needs a sample name or a date the metadata lacks (the message
        says which).
    """
    if by not in _MATCH_MODES:
        raise ValueError(f"by={by!r} is unknown; use one of {', '.join(_MATCH_MODES)}")
    sample = _text(metadata.get("sample"))
    when = _measurement_time(metadata)
    if by == "auto":
        by = "sample" if sample else "time"
    if by in ("sample", "both") and not sample:
        raise ValueError("matching by sample needs metadata['sample'], which is empty; "
                         "match by='time' instead")
    if by in ("time", "both") and when is None:
        raise ValueError(f"matching by time needs an ISO date in metadata['date'], got "
                         f"{metadata.get('date')!r}; match by='sample' instead")
    chosen = []
    for entry in entries:
        if by in ("sample", "both") and not _same_sample(entry.sample, sample):
            continue
        if by in ("time", "both"):
            assert when is not None
            finished = entry.end or entry.start
            if _naive_delta(when, entry.start) < dt.timedelta(0):
                continue  # began after the measurement
            if _naive_delta(when, finished) > window:
                continue  # too long before
        chosen.append(entry)
    return sorted(chosen, key=lambda e: (e.start.replace(tzinfo=None), e.row))


def attach_preparation(metadata: Mapping[str, Any], entries: Sequence[LogbookEntry]) -> dict[str, Any]:
    """A copy of ``metadata`` with ``"preparation"``: the entries as JSON-able dicts.

    The input is not changed; an existing ``preparation`` list is replaced.
    """
    out = dict(metadata)
    out["preparation"] = [e.to_dict() for e in entries]
    return out


def write_preparation_h5(
    h5_path: str | os.PathLike[str],
    entries: Sequence[LogbookEntry],
    *,
    group: str = "dass_logbook",
    source: str = "",
) -> int:
    """Write the entries into an HDF5 file as attributes of ``/<group>/<n>`` groups.

    One subgroup per step, numbered from 0 in order; each field of :meth:`LogbookEntry.to_dict`
    becomes an attribute (``temperature`` and ``temperature_unit``, … for quantities). The group
    itself carries ``written_by = "dass.stm.logbook"``, ``count`` and ``source``. Nothing else in
    the file is touched — in particular not the raw ``/data`` dataset — and a previous group
    written by this function is replaced.

    Returns
    -------
    int
        The number of steps written.

    Raises
    ------
    FileNotFoundError
        No such file.
    LogbookError
        Not a writable HDF5 file, a ``group`` name that is not a plain name (or is ``data``),
        or ``/<group>`` exists and was not written by this function.
    """
    import h5py

    shown = os.fspath(h5_path)
    if not Path(shown).exists():
        raise FileNotFoundError(f"{shown}: no such file")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", group) or group == "data":
        raise LogbookError(shown, f"group name {group!r} must be a plain name other than 'data'")
    if not h5py.is_hdf5(shown):
        raise LogbookError(shown, "not an HDF5 file; the logbook can only be written into HDF5")
    try:
        with h5py.File(shown, "r+") as f:
            if group in f:
                old = f[group]
                if not isinstance(old, h5py.Group) or old.attrs.get("written_by") != _MARK:
                    raise LogbookError(
                        shown, f"/{group} exists and was not written by dass; choose another group="
                    )
                del f[group]
            top = f.create_group(group)
            top.attrs["written_by"] = _MARK
            top.attrs["count"] = len(entries)
            top.attrs["source"] = source
            for n, entry in enumerate(entries):
                sub = top.create_group(str(n))
                for key, value in entry.to_dict().items():
                    if isinstance(value, dict):
                        sub.attrs[key] = value["value"]
                        sub.attrs[f"{key}_unit"] = value["unit"]
                    else:
                        sub.attrs[key] = value
    except LogbookError:
        raise
    except OSError as exc:
        raise LogbookError(shown, f"cannot write the logbook into this HDF5 file ({exc})") from exc
    return len(entries)

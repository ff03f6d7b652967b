"""The vendor metadata of SEM TIFFs (Zeiss ``sem_metadata``, FEI ``fei_metadata`` as tifffile
reads them) normalized to the vocabulary of :mod:`dass.sem.io` (the table in its docstring):
pure functions of the raw dictionaries, called by :func:`dass.sem.io.read_sem`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

__all__ = ["fei_metadata", "zeiss_metadata"]


_LENGTH = {"m": 1.0, "mm": 1e-3, "µm": 1e-6, "um": 1e-6, "μm": 1e-6, "nm": 1e-9, "pm": 1e-12, "Å": 1e-10}
_VOLTAGE = {"V": 1e-3, "kV": 1.0, "MV": 1e3, "mV": 1e-6}
_CURRENT = {"A": 1e9, "mA": 1e6, "µA": 1e3, "uA": 1e3, "μA": 1e3, "nA": 1.0, "pA": 1e-3, "fA": 1e-6}
_PRESSURE = {"Pa": 1.0, "mbar": 100.0, "bar": 1e5, "Torr": 133.322, "torr": 133.322, "hPa": 100.0}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": float(value), "unit": unit}


def _convert(value: Any, unit: str, table: dict[str, float], target: str, target_scale: float = 1.0):
    """Convert ``value unit`` using a table of unit -> factor to the base unit."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    factor = table.get(unit)
    if factor is None:
        return None
    return _quantity(value * factor / target_scale, target)


def _zeiss_entry(raw: dict, key: str) -> tuple[Any, str] | None:
    entry = raw.get(key)
    if not isinstance(entry, tuple) or len(entry) < 2:
        return None
    return entry[1], (entry[2] if len(entry) > 2 else "")


_MAG_RE = re.compile(r"^\s*([0-9.]+)\s*(K|M)?\s*X\s*$", re.IGNORECASE)


def _parse_magnification(value: Any, unit: str) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = _MAG_RE.match(f"{value} {unit}" if unit else value)
        if m:
            mult = {None: 1.0, "k": 1e3, "m": 1e6}[m.group(2).lower() if m.group(2) else None]
            return float(m.group(1)) * mult
    return None


def _iso(date: str, time: str, formats: tuple[str, ...]) -> str | None:
    text = f"{date} {time}".strip()
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return None


def zeiss_metadata(raw: dict, width: int) -> dict[str, Any]:
    md: dict[str, Any] = {}

    def put(key, quantity):
        if quantity is not None:
            md[key] = quantity

    for zkey in ("ap_actualkv", "ap_manualkv"):
        e = _zeiss_entry(raw, zkey)
        if e and "accelerating_voltage" not in md:
            put("accelerating_voltage", _convert(e[0], e[1], _VOLTAGE, "kV"))
    e = _zeiss_entry(raw, "ap_wd")
    if e:
        put("working_distance", _convert(e[0], e[1], _LENGTH, "mm", 1e-3))
    e = _zeiss_entry(raw, "ap_mag")
    if e:
        mag = _parse_magnification(*e)
        if mag is not None:
            md["magnification"] = _quantity(mag, "x")
    unnamed = raw.get("", ())
    if len(unnamed) > 3 and isinstance(unnamed[3], (int, float)) and unnamed[3] > 0 and width:
        # md[''][3] is the pixel size in metres of a 1024-wide scan.
        md["pixel_size"] = _quantity(unnamed[3] * 1024 / width * 1e9, "nm")
    else:
        e = _zeiss_entry(raw, "ap_pixel_size")  # only right for 1024-wide images
        if e and width == 1024:
            put("pixel_size", _convert(e[0], e[1], _LENGTH, "nm", 1e-9))
    e = _zeiss_entry(raw, "ap_iprobe")
    if e:
        put("probe_current", _convert(e[0], e[1], _CURRENT, "nA"))
    e = _zeiss_entry(raw, "ap_chamber_pressure")
    if e:
        put("chamber_pressure", _convert(e[0], e[1], _PRESSURE, "Pa"))
    e = _zeiss_entry(raw, "ap_column_vac")
    if e:
        put("gun_pressure", _convert(e[0], e[1], _PRESSURE, "Pa"))
    for zkey in ("dp_detector_type", "dp_detector_channel"):
        e = _zeiss_entry(raw, zkey)
        if e and isinstance(e[0], str) and e[0].strip():
            md["detector"] = e[0].strip()
            break
    d, t = _zeiss_entry(raw, "ap_date"), _zeiss_entry(raw, "ap_time")
    if d and isinstance(d[0], str):
        iso = _iso(d[0], t[0] if t and isinstance(t[0], str) else "",
                   ("%d %b %Y %H:%M:%S", "%d %b %Y"))
        if iso:
            md["datetime"] = iso
    e = _zeiss_entry(raw, "sv_serial_number")
    if e and e[0] not in (None, ""):
        md["instrument_serial"] = str(e[0]).strip()
    return md


def fei_metadata(raw: dict, height: int, width: int) -> tuple[dict[str, Any], int | None]:
    """Normalized metadata of an FEI / Thermo Fisher header, and the data bar's first row."""
    md: dict[str, Any] = {}

    def get(section, key):
        value = (raw.get(section) or {}).get(key) if section else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return value if value not in ("", None) else None

    def number(*places):
        for section, key in places:
            value = get(section, key)
            if isinstance(value, float):
                return value
        return None

    # [Beam] names the sections of the beam and scan engine the image was taken with
    beam = get("Beam", "Beam")
    beam = beam if isinstance(beam, str) and beam in raw else "EBeam"
    scan = get("Beam", "Scan")
    scan = scan if isinstance(scan, str) and scan in raw else ("EScan" if beam == "EBeam" else None)

    hv = number((beam, "HV"), ("Beam", "HV"))
    if hv is not None and hv > 0:
        md["accelerating_voltage"] = _quantity(hv / 1e3, "kV")
    wd = number((beam, "WD"), ("Stage", "WorkingDistance"))
    if wd is not None and wd > 0:  # a navigation camera records a meaningless negative WD
        md["working_distance"] = _quantity(wd * 1e3, "mm")
    hfw = number((beam, "HFW"), (scan, "HorFieldsize"), ("Scan", "HorFieldsize"))
    if hfw is not None and hfw > 0:
        md["field_width"] = _quantity(hfw * 1e6, "µm")
        # The magnification refers to the "magnification canvas" recorded with the image (what
        # the data bar prints); DisplayWidth, the monitor, is the fallback for older files.
        canvas = number(("Image", "MagCanvasRealWidth"), ("System", "DisplayWidth"))
        if canvas is not None and canvas > 0:
            md["magnification"] = _quantity(canvas / hfw, "x")
    resolution_x = number(("Image", "ResolutionX"))
    resolution_y = number(("Image", "ResolutionY"))
    pw = number((scan, "PixelWidth"), ("Scan", "PixelWidth"))
    if pw is not None and pw > 0:
        md["pixel_size"] = _quantity(pw * 1e9, "nm")
    elif hfw is not None and hfw > 0:
        md["pixel_size"] = _quantity(hfw / (resolution_x or width) * 1e9, "nm")
    current = number((beam, "BeamCurrent"))
    if current is not None and current > 0:
        md["probe_current"] = _quantity(current * 1e9, "nA")
    pressure = number(("Vacuum", "ChPressure"))
    if pressure is not None:
        md["chamber_pressure"] = _quantity(pressure, "Pa")
    det = get("Detectors", "Name")
    if det is not None:
        md["detector"] = str(det)
    date, time = get("User", "Date"), get("User", "Time")
    if isinstance(date, str):
        iso = _iso(date, time if isinstance(time, str) else "",
                   ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y"))
        if iso:
            md["datetime"] = iso
    serial = get("System", "Dnumber")
    if serial is not None:
        md["instrument_serial"] = str(int(serial)) if isinstance(serial, float) and serial.is_integer() else str(serial)
    model = get("System", "SystemType")
    if isinstance(model, str):
        md["instrument"] = model.replace('"', "").strip()
    # the data bar: the rows below the scanned ResolutionY
    bar_row = None
    if resolution_y is not None and resolution_y.is_integer() and 0 < resolution_y < height:
        bar_row = int(resolution_y)
    return md, bar_row

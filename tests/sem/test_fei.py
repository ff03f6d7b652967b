"""FEI / Thermo Fisher TIFF metadata (tag 34682, an INI text) normalized by :func:`read_sem`.

No FEI file is in the public distributions the tests may fetch, so the file is written here
with tifffile in the layout FEI (Helios, Quanta, Scios) instruments use: the image plus tag
34682 holding the ``[User]``, ``[System]``, ``[EBeam]``, ``[Scan]``, ``[Vacuum]``,
``[Detectors]`` sections in SI units. What is checked: tifffile recognizes it as FEI, and every
normalized quantity is the header's value converted to the documented unit.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from dass.sem import read_sem  # noqa: E402

HEADER = {
    "User": {"Date": "03/14/2025", "Time": "02:15:09 PM", "User": "operator"},
    "System": {"Type": "DualBeam", "Dnumber": "9922345", "SystemType": "Helios G4 UX",
               "DisplayWidth": "0.266"},
    "EBeam": {"HV": "5000", "WD": "0.00412", "HFW": "2.66e-05", "BeamCurrent": "1.0e-10"},
    "Scan": {"PixelWidth": "2.59766e-08", "PixelHeight": "2.59766e-08", "HorFieldsize": "2.66e-05"},
    "Vacuum": {"ChPressure": "0.00031"},
    "Detectors": {"Name": "TLD", "Mode": "SE"},
}


def fei_tiff(header: dict = HEADER, shape=(768, 1024)) -> bytes:
    text = "".join(f"[{section}]\r\n" + "".join(f"{k}={v}\r\n" for k, v in values.items()) + "\r\n"
                   for section, values in header.items())
    pixels = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, extratags=[(34682, "s", 0, text, True)], metadata=None)
    return buf.getvalue()


def test_fei_header_is_normalized_with_units():
    data = fei_tiff()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert tif.is_fei  # recognized by tifffile as the vendor format
    image = read_sem(data)
    md = image.metadata
    assert image.vendor == "fei" and image.image.shape == (768, 1024)
    assert md["accelerating_voltage"] == {"value": pytest.approx(5000 / 1e3), "unit": "kV"}
    assert md["working_distance"] == {"value": pytest.approx(0.00412 * 1e3), "unit": "mm"}
    assert md["pixel_size"] == {"value": pytest.approx(2.59766e-08 * 1e9), "unit": "nm"}
    assert md["probe_current"] == {"value": pytest.approx(1.0e-10 * 1e9), "unit": "nA"}
    assert md["chamber_pressure"] == {"value": pytest.approx(0.00031), "unit": "Pa"}
    # magnification relative to the display width recorded with the image
    assert md["magnification"] == {"value": pytest.approx(0.266 / 2.66e-05), "unit": "x"}
    assert md["detector"] == "TLD"
    assert md["datetime"] == "2025-03-14T14:15:09"
    assert md["instrument_serial"] == "9922345" and md["instrument"] == "Helios G4 UX"
    assert image.raw_metadata["EBeam"]["HV"] == 5000


def test_missing_fei_fields_are_left_out_not_invented():
    header = {"EBeam": {"HV": "15000"}, "Detectors": {"Name": "ETD"}}
    md = read_sem(fei_tiff(header, shape=(64, 96))).metadata
    assert md["accelerating_voltage"]["value"] == pytest.approx(15.0)
    assert md["detector"] == "ETD"
    for absent in ("working_distance", "magnification", "pixel_size", "datetime", "instrument_serial"):
        assert absent not in md

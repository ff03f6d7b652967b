"""FEI / Thermo Fisher TIFF metadata (tag 34682, an INI text) normalized by :func:`read_sem`.

Real files: the FEI Helios images of the hyperspy 1.7.6 wheel (``tiff_FEI_Helios.zip``, fetched
by the ``fei_samples`` fixture): an E-beam image saved as 8 and as 16 bits, whose data bar
prints "mag 120 x" and "HFW 1.73 mm", and a navigation-camera image. A hand-made header checks
the fallbacks of older files (no ``MagCanvasRealWidth``) and that absent fields stay absent.
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


def fei_tiff(header: dict = HEADER, shape=(768, 1024), pixels: np.ndarray | None = None) -> bytes:
    """A TIFF with an FEI header (tag 34682) and random 8-bit pixels (or the given ones)."""
    text = "".join(f"[{section}]\r\n" + "".join(f"{k}={v}\r\n" for k, v in values.items()) + "\r\n"
                   for section, values in header.items())
    if pixels is None:
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
    # no MagCanvasRealWidth (older files): magnification relative to the display width
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


def test_real_fei_helios_metadata_matches_its_data_bar(fei_samples):
    sem = read_sem(fei_samples["8bit"])
    md = sem.metadata
    assert sem.vendor == "fei" and sem.image.shape == (471, 512)
    raw = sem.raw_metadata
    # the data bar of this image prints "mag 120 x": MagCanvasRealWidth / HFW, not DisplayWidth / HFW (300 x)
    assert md["magnification"]["unit"] == "x"
    assert md["magnification"]["value"] == pytest.approx(120, abs=0.05)
    assert raw["System"]["DisplayWidth"] / raw["EBeam"]["HFW"] == pytest.approx(300, abs=0.1)
    assert md["field_width"] == {"value": pytest.approx(1726.67), "unit": "µm"}  # "HFW 1.73 mm"
    assert md["pixel_size"] == {"value": pytest.approx(3372.4), "unit": "nm"}
    # the pixel size is the field width over the scanned columns
    assert md["pixel_size"]["value"] == pytest.approx(md["field_width"]["value"] * 1e3 / 512, rel=1e-4)
    assert md["accelerating_voltage"] == {"value": pytest.approx(5.0), "unit": "kV"}
    assert md["working_distance"] == {"value": pytest.approx(4.03466), "unit": "mm"}
    assert md["probe_current"] == {"value": pytest.approx(0.00625), "unit": "nA"}
    assert md["detector"] == "ETD" and md["instrument"] == "Helios NanoLab 660"
    assert md["datetime"] == "2016-06-13T17:06:40"
    # the data bar is the rows below the scanned ResolutionY (442 of 471, DatabarHeight 29)
    assert sem.data_bar_row == 442 == 471 - raw["PrivateFei"]["DatabarHeight"]
    assert sem.bit_depth == 8 and sem.notes == []


def test_real_fei_16_bit_copy_reads_like_the_8_bit_one(fei_samples):
    eight, sixteen = read_sem(fei_samples["8bit"]), read_sem(fei_samples["16bit"])
    assert sixteen.metadata == eight.metadata
    # this 16-bit file uses the full range (8-bit data shifted left): no rescaling, no note
    assert sixteen.bit_depth == 16 and sixteen.notes == []
    assert np.abs(sixteen.image - eight.image).max() < 2 / 255


def test_real_fei_navcam_uses_the_sections_its_beam_names(fei_samples):
    sem = read_sem(fei_samples["navcam"])
    md, raw = sem.metadata, sem.raw_metadata
    assert raw["Beam"]["Beam"] == "IRBeam"
    assert md["field_width"]["value"] == pytest.approx(raw["IRBeam"]["HFW"] * 1e6)
    assert md["magnification"]["value"] == pytest.approx(raw["Image"]["MagCanvasRealWidth"] / raw["IRBeam"]["HFW"])
    assert md["detector"] == "Nav-Cam"
    # no electron beam: no voltage, and the camera's negative working distance is not reported
    assert "accelerating_voltage" not in md and "working_distance" not in md
    assert sem.data_bar_row == 512


def test_fei_data_bar_row_is_used_by_preprocess(fei_samples):
    from dass.sem.databar import preprocess

    sem = read_sem(fei_samples["8bit"])
    by_metadata = preprocess(sem, 64)
    by_hand = preprocess(sem.image[:442], 64, crop=False)
    assert np.array_equal(by_metadata, by_hand)

"""dass.stm.nanonis on the real Nanonis files of pynxtools-spm 0.4.1 (see conftest.py).

Expected values come from nanonispy2 itself or from the file's own text header, never from
dass's output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from nanonispy2.read import Scan, Spec

from dass.stm.errors import NanonisFileError, StmFileError
from dass.stm.nanonis import open_dat, open_sxm, read_sxm
from dass.stm.still import StillImage


def _header_field(path: Path, tag: str) -> str:
    """The line after ``:TAG:`` in the raw .sxm header."""
    raw = path.read_bytes()
    head = raw[: raw.index(b":SCANIT_END:")].decode("utf-8", "replace").split("\n")
    return head[head.index(f":{tag}:") + 1].strip()


@pytest.mark.parametrize("fixture", ["stm_sxm", "afm_sxm"])
def test_sxm_matches_nanonispy2_and_header(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    reference = Scan(str(path))
    sxm = open_sxm(path)
    md = sxm.metadata

    nx, ny = (int(v) for v in _header_field(path, "SCAN_PIXELS").split())
    assert (md["points_x"], md["points_y"]) == (nx, ny)
    rx, ry = (float(v) for v in _header_field(path, "SCAN_RANGE").split())
    assert md["size_x"] == {"value": rx, "unit": "m"}
    assert md["size_y"] == {"value": ry, "unit": "m"}
    ox, oy = (float(v) for v in _header_field(path, "SCAN_OFFSET").split())
    assert (md["offset_x"]["value"], md["offset_y"]["value"]) == (ox, oy)
    assert md["angle"]["value"] == float(_header_field(path, "SCAN_ANGLE"))
    assert md["bias"] == {"value": float(_header_field(path, "BIAS")), "unit": "V"}
    assert md["scan_direction"] == _header_field(path, "SCAN_DIR")
    day, month, year = _header_field(path, "REC_DATE").split(".")
    assert md["date"] == f"{year}-{month}-{day}T{_header_field(path, 'REC_TIME')}"
    assert md["setpoint"]["value"] == float(reference.header["z-controller>setpoint"])
    assert md["setpoint"]["unit"] == reference.header["z-controller>setpoint unit"]

    info = reference.header["data_info"]
    assert sxm.channel_names == list(info["Name"])
    assert [c["unit"] for c in md["channels"]] == list(info["Unit"])
    json.dumps(md)  # catalogue metadata must be JSON-able

    for name in sxm.channel_names:
        for direction in ("forward", "backward"):
            raw = sxm.image(name, direction, orient=False)
            assert isinstance(raw, StillImage)
            np.testing.assert_array_equal(raw.data, reference.signals[name][direction])
            assert raw.shape == (ny, nx)
            assert raw.pixel_size == pytest.approx((rx / nx, ry / ny))
            assert raw.unit == info["Unit"][list(info["Name"]).index(name)]


def test_orientation_flips(stm_sxm: Path, afm_sxm: Path) -> None:
    down = open_sxm(stm_sxm)
    assert down.metadata["scan_direction"] == "down"
    ref = Scan(str(stm_sxm)).signals["Z"]
    np.testing.assert_array_equal(down.image("Z", "forward").data, ref["forward"])
    np.testing.assert_array_equal(down.image("Z", "backward").data, ref["backward"][:, ::-1])

    up = open_sxm(afm_sxm)
    assert up.metadata["scan_direction"] == "up"
    ref = Scan(str(afm_sxm)).signals["Current"]
    np.testing.assert_array_equal(up.image("Current").data, ref["forward"][::-1])
    np.testing.assert_array_equal(up.image("Current", "backward").data, ref["backward"][::-1, ::-1])


def test_read_sxm_default_channel_and_metadata(stm_sxm: Path) -> None:
    image = read_sxm(stm_sxm)
    assert image.channel == "Z" and image.unit == "m" and image.direction == "forward"
    assert image.metadata["source"] == str(stm_sxm)
    assert image.metadata["temperature"]["unit"] == "K"
    assert image.size == pytest.approx((4e-9, 4e-9))
    # the input array of the image is read-only: corrections must return new images
    with pytest.raises(ValueError):
        image.data[0, 0] = 1.0


def test_dat_matches_nanonispy2(sts_dat: Path) -> None:
    reference = Spec(str(sts_dat))
    spectrum = open_dat(sts_dat)
    assert list(spectrum.columns) == list(reference.signals)
    for name, values in reference.signals.items():
        np.testing.assert_array_equal(spectrum.columns[name], values)
    md = spectrum.metadata
    assert md["points"] == len(reference.signals["Current (A)"])
    assert md["bias"]["value"] == float(reference.header["Bias>Bias (V)"])
    assert md["sweep_start"]["value"] == float(reference.header["Bias Spectroscopy>Sweep Start (V)"])
    assert md["sweep_end"]["value"] == float(reference.header["Bias Spectroscopy>Sweep End (V)"])
    day, month, rest = reference.header["Start time"].split(".", 2)
    year, clock = rest.split(" ")
    assert md["date"] == f"{year}-{month}-{day}T{clock}"
    assert spectrum.units["Current (A)"] == "A"
    np.testing.assert_array_equal(spectrum.column("Current"), reference.signals["Current (A)"])
    json.dumps(md)


# ---------------------------------------------------------------------------------------------
# errors


def test_truncated_sxm_names_file(stm_sxm: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.sxm"
    data = stm_sxm.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(NanonisFileError, match=r"cut\.sxm: truncated \.sxm") as err:
        open_sxm(cut)
    assert err.value.path == str(cut)
    assert isinstance(err.value, StmFileError)


def test_sxm_cut_inside_header(stm_sxm: Path, tmp_path: Path) -> None:
    cut = tmp_path / "head.sxm"
    cut.write_bytes(stm_sxm.read_bytes()[:2000])
    with pytest.raises(NanonisFileError, match=r"head\.sxm: no header end tag"):
        open_sxm(cut)


def test_not_a_nanonis_file(tmp_path: Path, old_fast: Path) -> None:
    fake = tmp_path / "fake.sxm"
    shutil.copyfile(old_fast, fake)  # an HDF5 file renamed .sxm
    with pytest.raises(NanonisFileError, match=r"fake\.sxm: no header end tag"):
        open_sxm(fake)
    wrong = tmp_path / "scan.txt"
    wrong.write_text("hello")
    with pytest.raises(NanonisFileError, match=r"scan\.txt: not a Nanonis \.sxm file"):
        open_sxm(wrong)
    empty = tmp_path / "empty.sxm"
    empty.write_bytes(b"")
    with pytest.raises(NanonisFileError, match="empty file"):
        open_sxm(empty)
    with pytest.raises(FileNotFoundError, match="missing.sxm"):
        open_sxm(tmp_path / "missing.sxm")


def test_padded_sxm(stm_sxm: Path, tmp_path: Path) -> None:
    longer = tmp_path / "long.sxm"
    longer.write_bytes(stm_sxm.read_bytes() + b"\0" * 64)
    with pytest.raises(NanonisFileError, match="more than the"):
        open_sxm(longer)


def test_missing_channel_and_direction(stm_sxm: Path) -> None:
    sxm = open_sxm(stm_sxm)
    with pytest.raises(NanonisFileError, match=r"no channel 'Phase'; the file has Z, Current"):
        sxm.image("Phase")
    with pytest.raises(NanonisFileError, match="direction 'up' is unknown"):
        sxm.image("Z", "up")


def test_dat_errors(sts_dat: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dat"
    text = sts_dat.read_bytes()
    cut.write_bytes(text[: text.index(b"[DATA]")])  # header only, no data section
    with pytest.raises(NanonisFileError, match=r"cut\.dat: no header end tag"):
        open_dat(cut)
    half = tmp_path / "half.dat"
    body = text.rstrip(b"\r\n")
    half.write_bytes(body[: body.rindex(b"\t")])  # last row loses its last value
    with pytest.raises(NanonisFileError, match=r"half\.dat: .*truncated or damaged .*Line #\d+"):
        open_dat(half)
    with pytest.raises(NanonisFileError, match="no column 'Nope'"):
        open_dat(sts_dat).column("Nope")
    start = text.index(b"[DATA]")
    names_end = text.index(b"\n", start + len(b"[DATA]") + 2) + 1
    for name, data, words in [
        ("header.dat", text[: start + len(b"[DATA]") + 2], "ends after its header: no column names"),
        ("names.dat", text[:names_end], "without data rows after \\[DATA\\]: only the column names"),
    ]:
        (tmp_path / name).write_bytes(data)  # a header with [DATA] but nothing (or names) after
        with pytest.raises(NanonisFileError, match=words) as info:
            open_dat(tmp_path / name)
        assert "indices" not in str(info.value) and str(tmp_path / name) in str(info.value)


def test_sxm_from_fsspec_url(stm_sxm: Path) -> None:
    import fsspec

    url = "memory://stm-test/scan_058.sxm"
    with fsspec.open(url, "wb") as f:
        f.write(stm_sxm.read_bytes())
    try:
        sxm = open_sxm(url)
        assert sxm.path == url
        np.testing.assert_array_equal(sxm.image("Current").data, open_sxm(stm_sxm).image("Current").data)
    finally:
        fsspec.filesystem("memory").rm("/stm-test", recursive=True)

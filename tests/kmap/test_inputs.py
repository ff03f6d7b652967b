"""dass.kmap.inputs: bad inputs are refused before any work; SPEC+EDF and BLISS round trips."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from xsocs.process.qspace import kmap_2_qspace

from dass.kmap import KmapInputError, inputs, qspace, synthetic

from .conftest import copy_scan


def test_check_master_reports_the_scan(small_scan):
    master, truth = small_scan
    info = inputs.check_master(master)
    ny, nx = truth.shape
    assert info.entries == [f"{k}.1" for k in range(1, 10)]
    np.testing.assert_allclose(info.eta, truth.eta_deg)
    assert info.delta == pytest.approx(truth.delta_deg)
    assert (info.n_positions, info.frame_shape, info.scan_shape) == (nx * ny, (32, 32), (ny, nx))
    assert info.beam_energy_ev == pytest.approx(8000.0)
    assert info.motors == ("piy", "pix")
    np.testing.assert_array_equal(info.x, np.tile(truth.x, ny))
    assert "mon" in info.normalizers and info.synthetic


def _edit(master, entry, fn):
    """Apply ``fn(group)`` to ``entry`` of the per-angle file of a copied scan."""
    with h5py.File(master.parent / f"kmap_{entry}.h5", "r+") as h5:
        fn(h5[entry])


def _del(path):
    return lambda g: g.__delitem__(path)


def _replace(path, value):
    def fn(g):
        del g[path]
        g[path] = value
    return fn


CASES = [
    ("missing imgnr", "3.1", _del("measurement/imgnr"), "measurement/imgnr", "missing"),
    ("short imgnr", "2.1", _replace("measurement/imgnr", np.arange(5)), "measurement/imgnr",
     "one value per frame"),
    ("duplicate eta", "4.1", _replace("instrument/positioners/eta", 0.0), None, None),
    ("delta differs", "5.1", _replace("instrument/positioners/del", 70.0),
     "instrument/positioners/del", "rocks eta only"),
    ("wrong frame shape", "6.1",
     _replace("measurement/image/data", np.zeros((48, 16, 32), np.uint16)),
     "measurement/image/data", "frame shape"),
    ("wrong frame count", "6.1",
     _replace("measurement/image/data", np.zeros((40, 32, 32), np.uint16)),
     "measurement/imgnr", "one value per frame"),
    ("frames not 3-D", "2.1", _replace("measurement/image/data", np.zeros((48, 1024))),
     "measurement/image/data", "3-D"),
    ("missing energy", "1.1", _del("instrument/detector/beam_energy"),
     "instrument/detector/beam_energy", "missing beam energy"),
    ("missing positions", "7.1", _del("measurement/adcX"), "measurement/adcX", "missing"),
    ("missing positioner", "8.1", _del("instrument/positioners/phi"),
     "instrument/positioners/phi", "missing angle phi"),
    ("bad energy", "1.1", _replace("instrument/detector/beam_energy", -5.0),
     "instrument/detector/beam_energy", "> 0"),
]


@pytest.mark.parametrize("label, entry, edit, field, words", CASES, ids=[c[0] for c in CASES])
def test_bad_entry_is_refused_before_work(small_scan, tmp_path, label, entry, edit, field, words):
    master = copy_scan(small_scan[0], tmp_path / "scan")
    if label == "duplicate eta":
        with h5py.File(master.parent / "kmap_3.1.h5") as h5:
            eta3 = float(h5["3.1/instrument/positioners/eta"][()])
        edit = _replace("instrument/positioners/eta", eta3)
        field, words = "instrument/positioners/eta", "repeats entry '3.1'"
    _edit(master, entry, edit)
    with pytest.raises(KmapInputError) as err:
        inputs.check_master(master)
    e = err.value
    assert e.file == str(master)
    assert e.entry == entry and e.field == field, str(e)
    assert words in str(e) and entry in str(e) and field in str(e)
    # the conversion refuses it the same way and writes nothing
    with pytest.raises(KmapInputError):
        qspace.convert(master, tmp_path / "q.h5", grid=(10, 10, 10))
    assert not (tmp_path / "q.h5").exists()


def test_xsocs_itself_fails_without_imgnr(small_scan, tmp_path):
    """Why the check exists: xsocs' conversion cannot run without measurement/imgnr."""
    master = copy_scan(small_scan[0], tmp_path / "scan")
    _edit(master, "3.1", _del("measurement/imgnr"))
    with pytest.raises(Exception):  # noqa: B017 - xsocs raises a TypeError deep inside
        kmap_2_qspace(str(master), str(tmp_path / "q.h5"), [10, 10, 10], n_proc=1)


def test_not_hdf5_and_missing(tmp_path):
    text = tmp_path / "scan.h5"
    text.write_text("#F spec file, not HDF5\n")
    with pytest.raises(KmapInputError, match="not an HDF5 file") as err:
        inputs.check_master(text)
    assert err.value.file == str(text)
    with pytest.raises(KmapInputError, match="file not found"):
        inputs.check_master(tmp_path / "nothing.h5")
    with pytest.raises(KmapInputError, match="not an HDF5 file"):
        qspace.convert(text, tmp_path / "q.h5", grid=(10, 10, 10))


def test_missing_entry_file(small_scan, tmp_path):
    master = copy_scan(small_scan[0], tmp_path / "scan")
    (master.parent / "kmap_4.1.h5").unlink()
    with pytest.raises(KmapInputError, match="cannot be opened") as err:
        inputs.check_master(master)
    assert err.value.entry == "4.1" and "kmap_4.1.h5" in str(err.value)


def test_no_entries(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("something")
    with pytest.raises(KmapInputError, match="no NXentry"):
        inputs.check_master(path)


def _same_scan(a, b, *, angle_tol):
    ia, ib = inputs.check_master(a), inputs.check_master(b)
    assert ia.n_positions == ib.n_positions and ia.frame_shape == ib.frame_shape
    assert ia.scan_shape == ib.scan_shape and ia.motors == ib.motors
    np.testing.assert_allclose(ib.eta, ia.eta, atol=angle_tol)
    assert ib.delta == pytest.approx(ia.delta, abs=angle_tol)
    np.testing.assert_allclose(ib.x, ia.x)
    np.testing.assert_allclose(ib.y, ia.y)
    assert ib.beam_energy_ev == pytest.approx(ia.beam_energy_ev, rel=1e-9)
    np.testing.assert_allclose(ib.chan_per_deg, ia.chan_per_deg, rtol=1e-9)
    assert ib.center_chan == ia.center_chan
    with h5py.File(a) as ha, h5py.File(b) as hb:
        for ea, eb in zip(ia.entries, ib.entries):
            np.testing.assert_array_equal(hb[eb]["measurement/image/data"][()],
                                          ha[ea]["measurement/image/data"][()])
            np.testing.assert_array_equal(hb[eb]["measurement/imgnr"][()],
                                          ha[ea]["measurement/imgnr"][()])


def test_spec_edf_round_trip(small_scan, tmp_path):
    master, truth = small_scan
    spec, img_dir = synthetic.write_spec_edf(master, tmp_path / "raw")
    info = inputs.check_master(master)
    merged = inputs.from_spec(spec, img_dir, tmp_path / "merged", beam_energy=8000.0,
                              chan_per_deg=info.chan_per_deg, center_chan=info.center_chan)
    # SPEC stores the angles with float32 precision (silx spech5)
    _same_scan(master, merged, angle_tol=1e-5)
    # and it converts: same histogram axes range as the original within that precision
    qspace.convert(merged, tmp_path / "q.h5", grid=(10, 10, 10))


def test_bliss_round_trip(small_scan, tmp_path):
    master, _ = small_scan
    bliss = synthetic.write_bliss(master, tmp_path / "bliss" / "sample_0001.h5")
    linked = inputs.from_bliss(bliss, tmp_path / "xsocs")
    assert linked.name == "sample_0001_master.h5"
    _same_scan(master, linked, angle_tol=0.0)
    qspace.convert(linked, tmp_path / "q.h5", grid=(10, 10, 10))


def test_spec_errors(tmp_path, small_scan):
    with pytest.raises(KmapInputError, match="SPEC file not found"):
        inputs.from_spec(tmp_path / "none.spec", None, tmp_path / "out")
    binary = tmp_path / "scan.spec"
    binary.write_bytes(b"\x89HDF\r\n\x00\x00")
    with pytest.raises(KmapInputError, match="not a SPEC file"):
        inputs.from_spec(binary, None, tmp_path / "out")
    spec, _ = synthetic.write_spec_edf(small_scan[0], tmp_path / "raw")
    with pytest.raises(KmapInputError, match="image folder not found"):
        inputs.from_spec(spec, tmp_path / "no-such-dir", tmp_path / "out")
    empty = tmp_path / "empty-edf"
    empty.mkdir()
    with pytest.raises(KmapInputError, match="imageFile"):
        inputs.from_spec(spec, empty, tmp_path / "out2", beam_energy=8000.0,
                         chan_per_deg=(95.0, 95.0), center_chan=(15.5, 15.5))


def test_bliss_errors(tmp_path, small_scan):
    with pytest.raises(KmapInputError, match="BLISS file not found"):
        inputs.from_bliss(tmp_path / "none.h5", tmp_path / "out")
    bliss = synthetic.write_bliss(small_scan[0], tmp_path / "b.h5")
    with h5py.File(bliss, "r+") as h5:
        del h5["2.1/instrument/monochromator/WaveLength"]
    with pytest.raises(KmapInputError) as err:
        inputs.from_bliss(bliss, tmp_path / "out")
    assert err.value.entry == "2.1"
    assert err.value.field == "instrument/monochromator/WaveLength"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = 1
    with pytest.raises(KmapInputError, match="not a BLISS dataset"):
        inputs.from_bliss(other, tmp_path / "out")

"""KMAP maps are trustworthy by default (issue 14): what cannot be trusted is masked, with
its reason, and the statistics, colour scales and pictures use the valid positions only;
bad inputs are refused before any heavy work, naming file, entry and field."""

from __future__ import annotations

import csv
import math

import h5py
import numpy as np
import pytest

from dass.kmap import KmapInputError, inputs, synthetic
from dass.kmap.fast import convert_fit
from dass.kmap.maps import MASK_REASONS, robust_limits
from dass.kmap.service import maps_of, process_scan

from .conftest import BEAMLINE, copy_scan


@pytest.fixture(scope="module")
def processed(beamline_scan, tmp_path_factory):
    master, truth = beamline_scan
    out = tmp_path_factory.mktemp("trust")
    summary = process_scan(master, out, grid=(30, 30, 30), normalizer="mon",
                           reference={"hkl": list(truth.hkl), "lattice_a": truth.lattice_a})
    return summary, maps_of(summary), truth


def test_positions_without_peak_and_zero_monitor_are_masked_by_default(processed):
    summary, maps, truth = processed
    bad = sorted({*BEAMLINE["no_peak"], *BEAMLINE["empty"], *BEAMLINE["zero_monitor"]})
    assert np.nonzero(~maps.ok.ravel())[0].tolist() == bad
    assert maps.reasons["normalizer"].ravel()[BEAMLINE["zero_monitor"][0]]
    assert summary["masked"]["normalizer"] == 1
    for i in (*BEAMLINE["no_peak"], *BEAMLINE["empty"]):
        # xsocs calls these fits ok: the default rules catch them
        assert maps.reasons["outside_grid"].ravel()[i] or maps.reasons["peak"].ravel()[i]
    assert summary["ok_positions"] == truth.strain.size - len(bad)
    assert any("normalizer 'mon'" in w for w in summary["warnings"])
    assert set(summary["mask_reasons"]) == set(MASK_REASONS)


def test_statistics_use_valid_positions_only(processed):
    summary, maps, truth = processed
    ok = maps.ok
    err = maps.strain[ok] - truth.strain[ok]
    assert math.sqrt(np.mean(err**2)) <= 5e-5
    # the summary's rms is the field's, not that of two nonsense cells
    true_rms = math.sqrt(np.mean(truth.strain[ok] ** 2))
    assert summary["statistics"]["strain"]["rms"] == pytest.approx(true_rms, abs=5e-5)
    assert summary["statistics"]["strain"]["count"] == int(ok.sum())
    for name, expected in (("pitch", truth.pitch_deg), ("roll", truth.roll_deg)):
        d = getattr(maps, name)[ok] - expected[ok]
        assert np.abs(d).max() <= 0.002, name
    lo, hi = robust_limits(maps.strain, ok)
    assert truth.strain.min() - 1e-4 <= lo < hi <= truth.strain.max() + 1e-4


def test_reason_map_is_written(processed):
    summary, maps, _ = processed
    out = maps_of(summary)
    codes = out.reason_map()
    i = BEAMLINE["zero_monitor"][0]
    assert MASK_REASONS[codes.ravel()[i] - 1] == "normalizer"
    assert (codes[maps.ok] == 0).all() and (codes[~maps.ok] > 0).all()
    from pathlib import Path

    folder = Path(summary["output_dir"])
    with h5py.File(folder / summary["files"]["hdf5"]) as h5:
        np.testing.assert_array_equal(h5["entry/mask/reason"][()], codes)
        assert "normalizer" in h5["entry/mask/reason"].attrs["legend"]
    with open(folder / summary["files"]["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[i]["reason"] == "normalizer" and rows[0]["reason"] == ""


def test_robust_limits_ignore_outliers():
    rng = np.random.default_rng(0)
    values = 1e-3 * rng.standard_normal((12, 12))
    values[0, 0] = values[3, 4] = -0.4
    lo, hi = robust_limits(values)
    assert -0.01 < lo < hi < 0.01
    assert robust_limits(np.full((3, 3), np.nan)) is None
    assert robust_limits(np.ones(4)) == (1.0, 1.0)


def test_thresholds_and_mask_file_reach_the_job_function(beamline_scan, tmp_path):
    master, truth = beamline_scan
    mask = np.zeros(BEAMLINE["frame_shape"], np.uint8)
    mask[:, :3] = 1
    np.save(tmp_path / "mask.npy", mask)
    summary = process_scan(master, tmp_path / "out", grid=(24, 24, 24), mask=str(tmp_path / "mask.npy"),
                           strain_range=(-1e-4, 1e-4), min_height=1.0,
                           reference={"hkl": list(truth.hkl), "lattice_a": truth.lattice_a})
    assert summary["parameters"]["mask"] and summary["parameters"]["masked_pixels"] == 24 * 3
    assert summary["parameters"]["strain_range"] == [-1e-4, 1e-4]
    assert summary["masked"]["strain_range"] > 0
    maps = maps_of(summary)
    assert np.nanmax(np.abs(maps.strain)) <= 1e-4
    with h5py.File(tmp_path / "out" / summary["files"]["qspace"]) as h5:
        np.testing.assert_array_equal(h5["Params/image_mask"][()], mask)


@pytest.mark.parametrize("kwargs, field", [
    ({"strain_range": (1, 0)}, None), ({"engine": "gpu"}, "engine"),
    ({"mask": "/nonexistent/mask.npy"}, "mask"), ({"normalizer": "nope"}, "normalizer"),
])
def test_job_function_refuses_bad_options_before_work(beamline_scan, tmp_path, kwargs, field):
    with pytest.raises(KmapInputError) as err:
        process_scan(beamline_scan[0], tmp_path / "o", **kwargs)
    assert err.value.field == field
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# -- input checks -----------------------------------------------------------------------------


def test_empty_scan_says_no_frames(small_scan, tmp_path):
    master = copy_scan(small_scan[0], tmp_path / "scan")
    with h5py.File(master.parent / "kmap_2.1.h5", "r+") as h5:
        del h5["2.1/measurement/image/data"]
        h5["2.1/measurement/image/data"] = np.zeros((0, 32, 32), np.uint16)
    with pytest.raises(KmapInputError, match="no frames") as err:
        inputs.check_master(master)
    assert (err.value.entry, err.value.field) == ("2.1", "measurement/image/data")


def _corrupt_chunk(path, entry, index):
    with h5py.File(path, "r") as h5:
        info = h5[f"{entry}/measurement/image/data"].id.get_chunk_info(index)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + 8)
        f.write(b"\xff" * max(8, info.size - 16))


@pytest.fixture(scope="module")
def gzip_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("kmap-gzip")
    return synthetic.generate(out, shape=(3, 4), n_angles=5, frame_shape=(16, 20), compression="gzip", seed=3)


def test_corrupt_first_chunk_is_found_before_work(gzip_scan, tmp_path):
    master = copy_scan(gzip_scan[0], tmp_path / "scan")
    _corrupt_chunk(master.parent / "kmap_3.1.h5", "3.1", 0)
    with pytest.raises(KmapInputError, match="cannot be read") as err:
        inputs.check_master(master)
    assert err.value.file.endswith("kmap_3.1.h5")
    assert (err.value.entry, err.value.field) == ("3.1", "measurement/image/data")


def test_corrupt_chunk_mid_scan_names_file_entry_and_frames(gzip_scan, tmp_path):
    master = copy_scan(gzip_scan[0], tmp_path / "scan")
    _corrupt_chunk(master.parent / "kmap_2.1.h5", "2.1", 7)
    with pytest.raises(KmapInputError, match="cannot be read") as err:
        convert_fit(master, tmp_path / "q.h5", tmp_path / "fit.h5", grid=(10, 10, 10), n_proc=2)
    assert err.value.file.endswith("kmap_2.1.h5") and err.value.entry == "2.1"
    assert err.value.field == "measurement/image/data"
    assert not (tmp_path / "fit.h5").exists() and not (tmp_path / "q.h5").exists()


def test_normalizer_without_a_usable_value_is_refused(small_scan, tmp_path):
    master = copy_scan(small_scan[0], tmp_path / "scan")
    with h5py.File(master.parent / "kmap_4.1.h5", "r+") as h5:
        h5["4.1/measurement/mon"][...] = 0.0
    with pytest.raises(KmapInputError, match="<= 0 or not finite at every position") as err:
        process_scan(master, tmp_path / "out", normalizer="mon")
    assert (err.value.entry, err.value.field) == ("4.1", "measurement/mon")
    info = inputs.check_master(master)
    with h5py.File(master.parent / "kmap_4.1.h5", "r+") as h5:
        h5["4.1/measurement/mon"][...] = 1.0
        h5["4.1/measurement/mon"][3] = np.nan
    bad = inputs.check_normalizer(info, "mon")
    assert np.nonzero(bad)[0].tolist() == [3]


def test_load_mask_files(tmp_path):
    mask = np.zeros((4, 5), np.int32)
    mask[1, 2] = 7
    np.save(tmp_path / "m.npy", mask)
    with h5py.File(tmp_path / "m.h5", "w") as h5:
        h5["entry/mask"] = mask
        h5["entry/other"] = np.zeros(3)
    expected = (mask != 0).astype(np.uint8)
    np.testing.assert_array_equal(inputs.load_mask(tmp_path / "m.npy", (4, 5)), expected)
    np.testing.assert_array_equal(inputs.load_mask(f"{tmp_path / 'm.h5'}::entry/mask"), expected)
    np.testing.assert_array_equal(inputs.load_mask(tmp_path / "m.h5"), expected)
    assert inputs.load_mask(None) is None
    with pytest.raises(KmapInputError, match="frame shape"):
        inputs.load_mask(mask, (5, 4))
    with pytest.raises(KmapInputError, match="not found"):
        inputs.load_mask(tmp_path / "missing.npy")
    (tmp_path / "m.txt").write_text("1 0")
    with pytest.raises(KmapInputError, match="unknown mask file type"):
        inputs.load_mask(tmp_path / "m.txt")



def test_job_options_from_notebook_parameters(tmp_path):
    from dass.kmap.service import job_options

    assert job_options() == {"engine": "dass", "write_qspace": True, "mask": None, "normalizer": None,
                             "min_height": None, "max_width": None, "strain_range": None}
    got = job_options(dataset_path=tmp_path, mask_file="masks/m.npy", normalizer="mon", min_height=2.5,
                      max_width=0.01, strain_range=[-1e-3, 2e-3], engine="xsocs", write_qspace=False)
    assert got == {"engine": "xsocs", "write_qspace": False, "mask": str(tmp_path / "masks/m.npy"),
                   "normalizer": "mon", "min_height": 2.5, "max_width": 0.01, "strain_range": (-1e-3, 2e-3)}
    for kwargs, field in (({"engine": "fast"}, "engine"), ({"min_height": -1}, "min_height"),
                          ({"max_width": "wide"}, "max_width"), ({"strain_range": [1]}, "strain_range"),
                          ({"strain_range": [2e-3, -1e-3]}, "strain_range")):
        with pytest.raises(KmapInputError) as err:
            job_options(**kwargs)
        assert err.value.field == field

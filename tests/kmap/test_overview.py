"""dass.kmap.overview: the steps of the KMAP notebooks (scan overview, landing first look, the
choices around process_scan), on a synthetic scan, checked against h5py read directly."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from dass.kmap import KmapInputError
from dass.kmap.overview import (
    FRAMES_PATH,
    check_bounds,
    choose_scan_file,
    describe_group,
    describe_scan_file,
    entry_lines,
    log_scaled,
    map_pngs,
    reference_from_metadata,
    reference_from_parameters,
    scan_entries,
    summed_frame,
)


def test_choose_scan_file_prefers_a_master():
    assert choose_scan_file(["a.h5", "x_master.h5", "y_master.h5"]) == "x_master.h5"
    assert choose_scan_file(["b.nxs", "a.h5"]) == "b.nxs"  # the first name as given
    with pytest.raises(ValueError, match="no HDF5 file"):
        choose_scan_file([])


def test_scan_entries_describe_every_entry(small_scan):
    master, truth = small_scan
    entries = scan_entries(master)
    assert [e["name"] for e in entries] == [f"{k}.1" for k in range(1, 10)]
    ny, nx = truth.shape
    with h5py.File(master, "r") as h5:
        for entry in entries:
            group = h5[entry["name"]]
            assert entry["datasets"][FRAMES_PATH] == {"shape": [nx * ny, 32, 32], "dtype": str(group[FRAMES_PATH].dtype)}
            assert entry["datasets"] == describe_group(group)
            assert entry["positioners"]["eta"] == pytest.approx(float(group["instrument/positioners/eta"][()]))
    np.testing.assert_allclose([e["positioners"]["eta"] for e in entries], truth.eta_deg)
    text = entry_lines(entries[:1]).splitlines()
    assert text[0].startswith(f"1.1: {len(entries[0]['datasets'])} datasets, positioners {{")
    assert any(line.startswith(f"    {FRAMES_PATH}  shape=({nx * ny}, 32, 32) dtype=") for line in text[1:])


def test_scan_entries_of_a_file_without_groups_names_it(tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(ValueError, match="p1/scan/flat.h5 holds no entry"):
        scan_entries(path, label="p1/scan/flat.h5")


def test_summed_frame_is_the_sum_of_the_first_entrys_frames(small_scan, tmp_path):
    master, _ = small_scan
    entries = scan_entries(master)
    summed = summed_frame(master, entries[0], tmp_path / "sum.png", block=5)  # blocks not dividing the count
    with h5py.File(master, "r") as h5:
        frames = h5["1.1"][FRAMES_PATH][()]
    expected = frames.sum(axis=0, dtype=np.float64)
    np.testing.assert_array_equal(summed.total, expected)
    assert summed.record == {
        "entry": "1.1", "dataset": FRAMES_PATH, "frames": frames.shape[0], "shape": [32, 32],
        "min": float(expected.min()), "max": float(expected.max()), "total": float(expected.sum()),
        "png": "sum.png", "png_scaling": "log(1 + counts), minimum to maximum as 0..255",
    }
    assert summed.peak == tuple(int(i) for i in np.unravel_index(np.argmax(expected), expected.shape))
    with Image.open(tmp_path / "sum.png") as png:
        assert png.mode == "L" and np.array_equal(np.asarray(png), log_scaled(expected))


def test_summed_frame_takes_the_first_3d_dataset_or_none(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["e/plain"] = np.zeros(4)
        h5["e/cube"] = np.ones((3, 2, 2))
        h5["f/plain"] = np.zeros(4)
    entries = scan_entries(path)
    summed = summed_frame(path, entries[0], tmp_path / "e.png")
    assert summed.record["dataset"] == "cube" and summed.total.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert summed_frame(path, entries[1], tmp_path / "f.png") is None
    assert not (tmp_path / "f.png").exists()
    with pytest.raises(ValueError, match="block"):
        summed_frame(path, entries[0], tmp_path / "e.png", block=0)


def test_log_scaled():
    counts = np.array([[0.0, 9.0], [99.0, -3.0]])
    before = counts.copy()
    shown = np.log1p(np.array([[0.0, 9.0], [99.0, 0.0]]))
    expected = np.round(shown / shown.max() * 255).astype(np.uint8)
    assert np.array_equal(log_scaled(counts), expected)
    assert np.array_equal(counts, before)
    assert log_scaled(np.full((2, 2), 5.0)).tolist() == [[0, 0], [0, 0]]


def test_describe_scan_file_shows_the_first_entry_and_the_angles(small_scan):
    master, truth = small_scan
    text = describe_scan_file(master, label="p/kmap/kmap_master.h5").splitlines()
    assert text[0].startswith("p/kmap/kmap_master.h5: 9 entries ['1.1', '2.1'")
    assert text[1] == "1.1/"
    assert "    measurement/" in text and "        data  shape=" in "\n".join(text)
    assert text[-1] == f"eta per entry (deg): {[float(e) for e in truth.eta_deg]}"


def test_references_from_parameters_and_metadata():
    assert reference_from_parameters(hkl=(0, 0, 4), lattice_a=5.431) == {"hkl": [0, 0, 4], "lattice_a": 5.431}
    assert reference_from_parameters(hkl=[1, 1, 1], lattice_a=5.0, region=(0, 1, 2, 3)) == {"region": [0, 1, 2, 3]}
    with pytest.raises(KmapInputError, match=r"reference_region must be \[x_min, x_max, y_min, y_max\]"):
        reference_from_parameters(hkl=[0, 0, 4], lattice_a=5.431, region=[1, 2])
    assert reference_from_metadata({"domain": {"hkl": [0, 0, 4], "lattice_a": 5.431, "x": 1}}) == {
        "hkl": [0, 0, 4], "lattice_a": 5.431}
    assert reference_from_metadata({}) is None and reference_from_metadata({"domain": None}) is None


def test_check_bounds():
    check_bounds([], "roi")
    check_bounds([0, 1, 0, 1], "roi")
    with pytest.raises(KmapInputError, match=r"roi must be .* got \[1, 2, 3\]"):
        check_bounds([1, 2, 3], "roi")


def test_map_pngs():
    summary = {"files": {"hdf5": "s_maps.h5", "png_strain": "s_strain.png", "png_roll": "s_roll.png",
                         "png_pitch": "s_pitch.png", "csv": "s_maps.csv"}}
    assert map_pngs(summary) == ["s_pitch.png", "s_roll.png", "s_strain.png"]
    assert map_pngs(summary, ("strain", "pitch", "roll", "other")) == ["s_strain.png", "s_pitch.png", "s_roll.png"]

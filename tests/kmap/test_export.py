"""dass.kmap.export: NeXus-style HDF5, CSV and PNG of strain/tilt maps, read back."""

from __future__ import annotations

import csv
import json
import math

import h5py
import numpy as np
import pytest
from PIL import Image

from dass.kmap.errors import KmapInputError
from dass.kmap.export import (
    CSV_COLUMNS,
    export_all,
    read_hdf5,
    write_csv,
    write_hdf5,
    write_png,
)
from dass.kmap.maps import MAP_NAMES, Maps, Reference, strain_tilt_arrays


@pytest.fixture
def maps() -> Maps:
    """A 4 x 5 map (0.5 µm steps) with a strain ramp, one failed fit and one missing position."""
    ny, nx = 4, 5
    x = 2.0 + np.arange(nx) * 0.5
    y = np.arange(ny) * 0.5
    xx, yy = np.meshgrid(x, y)
    ref = Reference.from_reflection((0, 0, 4), lattice_a=5.431, energy_kev=8.0)
    strain = 1e-4 * xx - 2e-4 * yy
    pitch = np.radians(0.01 * xx)
    roll = np.radians(-0.02 * yy)
    qn = ref.q0_norm / (1 + strain)
    q = np.stack([qn * np.sin(pitch), qn * np.cos(pitch) * np.sin(roll), qn * np.cos(pitch) * np.cos(roll)], -1)
    px, py, pq = xx.ravel(), yy.ravel(), q.reshape(-1, 3)
    status = np.ones(px.size, bool)
    status[7] = False
    keep = np.arange(px.size) != 12
    return strain_tilt_arrays(px[keep], py[keep], pq[keep], ref, status_ok=status[keep],
                              settings={"fit_method": "gaussian"})


def test_hdf5_is_nexus_style_and_reads_back(maps, tmp_path):
    path = write_hdf5(maps, tmp_path / "m.h5", provenance={"synthetic": True, "master": "scan_master.h5"})
    with h5py.File(path, "r") as h5:
        assert h5.attrs["NX_class"] == "NXroot" and h5.attrs["default"] == "entry"
        entry = h5["entry"]
        assert entry.attrs["NX_class"] == "NXentry" and entry.attrs["synthetic"]
        assert "SYNTHETIC" in entry["title"][()].decode()
        assert entry.attrs["default"] in entry
        for name in MAP_NAMES:
            grp = entry[name]
            assert grp.attrs["NX_class"] == "NXdata"
            assert grp.attrs["signal"] == name
            assert list(grp.attrs["axes"]) == ["y", "x"]
            for axis in ("x", "y"):
                assert grp[axis].attrs["units"] == "um"
                assert grp[axis].attrs["long_name"]
            np.testing.assert_array_equal(grp["x"][()], maps.x)
            np.testing.assert_array_equal(grp["y"][()], maps.y)
            assert "long_name" in grp[name].attrs
            np.testing.assert_array_equal(grp[name][()], maps.map(name))
        assert entry["pitch/pitch"].attrs["units"] == "deg"
        assert entry["q_norm/q_norm"].attrs["units"] == "1/angstrom"
        np.testing.assert_array_equal(entry["mask/ok"][()].astype(bool), maps.ok)
        assert entry["reference"].attrs["NX_class"] == "NXparameters"
        assert entry["reference/q0_norm"][()] == pytest.approx(maps.reference.q0_norm)
        assert entry["reference/hkl"][()].tolist() == [0, 0, 4]
        assert entry["reference/energy_kev"].attrs["units"] == "keV"
        assert entry["process"].attrs["NX_class"] == "NXprocess"
        prov = json.loads(entry["process/provenance/data"][()])
        assert prov["master"] == "scan_master.h5"
        assert entry["statistics/strain/count"][()] == maps.stats["strain"]["count"]
    back = read_hdf5(path)
    for name in MAP_NAMES:
        np.testing.assert_array_equal(back.map(name), maps.map(name))
    np.testing.assert_array_equal(back.ok, maps.ok)
    np.testing.assert_array_equal(back.index, maps.index)
    np.testing.assert_array_equal(back.reasons["fit_status"], maps.reasons["fit_status"])
    np.testing.assert_allclose(back.reference.q0, maps.reference.q0)
    assert back.settings["fit_method"] == "gaussian"
    assert back.stats["strain"]["median"] == pytest.approx(maps.stats["strain"]["median"])


def test_csv_has_one_row_per_position(maps, tmp_path):
    path = write_csv(maps, tmp_path / "m.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 19  # 20 positions, one missing
    by_pos = {(float(r["x"]), float(r["y"])): r for r in rows}
    for iy, yv in enumerate(maps.y):
        for ix, xv in enumerate(maps.x):
            row = by_pos.get((float(xv), float(yv)))
            if maps.index[iy, ix] < 0:
                assert row is None
                continue
            assert int(row["ok"]) == int(maps.ok[iy, ix])
            if maps.ok[iy, ix]:
                assert float(row["strain"]) == maps.strain[iy, ix]
                assert float(row["roll"]) == maps.roll[iy, ix]
                assert float(row["qz"]) == maps.q[iy, ix, 2]
                assert float(row["q_norm"]) == pytest.approx(math.dist((0, 0, 0), maps.q[iy, ix]), rel=1e-15)
            else:
                assert math.isnan(float(row["strain"]))
    assert sum(int(r["ok"]) for r in rows) == 18


def test_png_decodes_with_the_requested_size(maps, tmp_path):
    path = write_png(maps, tmp_path / "strain.png", "strain", size_px=(500, 400))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (500, 400)
        pixels = np.asarray(im.convert("RGB"))
    # the colour map's reds and blues are there (a ramp through 0 drawn with RdBu_r)
    assert (pixels[..., 0].astype(int) - pixels[..., 2] > 100).any()
    assert (pixels[..., 2].astype(int) - pixels[..., 0] > 100).any()
    with pytest.raises(KmapInputError, match="no map 'stress'"):
        write_png(maps, tmp_path / "x.png", "stress")


def test_export_all_and_overwrite(maps, tmp_path):
    paths = export_all(maps, tmp_path / "out", stem="scan")
    assert sorted(paths) == ["csv", "hdf5", "png_pitch", "png_roll", "png_strain"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_all(maps, tmp_path / "out", stem="scan")
    again = export_all(maps, tmp_path / "out", stem="scan", overwrite=True)
    assert again == paths


def test_bad_inputs(maps, tmp_path):
    with pytest.raises(KmapInputError, match="needs dass.kmap.maps.Maps"):
        write_hdf5({"strain": np.zeros((2, 2))}, tmp_path / "x.h5")
    with pytest.raises(KmapInputError, match="not found"):
        read_hdf5(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(KmapInputError, match="not an HDF5 file"):
        read_hdf5(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["entry/strain/strain"] = np.zeros((2, 2))
    with pytest.raises(KmapInputError, match="not a dass KMAP maps file"):
        read_hdf5(tmp_path / "other.h5")

"""End to end on a synthetic KMAP scan: generator → xsocs conversion → Gaussian fit → maps.

The synthetic scan (dass.kmap.synthetic, labelled synthetic) is 10 x 14 positions at 0.5 µm,
11 rocking angles over 0.25°, 32 x 32 pixel frames with Poisson noise, Si(004) at 8 keV, a
strain ramp along y (4e-4), pitch and roll ramps (0.02°) and a disc-shaped island of +1e-3
strain with a sharp edge. Three positions have no Bragg peak at all (flat background frames:
the fit returns nonsense there, which the maps must mask).
"""

from __future__ import annotations

import csv
import json
import math

import h5py
import numpy as np
import pytest
from PIL import Image

from dass.kmap.errors import KmapInputError
from dass.kmap.export import read_hdf5
from dass.kmap.fit import read_fit
from dass.kmap.maps import Reference, edge_positions, strain_tilt
from dass.kmap.service import STAGES, process_scan

pytest.importorskip("xsocs")

DEAD = (17, 120, 130)  # positions whose frames hold background only (outside the island rows)
ISLAND = {"center": (3.25, 2.25), "radius": 1.3, "strain": 1e-3}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    from dass.kmap import synthetic

    root = tmp_path_factory.mktemp("kmap-e2e")
    master, truth = synthetic.generate(
        root / "scan", shape=(10, 14), n_angles=11, frame_shape=(32, 32), strain=(0.0, 0.0, 4e-4),
        island=ISLAND, noise=True, seed=1,
    )
    rng = np.random.default_rng(7)
    for path in sorted((root / "scan").glob("kmap_*.1.h5")):
        with h5py.File(path, "r+") as h5:
            (entry,) = list(h5)
            frames = h5[entry]["measurement/image/data"]
            for i in DEAD:
                frames[i] = rng.poisson(1.0, frames.shape[1:])
    calls = []
    summary = process_scan(
        master, root / "out", grid=(40, 40, 40), method="gaussian", background="none",
        reference={"hkl": list(truth.hkl), "lattice_a": truth.lattice_a}, n_proc=1,
        progress=lambda f, stage: calls.append((f, stage)),
    )
    fit = read_fit(root / "out" / summary["files"]["fit"])
    return {"master": master, "truth": truth, "summary": summary, "out": root / "out", "fit": fit, "calls": calls}


def _live(truth):
    """Cells with a peak (the dead positions excluded), as a (ny, nx) mask."""
    live = np.ones(truth.shape, bool)
    live.ravel()[list(DEAD)] = False
    return live


def test_strain_and_tilt_match_ground_truth(scan):
    truth, summary = scan["truth"], scan["summary"]
    maps = read_hdf5(scan["out"] / summary["files"]["hdf5"])
    live = _live(truth)
    np.testing.assert_allclose(maps.x, truth.x, atol=1e-9)
    np.testing.assert_allclose(maps.y, truth.y, atol=1e-9)
    assert maps.ok[live].all()
    assert maps.reference.q0_norm == pytest.approx(truth.q0, rel=1e-12)
    err = maps.strain[live] - truth.strain[live]
    rms = math.sqrt(np.mean(err**2))
    assert rms <= 5e-5, rms
    for name, expected in (("pitch", truth.pitch_deg), ("roll", truth.roll_deg)):
        d = getattr(maps, name)[live] - expected[live]
        assert math.sqrt(np.mean(d**2)) <= 0.002, (name, d)
        assert np.abs(d).max() <= 0.002, (name, np.abs(d).max())
    assert summary["synthetic"] is True and "SYNTHETIC" in summary["title"]


def test_island_edge_within_one_step(scan):
    truth = scan["truth"]
    maps = read_hdf5(scan["out"] / scan["summary"]["files"]["hdf5"])
    cx, cy = ISLAND["center"]
    r = ISLAND["radius"]
    live = _live(truth)
    checked = 0
    for iy, yv in enumerate(maps.y):
        half = r**2 - (yv - cy) ** 2
        inside = np.abs(maps.x - cx) <= math.sqrt(half) if half > 0 else np.zeros(maps.x.size, bool)
        if inside.sum() < 2 or not live[iy].all():
            continue
        row = maps.strain[iy]
        threshold = 0.5 * (row.min() + row.max())  # from the recovered row only
        edges = edge_positions(row, threshold, coords=maps.x)
        chord = math.sqrt(half)
        assert len(edges) == 2, (yv, edges)
        assert abs(edges[0] - (cx - chord)) <= truth.step, (yv, edges)
        assert abs(edges[1] - (cx + chord)) <= truth.step, (yv, edges)
        checked += 1
    assert checked >= 3
    # the centre row: where the generator says it put the edges
    iy = int(np.argmin(np.abs(maps.y - cy)))
    row = maps.strain[iy]
    edges = edge_positions(row, 0.5 * (row.min() + row.max()), coords=maps.x)
    np.testing.assert_allclose(edges, truth.island["edge_x"], atol=truth.step)


def test_failed_fits_are_masked(scan):
    fit, truth = scan["fit"], scan["truth"]
    ref = Reference.from_reflection(truth.hkl, truth.lattice_a, energy_kev=truth.energy_kev)
    good_height = np.median(fit.height, axis=0).min()
    maps = strain_tilt(fit, ref, min_height=0.1 * good_height, strain_range=(-0.01, 0.01))
    assert sorted(np.nonzero(~maps.ok.ravel())[0].tolist()) == list(DEAD)
    assert np.isnan(maps.strain.ravel()[list(DEAD)]).all()
    assert maps.stats["strain"]["masked"] == len(DEAD)
    live = _live(truth)
    assert math.sqrt(np.mean((maps.strain[live] - truth.strain[live]) ** 2)) <= 5e-5


def test_reference_region_gives_zero_strain_there(scan):
    fit, truth = scan["fit"], scan["truth"]
    box = (4.9, 6.6, 3.4, 4.6)  # x 5.0..6.5, y 3.5..4.5: 4 x 3 positions, away from the island
    ref = Reference.from_region(fit, box)
    assert ref.params["n_points"] == 12
    maps = strain_tilt(fit, ref)
    sel = (maps.x[None, :] >= box[0]) & (maps.x[None, :] <= box[1]) & (maps.y[:, None] >= box[2]) & (maps.y[:, None] <= box[3])
    region = maps.strain[sel]
    assert abs(np.median(region)) <= 5e-6
    # the ramp along y spans 2 steps in the box: |ε| there stays within it
    ramp_per_step = 4e-4 / (truth.y[-1] - truth.y[0]) * truth.step
    assert np.abs(region).max() <= 1.5 * ramp_per_step + 2e-5
    assert abs(np.median(maps.pitch[sel])) <= 0.002 and abs(np.median(maps.roll[sel])) <= 0.002
    # relative strain elsewhere = ratio of the true |q| to the region's
    live = _live(truth)
    expected = (1 + truth.strain) / (1 + np.median(truth.strain[sel])) - 1
    assert math.sqrt(np.mean((maps.strain[live] - expected[live]) ** 2)) <= 5e-5


def test_exports_and_summary(scan):
    out, summary, truth = scan["out"], scan["summary"], scan["truth"]
    def strict(token):
        raise AssertionError(f"summary JSON holds {token}")

    on_disk = json.loads((out / summary["files"]["summary"]).read_text(), parse_constant=strict)
    assert on_disk["statistics"]["strain"]["count"] == summary["statistics"]["strain"]["count"]
    assert set(summary["files"]) >= {"qspace", "fit", "hdf5", "csv", "png_strain", "png_pitch", "png_roll", "summary"}
    assert summary["scan"]["n_positions"] == truth.strain.size and summary["scan"]["n_angles"] == 11
    with h5py.File(out / summary["files"]["hdf5"], "r") as h5:
        assert h5["entry"].attrs["synthetic"]
        assert h5["entry/strain/x"].attrs["units"] == "um"
        prov = json.loads(h5["entry/process/provenance/data"][()])
        assert prov["parameters"]["method"] == "gaussian" and prov["versions"]["xsocs"]
    with open(out / summary["files"]["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == truth.strain.size
    with Image.open(out / summary["files"]["png_strain"]) as im:
        assert im.size == (640, 480)
    fracs = [f for f, _ in scan["calls"]]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0
    assert [s for s, _ in STAGES] == list(dict.fromkeys(stage for _, stage in scan["calls"]))


def test_bad_parameters_fail_before_any_work(scan, tmp_path):
    with pytest.raises(KmapInputError, match="unknown key"):
        process_scan(scan["master"], tmp_path / "o1", reference={"hkl": [0, 0, 4], "a": 5.4})
    with pytest.raises(KmapInputError, match="cannot be reached"):
        process_scan(scan["master"], tmp_path / "o2", reference={"hkl": [0, 0, 16], "lattice_a": 5.431})
    with pytest.raises(KmapInputError, match="unknown fit method"):
        process_scan(scan["master"], tmp_path / "o3", method="lorentz")
    with pytest.raises(KmapInputError, match="reference"):
        process_scan(scan["master"], tmp_path / "o4", reference="Si004")
    with pytest.raises(KmapInputError, match="file not found"):
        process_scan(tmp_path / "missing_master.h5", tmp_path / "o5")
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3", "o4", "o5"))


def test_make_reference_from_notebook_parameters(scan):
    from dass.kmap.service import make_reference

    fit, truth = scan["fit"], scan["truth"]
    median = make_reference(None, fit=fit)
    # the positions without a peak are left out of the median by default
    live = _live(truth).ravel()
    np.testing.assert_allclose(median.q0, np.median(fit.center[live], axis=0))
    assert median.params["n_points"] == truth.strain.size - len(DEAD)
    region = make_reference({"region": [4.9, 6.6, 3.4, 4.6]}, fit=fit)
    assert region.source == "region" and region.params["n_points"] == 12
    refl = make_reference({"d_spacing": truth.lattice_a / 4}, energy_kev=8.0)
    assert refl.q0_norm == pytest.approx(truth.q0) and refl.params["energy_kev"] == 8.0
    assert make_reference(refl) is refl
    with pytest.raises(KmapInputError, match="needs the fit"):
        make_reference({"region": [0, 1, 0, 1]})
    with pytest.raises(KmapInputError, match="takes no"):
        make_reference({"region": [0, 1, 0, 1], "hkl": [0, 0, 4]}, fit=fit)

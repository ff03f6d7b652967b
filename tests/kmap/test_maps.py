"""dass.kmap.maps: strain and tilt maths on constructed q vectors, masks, statistics, edges.

The q vectors are built independently of the code under test: |q0| from xrayutilities'
crystal model and the tilts by xrayutilities' rotations (``xu.math.rotarb``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dass.kmap.errors import KmapInputError
from dass.kmap.fit import FitResult
from dass.kmap.maps import (
    MAP_NAMES,
    Reference,
    edge_positions,
    position_grid,
    strain_tilt,
    strain_tilt_arrays,
    summary,
    tilt_angles,
    tilt_frame,
)

xu = pytest.importorskip("xrayutilities")


def rotated_q(q_norm: np.ndarray, pitch: np.ndarray, roll: np.ndarray, frame=np.eye(3)) -> np.ndarray:
    """q of length q_norm along the frame's 3rd axis, rotated by pitch about its 2nd axis, then
    by -roll about its 1st (xrayutilities rotations, right-handed, degrees)."""
    e1, e2, r = frame
    out = []
    for n, p, ro in zip(q_norm.ravel(), pitch.ravel(), roll.ravel()):
        v = xu.math.rotarb(r * n, e2, p)
        v = xu.math.rotarb(v, e1, -ro)
        out.append(v)
    return np.array(out).reshape(q_norm.shape + (3,))


@pytest.fixture
def field():
    rng = np.random.default_rng(3)
    ny, nx = 6, 7
    x = np.arange(nx) * 0.25
    y = np.arange(ny) * 0.5 + 10.0
    strain = rng.uniform(-2e-3, 2e-3, (ny, nx))
    pitch = rng.uniform(-0.5, 0.5, (ny, nx))
    roll = rng.uniform(-0.5, 0.5, (ny, nx))
    return x, y, strain, pitch, roll


def points(x, y, grid_values):
    """Row-major scan points (x fast) of a (ny, nx, ...) grid."""
    xx, yy = np.meshgrid(x, y)
    return xx.ravel(), yy.ravel(), grid_values.reshape(xx.size, *grid_values.shape[2:])


def test_reference_from_reflection_matches_xrayutilities():
    si = xu.materials.Si
    ref = Reference.from_reflection((0, 0, 4), lattice_a=si.a, energy_kev=8.0)
    assert ref.q0_norm == pytest.approx(np.linalg.norm(si.Q(0, 0, 4)), abs=1e-9)
    np.testing.assert_allclose(ref.direction, [0, 0, 1])
    wavelength = xu.en2lam(8000.0)
    assert ref.params["bragg_angle_deg"] == pytest.approx(math.degrees(math.asin(wavelength / (2 * ref.d_spacing))), abs=1e-4)
    by_d = Reference.from_reflection(d_spacing=si.a / 4, energy_kev=8.0)
    assert by_d.q0_norm == pytest.approx(ref.q0_norm, abs=1e-12)
    tilted = Reference.from_reflection((2, 2, 4), lattice_a=si.a, direction=(1, 0, 1))
    assert tilted.q0_norm == pytest.approx(np.linalg.norm(si.Q(2, 2, 4)), abs=1e-9)
    np.testing.assert_allclose(tilted.direction, np.array([1, 0, 1]) / math.sqrt(2))
    d = ref.to_dict()
    assert d["source"] == "reflection" and d["hkl"] == [0, 0, 4] and d["q0_norm"] == ref.q0_norm


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({}, "give hkl and lattice_a"),
        ({"hkl": (0, 0, 4)}, "give hkl and lattice_a"),
        ({"hkl": (0, 0, 0), "lattice_a": 5.4}, "not all 0"),
        ({"hkl": (0, 0.5, 4), "lattice_a": 5.4}, "three integers"),
        ({"hkl": "abc", "lattice_a": 5.4}, "three integers"),
        ({"hkl": (0, 0, 4), "lattice_a": -1}, "lattice_a"),
        ({"hkl": (0, 0, 4), "lattice_a": 5.431, "d_spacing": 1.3}, "not both"),
        ({"d_spacing": "x"}, "d_spacing"),
        ({"hkl": (0, 0, 12), "lattice_a": 5.431, "energy_kev": 8.0}, "cannot be reached"),
        ({"hkl": (0, 0, 4), "lattice_a": 5.431, "direction": (0, 0, 0)}, "zero vector"),
        ({"hkl": (0, 0, 4), "lattice_a": 5.431, "direction": (0, 1)}, "three"),
    ],
)
def test_reference_bad_input(kwargs, words):
    with pytest.raises(KmapInputError, match=words):
        Reference.from_reflection(**kwargs)


def test_tilt_angles_match_xsocs_spherical_coordinates():
    """With the reference along +z, pitch/roll are xsocs' own spherical q-space coordinates."""
    from xsocs.io.QSpaceH5 import QSpaceCoordinates
    from xsocs.process.qspace.QSpaceConverter import qspace_conversion

    args = dict(
        img_size=(8, 9), center_chan=(3.5, 4.0), chan_per_deg=(95.0, 95.0), beam_energy=8000.0,
        phi=[0.0, 0.3], eta=[34.7, 34.9], nu=[0.0, 0.1], delta=[69.6, 69.7],
    )
    cart = qspace_conversion(**args, coordinates=QSpaceCoordinates.CARTESIAN)
    sph = qspace_conversion(**args, coordinates=QSpaceCoordinates.SPHERICAL)
    pitch, roll = tilt_angles(cart, (0, 0, 1))
    np.testing.assert_allclose(pitch, sph[..., 0], atol=1e-9)
    np.testing.assert_allclose(roll, sph[..., 1], atol=1e-9)


def test_tilt_frame_is_right_handed_and_lab_for_z():
    np.testing.assert_allclose(tilt_frame((0, 0, 2)), np.eye(3), atol=1e-15)
    for direction in [(1, 0, 0), (0.3, -0.2, 1.0), (0, 1, 0)]:
        f = tilt_frame(direction)
        np.testing.assert_allclose(f @ f.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(f) == pytest.approx(1.0)
        np.testing.assert_allclose(f[2], np.asarray(direction) / np.linalg.norm(direction))


@pytest.mark.parametrize("direction", [(0, 0, 1), (0.2, -0.1, 1.0)])
def test_strain_and_tilt_exact_on_constructed_q(field, direction):
    x, y, strain, pitch, roll = field
    ref = Reference.from_reflection((0, 0, 4), lattice_a=xu.materials.Si.a, direction=direction)
    q = rotated_q(ref.q0_norm / (1 + strain), pitch, roll, tilt_frame(direction))
    px, py, pq = points(x, y, q)
    maps = strain_tilt_arrays(px, py, pq, ref)
    assert maps.shape == strain.shape
    np.testing.assert_allclose(maps.x, x)
    np.testing.assert_allclose(maps.y, y)
    np.testing.assert_allclose(maps.strain, strain, rtol=0, atol=1e-9)
    np.testing.assert_allclose(maps.pitch, pitch, rtol=0, atol=1e-9)
    np.testing.assert_allclose(maps.roll, roll, rtol=0, atol=1e-9)
    np.testing.assert_allclose(maps.q, q, rtol=0, atol=1e-12)
    assert maps.ok.all() and not any(v.any() for v in maps.reasons.values())
    assert maps.stats["strain"]["mean"] == pytest.approx(strain.mean(), abs=1e-12)
    assert maps.stats["pitch"]["count"] == strain.size


def test_scan_order_and_jitter_do_not_matter(field):
    x, y, strain, pitch, roll = field
    ref = Reference.from_reflection((0, 0, 4), lattice_a=5.431)
    q = rotated_q(ref.q0_norm / (1 + strain), pitch, roll)
    px, py, pq = points(x, y, q)
    rng = np.random.default_rng(0)
    order = rng.permutation(px.size)
    jx = px[order] + rng.uniform(-0.01, 0.01, px.size)  # motor jitter << 0.25 µm step
    jy = py[order] + rng.uniform(-0.01, 0.01, px.size)
    maps = strain_tilt_arrays(jx, jy, pq[order], ref)
    np.testing.assert_allclose(maps.strain, strain, atol=1e-9)
    np.testing.assert_allclose(maps.x, x, atol=0.01)
    # index maps each cell back to its point
    iy, ix = np.unravel_index(np.arange(px.size), strain.shape)
    np.testing.assert_array_equal(order[maps.index[iy, ix]], np.arange(px.size))


def test_missing_positions_are_nan_and_masked(field):
    x, y, strain, pitch, roll = field
    ref = Reference.from_reflection((0, 0, 4), lattice_a=5.431)
    q = rotated_q(ref.q0_norm / (1 + strain), pitch, roll)
    px, py, pq = points(x, y, q)
    keep = np.ones(px.size, bool)
    keep[[3, 10, 20]] = False
    maps = strain_tilt_arrays(px[keep], py[keep], pq[keep], ref)
    assert maps.shape == strain.shape
    missing = ~keep.reshape(strain.shape)
    np.testing.assert_array_equal(maps.reasons["no_data"], missing)
    np.testing.assert_array_equal(maps.ok, ~missing)
    assert np.isnan(maps.strain[missing]).all()
    np.testing.assert_allclose(maps.strain[~missing], strain[~missing], atol=1e-9)
    assert maps.stats["strain"]["masked"] == 3 and maps.stats["strain"]["count"] == strain.size - 3


def test_failed_fits_are_masked_with_their_reason(field):
    x, y, strain, pitch, roll = field
    ref = Reference.from_reflection((0, 0, 4), lattice_a=5.431)
    q = rotated_q(ref.q0_norm / (1 + strain), pitch, roll)
    px, py, pq = points(x, y, q)
    n = px.size
    status_ok = np.ones(n, bool)
    status_ok[0] = False
    pq = pq.copy()
    pq[1, 2] = np.nan
    low = np.zeros(n, bool)
    low[2] = True
    wide = np.zeros(n, bool)
    wide[3] = True
    # strain_range: mask the largest strain
    big = int(np.argmax(strain.ravel()))
    hi = float(np.sort(strain.ravel())[-2]) + 1e-12
    maps = strain_tilt_arrays(px, py, pq, ref, status_ok=status_ok, low_height=low, wide=wide,
                              strain_range=(-1.0, hi))
    flat = {k: v.ravel() for k, v in maps.reasons.items()}
    assert np.nonzero(flat["fit_status"])[0].tolist() == [0]
    assert np.nonzero(flat["not_finite"])[0].tolist() == [1]
    assert np.nonzero(flat["height"])[0].tolist() == [2]
    assert np.nonzero(flat["width"])[0].tolist() == [3]
    assert np.nonzero(flat["strain_range"])[0].tolist() == [big]
    bad = {0, 1, 2, 3, big}
    assert set(np.nonzero(~maps.ok.ravel())[0].tolist()) == bad
    for name in MAP_NAMES:
        assert np.isnan(maps.map(name).ravel()[sorted(bad)]).all()
    assert maps.mask_counts()["fit_status"] == 1
    # q_range in |q|
    qn = np.linalg.norm(q, axis=-1).ravel()
    m2 = strain_tilt_arrays(px, py, points(x, y, q)[2], ref, q_range=(qn.min() + 1e-12, qn.max()))
    assert np.nonzero(~m2.ok.ravel())[0].tolist() == [int(np.argmin(qn))]


def test_reference_region_gives_zero_strain_and_tilt_there(field):
    x, y, strain, pitch, roll = field
    base = Reference.from_reflection((0, 0, 4), lattice_a=5.431)
    strain = strain.copy()
    pitch = pitch.copy()
    roll = roll.copy()
    # a uniform 3e-3 strained, tilted corner: the reference region
    strain[:3, :3] = 3e-3
    pitch[:3, :3] = 0.2
    roll[:3, :3] = -0.1
    q = rotated_q(base.q0_norm / (1 + strain), pitch, roll)
    px, py, pq = points(x, y, q)

    fit = FitResult(
        path=Path("constructed.h5"), x=px, y=py, center=pq, height=np.ones((px.size, 3)),
        width=np.full((px.size, 3), 0.01), status=np.zeros((px.size, 3), np.int8),
        method="gaussian", background="none",
    )

    box = (x[0], x[2], y[0], y[2])
    ref = Reference.from_region(fit, box)
    assert ref.source == "region" and ref.params["n_points"] == 9
    maps = strain_tilt_arrays(px, py, pq, ref)
    np.testing.assert_allclose(maps.strain[:3, :3], 0.0, atol=1e-12)
    np.testing.assert_allclose(maps.pitch[:3, :3], 0.0, atol=1e-9)
    np.testing.assert_allclose(maps.roll[:3, :3], 0.0, atol=1e-9)
    # elsewhere: relative to the region's lattice
    np.testing.assert_allclose(maps.strain, (1 + strain) / (1 + 3e-3) - 1, atol=1e-12)
    # a grid mask selects the same region
    mask = np.zeros(strain.shape, bool)
    mask[:3, :3] = True
    np.testing.assert_allclose(Reference.from_region(fit, mask).q0, ref.q0)
    with pytest.raises(KmapInputError, match="none with a good fit"):
        Reference.from_region(fit, (100.0, 101.0, 100.0, 101.0))
    with pytest.raises(KmapInputError, match="box"):
        Reference.from_region(fit, (1.0, 0.0, 0.0, 1.0))
    with pytest.raises(KmapInputError, match="shape"):
        Reference.from_region(fit, np.zeros((2, 2), bool))


def test_position_grid_rejects_non_raster():
    with pytest.raises(KmapInputError, match="share a grid cell"):
        position_grid([0, 0, 1], [0, 0, 0])
    with pytest.raises(KmapInputError, match="x has 2 values and y 3"):
        position_grid([0, 1], [0, 1, 2])
    with pytest.raises(KmapInputError, match="NaN"):
        position_grid([0, np.nan], [0, 1])
    xs, ys, iy, ix = position_grid([5.0], [7.0])
    assert xs.tolist() == [5.0] and ys.tolist() == [7.0] and iy.tolist() == [0] and ix.tolist() == [0]


def test_strain_tilt_arrays_bad_input():
    ref = Reference.from_reflection((0, 0, 4), lattice_a=5.431)
    with pytest.raises(KmapInputError, match=r"shape \(2, 2\)"):
        strain_tilt_arrays([0, 1], [0, 0], np.ones((2, 2)), ref)
    with pytest.raises(KmapInputError, match="reference"):
        strain_tilt_arrays([0, 1], [0, 0], np.ones((2, 3)), "Si004")
    with pytest.raises(KmapInputError, match="status_ok has 3 values"):
        strain_tilt_arrays([0, 1], [0, 0], np.ones((2, 3)), ref, status_ok=np.ones(3, bool))
    with pytest.raises(KmapInputError, match="min must not exceed max"):
        strain_tilt_arrays([0, 1], [0, 0], np.ones((2, 3)), ref, q_range=(2, 1))


def test_summary_statistics():
    values = np.array([[1.0, 2.0, np.nan], [4.0, 100.0, -3.0]])
    mask = np.array([[True, True, True], [True, False, True]])
    s = summary(values, mask)
    used = np.array([1.0, 2.0, 4.0, -3.0])
    assert s["count"] == 4 and s["total"] == 6 and s["masked"] == 2
    assert s["mean"] == pytest.approx(used.mean())
    assert s["median"] == pytest.approx(np.median(used))
    assert s["std"] == pytest.approx(used.std())
    assert s["rms"] == pytest.approx(math.sqrt((used**2).mean()))
    assert s["min"] == -3.0 and s["max"] == 4.0
    assert s["p25"] == pytest.approx(np.percentile(used, 25))
    empty = summary(np.full(3, np.nan))
    assert empty["count"] == 0 and math.isnan(empty["mean"])


def test_edge_positions_of_a_step():
    xs = np.arange(10) * 0.5
    profile = np.where((xs > 1.2) & (xs < 3.3), 1e-3, 0.0)  # island from 1.5 to 3.0 µm
    edges = edge_positions(profile, 5e-4, coords=xs)
    np.testing.assert_allclose(edges, [1.25, 3.25])
    two_d = np.vstack([profile, np.zeros(10), np.r_[profile[:5], [np.nan] * 5]])
    rows = edge_positions(two_d, 5e-4, coords=xs)
    assert len(rows) == 3 and rows[1].size == 0 and rows[2].tolist() == [1.25]
    cols = edge_positions(two_d.T, 5e-4, coords=xs, axis=0)
    np.testing.assert_allclose(cols[0], edges)
    with pytest.raises(KmapInputError, match="coords has 3 values"):
        edge_positions(profile, 0.5, coords=[0, 1, 2])
    with pytest.raises(KmapInputError, match="3 dimensions"):
        edge_positions(np.zeros((2, 2, 2)), 0.5)


def test_strain_tilt_on_a_fit_result_masks_failed_fits(field):
    x, y, strain, pitch, roll = field
    ref = Reference.from_reflection((0, 0, 4), lattice_a=5.431)
    q = rotated_q(ref.q0_norm / (1 + strain), pitch, roll)
    px, py, pq = points(x, y, q)
    n = px.size
    status = np.zeros((n, 3), np.int8)
    status[5, 1] = 1  # xsocs failed on qy at point 5
    height = np.full((n, 3), 100.0)
    height[6] = 2.0
    width = np.full((n, 3), 0.003)
    width[7, 2] = 0.5
    fit = FitResult(path=Path("f.h5"), x=px, y=py, center=pq, height=height, width=width,
                    status=status, method="gaussian", background="snip")
    maps = strain_tilt(fit, ref, min_height=10.0, max_width=0.1)
    assert np.nonzero(~maps.ok.ravel())[0].tolist() == [5, 6, 7]
    assert maps.reasons["fit_status"].ravel()[5] and maps.reasons["height"].ravel()[6]
    assert maps.reasons["width"].ravel()[7]
    good = maps.ok
    np.testing.assert_allclose(maps.strain[good], strain[good], atol=1e-9)
    assert maps.settings["fit_method"] == "gaussian" and maps.settings["fit_background"] == "snip"
    assert maps.settings["min_height"] == 10.0
    with pytest.raises(KmapInputError, match="expected"):
        strain_tilt(FitResult(path=Path("f.h5"), x=px[:-1], y=py[:-1], center=pq, height=height,
                              width=width, status=status, method="gaussian", background="none"), ref)
    with pytest.raises(KmapInputError, match="FitResult"):
        strain_tilt(object(), ref)


def test_position_grid_line_scan_anisotropic_and_explicit_tol():
    rng = np.random.default_rng(5)
    # a line scan along x whose fixed y read-back jitters by ±5 nm: one row
    x = np.arange(12) * 0.5 + rng.uniform(-0.005, 0.005, 12)
    y = 3.0 + rng.uniform(-0.005, 0.005, 12)
    xs, ys, iy, ix = position_grid(x, y)
    assert ys.size == 1 and xs.size == 12 and (iy == 0).all()
    assert ys[0] == pytest.approx(y.mean())
    # 0.1 µm along x, 1 µm along y, with jitter
    gx, gy = np.meshgrid(np.arange(8) * 0.1, np.arange(5) * 1.0)
    jx = gx.ravel() + rng.uniform(-0.01, 0.01, gx.size)
    jy = gy.ravel() + rng.uniform(-0.01, 0.01, gx.size)
    xs, ys, iy, ix = position_grid(jx, jy)
    assert (xs.size, ys.size) == (8, 5)
    np.testing.assert_array_equal(ix, np.tile(np.arange(8), 5))
    np.testing.assert_array_equal(iy, np.repeat(np.arange(5), 8))
    # an explicit tolerance per axis
    xs, ys, _, _ = position_grid(jx, jy, tol=(0.03, 0.3))
    assert (xs.size, ys.size) == (8, 5)
    with pytest.raises(KmapInputError, match="share a grid cell"):
        position_grid(jx, jy, tol=0.5)
    with pytest.raises(KmapInputError, match=">= 0"):
        position_grid(jx, jy, tol=-1.0)

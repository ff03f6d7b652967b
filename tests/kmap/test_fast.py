"""dass.kmap.fast (engine "dass"): the same q-space file and fit results as xsocs, value for
value (max abs difference 0), on several geometries, masks, normalizers and NaN positions."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dass.kmap import KmapInputError, fit, qspace
from dass.kmap.fast import convert_fit

from .conftest import BEAMLINE


def _datasets(path):
    with h5py.File(path) as h5:
        names = []
        h5.visit(names.append)
        return {n: h5[n][()] for n in names if isinstance(h5[n], h5py.Dataset)}


def assert_identical(a, b, what):
    """Equal values, NaN where NaN: max abs difference 0."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    if a.dtype.kind == "f":
        assert np.array_equal(np.isnan(a), np.isnan(b)), what
        fin = ~np.isnan(a)
        assert np.array_equal(a[fin], b[fin]), (what, np.max(np.abs(a[fin] - b[fin]), initial=0))
    else:
        assert np.array_equal(a, b), what


def compare(ours_q, ours_fit, theirs_q, theirs_fit):
    if ours_q is not None:
        a, b = _datasets(ours_q), _datasets(theirs_q)
        assert set(a) == set(b)
        for name in a:
            if isinstance(a[name], np.ndarray) and a[name].dtype.kind in "iufb":
                assert_identical(a[name], b[name], name)
            elif isinstance(a[name], np.ndarray):
                assert a[name].tolist() == b[name].tolist(), name
            else:
                assert a[name] == b[name], name
    assert set(ours_fit.raw) == set(theirs_fit.raw)
    for name in ours_fit.raw:
        assert_identical(ours_fit.raw[name], theirs_fit.raw[name], name)
    assert_identical(ours_fit.status, theirs_fit.status, "status")
    assert_identical(ours_fit.x, theirs_fit.x, "x")
    assert_identical(ours_fit.y, theirs_fit.y, "y")
    for ax_a, ax_b in zip(ours_fit.axes, theirs_fit.axes):
        assert_identical(ax_a, ax_b, "axes")
    # the fit files hold the same numbers too
    back = fit.read_fit(ours_fit.path)
    assert_identical(back.raw[next(iter(back.raw))], theirs_fit.raw[next(iter(back.raw))], "file")


def _xsocs(master, tmp_path, *, conv, fit_kw):
    qfile = qspace.convert(master, tmp_path / "xsocs_q.h5", **conv)
    return qfile, fit.fit(qfile, tmp_path / "xsocs_fit.h5", **fit_kw)


CASES = {
    # the beamline geometry (non-square frame, off-centre beam, anisotropic channels per degree)
    # with a mask, the monitor as normalizer (one zero: a NaN/inf position) and the Gaussian
    "beamline-mask-monitor": ("beamline", {"grid": (26, 24, 22), "normalizer": "mon", "mask": "dead+edge"},
                              {"method": "gaussian", "background": "none"}, 1),
    "beamline-roi-snip-2proc": ("beamline", {"grid": (20, 20, 20), "roi": (0.9, 3.1, 0.4, 2.1)},
                                {"method": "centroid", "background": "snip"}, 2),
    "small-medfilt-constant-2proc": ("small", {"grid": (18, 21, 23), "medfilt": (3, 3), "normalizer": "mon"},
                                     {"method": "gaussian", "background": "constant"}, 2),
    "exact-float32-fitroi": ("exact", {"grid": (22, 22, 22), "normalizer": "mon"},
                             {"method": "gaussian", "background": "none", "roi": "inner"}, 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_engine_equals_xsocs(case, small_scan, exact_scan, beamline_scan, tmp_path):
    which, conv, fit_kw, n_proc = CASES[case]
    master, truth = {"small": small_scan, "exact": exact_scan, "beamline": beamline_scan}[which]
    conv = dict(conv)
    fit_kw = dict(fit_kw)
    if conv.get("mask") == "dead+edge":
        mask = truth.dead_pixels.astype(np.uint8)
        mask[:, -2:] = 1
        conv["mask"] = mask
    fast_roi = None
    if fit_kw.get("roi") == "inner":
        fit_kw.pop("roi")
        qf, _ = _xsocs(master, tmp_path / "probe", conv=conv, fit_kw=fit_kw)
        with h5py.File(qf) as h5:
            qx, qy, qz = h5["Data/qx"][()], h5["Data/qy"][()], h5["Data/qz"][()]
        fast_roi = ((qx[2], qx[-3]), (qy[3], qy[-2]), (qz[1], qz[-4]))
        fit_kw["roi"] = fast_roi
    theirs_q, theirs_fit = _xsocs(master, tmp_path, conv=conv, fit_kw=fit_kw)
    seen = []
    ours = convert_fit(master, tmp_path / "dass_q.h5", tmp_path / "dass_fit.h5", n_proc=n_proc,
                       method=fit_kw["method"], background=fit_kw["background"], fit_roi=fast_roi,
                       progress=seen.append, **conv)
    compare(tmp_path / "dass_q.h5", ours, theirs_q, theirs_fit)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    if case == "beamline-mask-monitor":  # the zero monitor gives a non-finite cube, as in xsocs
        with h5py.File(theirs_q) as h5:
            cube = h5["Data/qspace"][BEAMLINE["zero_monitor"][0]]
        assert not np.isfinite(cube).all()


def test_skipping_the_qspace_file_gives_the_same_fit(beamline_scan, tmp_path):
    master, _ = beamline_scan
    with_file = convert_fit(master, tmp_path / "q.h5", tmp_path / "f1.h5", grid=(20, 20, 20), normalizer="mon")
    without = convert_fit(master, None, tmp_path / "f2.h5", grid=(20, 20, 20), normalizer="mon", n_proc=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f1.h5", "f2.h5", "q.h5"]
    for name in with_file.raw:
        assert_identical(with_file.raw[name], without.raw[name], name)


def test_fast_engine_refuses_bad_input(small_scan, tmp_path):
    master, _ = small_scan
    with pytest.raises(KmapInputError) as err:
        convert_fit(master, None, tmp_path / "f.h5", grid=(10, 10))
    assert err.value.field == "grid"
    with pytest.raises(KmapInputError) as err:
        convert_fit(master, None, tmp_path / "f.h5", method="lorentz")
    assert err.value.field == "method"
    (tmp_path / "f.h5").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert_fit(master, None, tmp_path / "f.h5", grid=(10, 10, 10))


@pytest.mark.parametrize("compression", ["lzf", None])
def test_lighter_qspace_compression_keeps_the_values(beamline_scan, tmp_path, compression):
    master, _ = beamline_scan
    convert_fit(master, tmp_path / "gzip.h5", tmp_path / "f1.h5", grid=(16, 18, 20))
    convert_fit(master, tmp_path / "other.h5", tmp_path / "f2.h5", grid=(16, 18, 20),
                qspace_compression=compression, n_proc=2)
    with h5py.File(tmp_path / "gzip.h5") as a, h5py.File(tmp_path / "other.h5") as b:
        assert a["Data/qspace"].compression == "gzip" and b["Data/qspace"].compression == compression
        assert_identical(a["Data/qspace"][()], b["Data/qspace"][()], "qspace")
        assert_identical(a["Data/qspace_sum"][()], b["Data/qspace_sum"][()], "qspace_sum")
    with pytest.raises(KmapInputError) as err:
        convert_fit(master, None, tmp_path / "f3.h5", qspace_compression="zstd")
    assert err.value.field == "qspace_compression"


def _awkward_signals():
    rng = np.random.default_rng(7)
    for n in (3, 5, 28):
        axis = np.linspace(2.10, 2.14, n)
        peak = 40.0 * np.exp(-0.5 * ((axis - 2.121) / 0.004) ** 2)
        yield f"peak-{n}", axis, peak + rng.normal(0, 0.5, n)
        yield f"zeros-{n}", axis, np.zeros(n)
        yield f"nan-{n}", axis, np.full(n, np.nan)
        yield f"inf-{n}", axis, np.r_[np.inf, np.zeros(n - 1)]
        yield f"flat-{n}", axis, np.ones(n)
        yield f"negative-{n}", axis, -peak
        yield f"spike-{n}", axis, np.eye(1, n, n // 2).ravel()


@pytest.mark.parametrize("name, axis, signal", list(_awkward_signals()), ids=lambda v: v if isinstance(v, str) else "")
def test_gaussian_fit_equals_xsocs(name, axis, signal):
    """The engine's Gaussian fit (MINPACK lmdif called as leastsq calls it) returns xsocs'
    parameters and status bit for bit, also on signals without a peak."""
    from xsocs.process.fit.peak_fit import gaussian_fit

    from dass.kmap.fast import _gaussian_fit

    with np.errstate(all="ignore"):
        theirs = gaussian_fit(axis, signal.copy())
        ours = _gaussian_fit(axis, signal.copy())
    assert_identical(np.array(ours[:3]), np.array(theirs[:3]), name)
    assert ours[3] is theirs[3]


def test_gaussian_fit_refuses_what_leastsq_refuses():
    from dass.kmap.fast import _gaussian_fit

    with pytest.raises(TypeError, match="Improper input"):
        _gaussian_fit(np.array([1.0, 2.0]), np.array([1.0, 3.0]))

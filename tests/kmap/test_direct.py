"""dass.kmap.direct (engine "direct"): a 3-D Gaussian fitted to the pixels, beyond xsocs'
binned method: <= 1e-6 rms strain on noise-free scans, with an uncertainty per position."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dass.kmap import synthetic
from dass.kmap.direct import fit_direct, fit_peak
from dass.kmap.fast import convert_fit
from dass.kmap.fit import read_fit
from dass.kmap.service import maps_of, process_scan

from .conftest import BEAMLINE


@pytest.fixture(scope="module")
def noise_free(tmp_path_factory):
    """The beamline geometry without noise, dead pixels or empty positions."""
    kw = {k: v for k, v in BEAMLINE.items() if k not in ("no_peak", "empty", "zero_monitor", "dead_pixels")}
    kw.update(shape=(4, 5), noise=False)
    return synthetic.generate(tmp_path_factory.mktemp("direct-exact"), **kw)


def test_noise_free_strain_within_1e6_and_beyond_xsocs(noise_free, tmp_path):
    master, truth = noise_free
    seen = []
    res = fit_direct(master, tmp_path / "direct.h5", normalizer="mon", n_proc=2, progress=seen.append)
    assert res.method == "direct" and (res.status == 0).all() and seen[-1] == 1.0
    err = truth.q0 / res.q_norm - 1.0 - truth.strain.ravel()
    rms = math.sqrt(np.mean(err**2))
    assert rms <= 1e-6, rms
    np.testing.assert_allclose(res.center, truth.q.reshape(-1, 3), atol=1e-8)
    # xsocs' method (binning, projections, 1-D fits) on the same frames is far less exact
    binned = convert_fit(master, None, tmp_path / "binned.h5", grid=(30, 30, 30))
    binned_rms = math.sqrt(np.mean((truth.q0 / binned.q_norm - 1.0 - truth.strain.ravel()) ** 2))
    assert rms < binned_rms / 100, (rms, binned_rms)
    # an uncertainty per position, small on noise-free data, and read back from the file
    assert res.center_err.shape == (truth.strain.size, 3) and np.all(np.isfinite(res.q_norm_err))
    assert np.all(res.q_norm_err < 1e-6)
    back = read_fit(tmp_path / "direct.h5")
    assert back.method == "direct"
    np.testing.assert_array_equal(back.center, res.center)
    np.testing.assert_array_equal(back.q_norm_err, res.q_norm_err)


def test_direct_engine_through_the_job_function(beamline_scan, tmp_path):
    """Noisy scan, positions without a peak, a zero monitor: masked; errors within their σ."""
    master, truth = beamline_scan
    # dead pixels read 0: a model of the pixels must not see them (xsocs' binning hides them)
    summary = process_scan(master, tmp_path / "out", engine="direct", normalizer="mon", n_proc=1,
                           mask=truth.dead_pixels.astype(np.uint8),
                           reference={"hkl": list(truth.hkl), "lattice_a": truth.lattice_a})
    assert "qspace" not in summary["files"] and summary["parameters"]["engine"] == "direct"
    assert "not xsocs" in summary["engine"]
    maps = maps_of(summary)
    bad = sorted({*BEAMLINE["no_peak"], *BEAMLINE["empty"], *BEAMLINE["zero_monitor"]})
    assert np.nonzero(~maps.ok.ravel())[0].tolist() == bad
    ok = maps.ok
    err = maps.strain[ok] - truth.strain[ok]
    assert math.sqrt(np.mean(err**2)) <= 3e-5
    sigma = summary["uncertainty"]["strain_1sigma"]
    assert 0 < sigma["median"] < 1e-4
    # the stated uncertainty is honest: most errors within 3 σ
    res = read_fit(tmp_path / "out" / summary["files"]["fit"])
    strain_err = truth.q0 / res.q_norm**2 * res.q_norm_err
    z = np.abs((truth.q0 / res.q_norm - 1.0) - truth.strain.ravel())[ok.ravel()] / strain_err[ok.ravel()]
    assert np.mean(z < 3) >= 0.8, z


def test_fit_peak_without_a_peak_fails_cleanly():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(500, 3))
    assert fit_peak(q, np.zeros(500))["ok"] is False
    out = fit_peak(q, np.full(500, 3.0))
    assert out["ok"] is False and np.isnan(out["center"]).all()

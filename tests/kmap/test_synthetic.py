"""dass.kmap.synthetic: the synthetic KMAP scan is in xsocs' layout and holds its truth."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from xsocs.io.XsocsH5 import XsocsH5
from xsocs.process.qspace import qspace_conversion

from dass.kmap import KmapInputError, synthetic


def test_truth_conventions(small_scan):
    _, truth = small_scan
    ny, nx = truth.shape
    assert truth.strain.shape == truth.pitch_deg.shape == truth.roll_deg.shape == (ny, nx)
    assert truth.q.shape == (ny, nx, 3)
    # |q0| of Si 004: 2 pi * 4 / a
    assert truth.q0 == pytest.approx(2 * math.pi * 4 / 5.431)
    qn = np.linalg.norm(truth.q, axis=-1)
    np.testing.assert_allclose(truth.q0 / qn - 1.0, truth.strain, atol=1e-12)
    np.testing.assert_allclose(np.degrees(np.arcsin(truth.q[..., 0] / qn)), truth.pitch_deg,
                               atol=1e-9)
    np.testing.assert_allclose(np.degrees(np.arctan2(truth.q[..., 1], truth.q[..., 2])),
                               truth.roll_deg, atol=1e-9)
    # the island adds its strain inside the disc only, with a sharp edge
    xx, yy = np.meshgrid(truth.x, truth.y)
    inside = np.hypot(xx - 2.0, yy - 1.5) <= 1.1
    ramp = 5e-4 * ((xx - xx.min()) / np.ptp(xx) - 0.5)
    np.testing.assert_allclose(truth.strain, ramp + 1e-3 * inside, atol=1e-15)
    assert truth.island["edge_x"] == pytest.approx([0.9, 3.1])
    json.dumps(truth.to_json())  # JSON-able
    assert truth.to_json()["synthetic"] is True


def test_layout_is_readable_by_xsocs(small_scan):
    master, truth = small_scan
    ny, nx = truth.shape
    with XsocsH5(str(master)) as x5:
        entries = x5.entries()
        assert len(entries) == 9
        etas = [x5.positioner(e, "eta") for e in entries]
        np.testing.assert_allclose(etas, truth.eta_deg)
        assert x5.positioner(entries[0], "del") == pytest.approx(truth.delta_deg)
        assert x5.n_images(entries[0]) == nx * ny
        assert tuple(x5.image_size(entries[0])) == (32, 32)
        assert x5.beam_energy(entries[0]) == pytest.approx(8000.0)
        pos = x5.scan_positions(entries[0])
        np.testing.assert_array_equal(pos.pos_0, np.tile(truth.x, ny))
        np.testing.assert_array_equal(pos.pos_1, np.repeat(truth.y, nx))
        np.testing.assert_array_equal(x5.measurement(entries[0], "imgnr"), np.arange(nx * ny))
    with h5py.File(master) as h5:
        assert h5.attrs["synthetic"]
        assert "SYNTHETIC" in h5.attrs["title"]
        assert h5["1.1"].attrs["synthetic"]
        # Bragg angle of the median |q| at 8 keV
        lam = synthetic.HC_KEV_A / 8.0
        theta = math.degrees(math.asin(np.median(truth.q_norm) * lam / (4 * math.pi)))
        assert np.mean(truth.eta_deg) == pytest.approx(theta)


def test_pixel_q_matches_xsocs_conversion():
    args = dict(frame_shape=(8, 6), center_chan=(3.5, 2.5), chan_per_deg=(95.0, 96.0),
                energy_ev=8000.0, eta=34.7, delta=69.4)
    ours = synthetic.pixel_q(**args)
    theirs = qspace_conversion((8, 6), (3.5, 2.5), (95.0, 96.0), 8000.0, [0.0], [34.7],
                               [0.0], [69.4])[0]
    np.testing.assert_array_equal(ours, theirs)


def test_frames_hold_the_forward_model(exact_scan):
    """Noise-free frames equal the 3-D Gaussian evaluated on xsocs' own q of each pixel."""
    master, truth = exact_scan
    with XsocsH5(str(master)) as x5:
        entries = x5.entries()
        cc = x5.direct_beam(entries[0])
        cpd = x5.chan_per_deg(entries[0])
        etas = [x5.positioner(e, "eta") for e in entries]
        q = qspace_conversion((32, 32), cc, cpd, 8000.0, [0.0] * len(etas), etas,
                              [0.0] * len(etas), [truth.delta_deg] * len(etas))
        with h5py.File(master) as h5:
            mon = h5["1.1/measurement/mon"][()]
            for k, entry in enumerate(entries):
                frames = h5[f"{entry}/measurement/image/data"][()]
                qp = truth.q.reshape(-1, 3)
                d2 = ((q[k][None] - qp[:, None, None, :]) ** 2).sum(-1)
                expected = (mon / synthetic.MONITOR_MEAN)[:, None, None] * (
                    5000.0 * np.exp(-d2 / (2 * truth.peak_sigma**2)) + 1.0)
                np.testing.assert_allclose(frames, expected, rtol=2e-6, atol=1e-4)
    # the brightest pixel over all angles is a few hundred counts or more: the peak is in view
    with h5py.File(master) as h5:
        peak = max(h5[f"{e}/measurement/image/data"][()].max() for e in entries)
    assert peak > 2000


def test_noise_is_poisson_counts(small_scan):
    master, _ = small_scan
    with h5py.File(master) as h5:
        data = h5["5.1/measurement/image/data"]
        assert data.dtype == np.uint16
        assert data[()].min() >= 0


def test_arrays_as_fields(tmp_path):
    strain = np.linspace(0, 1e-3, 6).reshape(2, 3)
    _, truth = synthetic.generate(tmp_path, shape=(2, 3), n_angles=3, frame_shape=(8, 8),
                                  strain=strain, tilt=(np.zeros((2, 3)), (0.01, 0, 0)))
    np.testing.assert_array_equal(truth.strain, strain)
    np.testing.assert_array_equal(truth.roll_deg, np.full((2, 3), 0.01))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"strain": np.zeros((3, 3))}, "strain"),
        ({"island": {"center": (1, 1)}}, "island"),
        ({"energy_kev": 1.0}, "energy_kev"),
        ({"shape": (0, 4)}, "shape"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, field):
    args = dict(shape=(2, 3), n_angles=3, frame_shape=(8, 8))
    args.update(kwargs)
    with pytest.raises(KmapInputError) as err:
        synthetic.generate(tmp_path, **args)
    assert err.value.field == field
    assert field in str(err.value)


def test_progress_reports(tmp_path):
    seen = []
    synthetic.generate(tmp_path, shape=(2, 3), n_angles=3, frame_shape=(8, 8),
                       progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)

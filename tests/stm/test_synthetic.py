"""dass.stm.synthetic: a synthetic FAST file that dass and pyfastspm read like a real one."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dass.stm import open_fast
from dass.stm.process import Recipe, Step, process
from dass.stm.synthetic import (
    SyntheticFast,
    synthetic_fast_attributes,
    synthetic_fast_bytes,
    synthetic_fast_stream,
    write_synthetic_fast,
)


def test_layout_like_the_real_files(tmp_path, new_fast):
    path = write_synthetic_fast(tmp_path / "s.h5", points=20, num_images=3)
    with h5py.File(path, "r") as syn, h5py.File(new_fast, "r") as real:
        assert list(syn) == ["data"]
        assert syn["data"].ndim == 1 and syn["data"].dtype == real["data"].dtype == np.int16
        assert syn["data"].shape == (3 * 4 * 20 * 20,)
        # every attribute pyfastspm and dass read, with the real file's types
        for key in ("Scanner.X_Points", "Scanner.Y_Frequency", "Acquisition.X_Phase",
                    "Acquisition.ADC_SamplingRate", "Acquisition.NumImages", "Acquisition.LogAmp"):
            assert syn["data"].attrs[key].dtype == real["data"].attrs[key].dtype, key
        assert syn["data"].attrs["ExperimentInfo.Synthetic"] == 1


@pytest.mark.parametrize("spelling", ["new", "old"])
def test_both_spellings_open(tmp_path, spelling):
    path = write_synthetic_fast(tmp_path / "s.h5", points=16, num_images=2, spelling=spelling)
    attrs = synthetic_fast_attributes(SyntheticFast(spelling=spelling))
    prefix = "Acquisiton" if spelling == "old" else "Acquisition"
    assert f"{prefix}.X_Phase" in attrs
    with open_fast(path) as fast:
        md = fast.metadata
        assert md["phase_attribute_prefix"] == prefix
        assert (md["points_x"], md["num_images"], md["num_frames"]) == (16, 2, 8)
        assert md["calibration_x"] == "uncalibrated"
        assert "SYNTHETIC" in md["comment"] and "synthetic" in md["sample"]
        assert fast.frames("udf").shape == (4, 16, 16)


def test_phases_are_undone_by_pyfastspm(tmp_path):
    plain = write_synthetic_fast(tmp_path / "plain.h5", points=16, num_images=2, seed=3)
    shifted = write_synthetic_fast(tmp_path / "shifted.h5", points=16, num_images=2, seed=3,
                                   x_phase=5, y_phase=-1)
    with open_fast(plain) as a, open_fast(shifted) as b:
        assert b.metadata["phase_x"]["value"] == 5
        np.testing.assert_array_equal(a.frames("udi"), b.frames("udi"))
        with h5py.File(plain, "r") as f1, h5py.File(shifted, "r") as f2:
            assert not np.array_equal(f1["data"][()], f2["data"][()])


def test_the_pattern_moves_at_the_known_velocity(tmp_path):
    """Shift between consecutive 'uf' frames = drift x image period (in y; pyfastspm turns up
    frames upside down, so the sign flips). Found by least squares over sub-pixel shifts."""
    from scipy.ndimage import shift as nd_shift

    params = SyntheticFast(points=48, num_images=3, drift_nm_s=(0.0, 0.75), noise=0.0)
    path = write_synthetic_fast(tmp_path / "moving.h5", params)
    with open_fast(path) as fast:
        frames = fast.frames("uf").astype(float)
    expected_y = params.expected_shift_px(1)[1]
    assert expected_y == pytest.approx(48 / 3.0 * 0.75 * 0.1)
    candidates = np.arange(-3.0, 3.0001, 0.05)
    m = 6  # leave out the borders, where the shifted frame has no data
    errors = [np.mean((nd_shift(frames[0], (s, 0), order=3) - frames[1])[m:-m, m:-m] ** 2)
              for s in candidates]
    assert candidates[int(np.argmin(errors))] == pytest.approx(-expected_y, abs=0.1)


def test_bytes_stream_and_processing(tmp_path):
    params = SyntheticFast(points=16, num_images=3, seed=7)
    raw = synthetic_fast_bytes(params)
    path = tmp_path / "b.h5"
    path.write_bytes(raw)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data"][()], synthetic_fast_stream(params))
    movie = process(path, Recipe("udi", (Step.make("phase"), Step.make("interpolate"))))
    assert movie.synthetic and movie.summary()["synthetic"] is True
    assert movie.frames.shape == (6, 32, 16)
    assert np.isfinite(movie.frames).all()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"points": 1}, "points must be a whole number >= 2"),
     ({"num_images": 2.5}, "num_images"),
     ({"spelling": "older"}, "spelling must be one of new, old"),
     ({"noise": -1.0}, "noise >= 0")],
)
def test_bad_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SyntheticFast(**kwargs)

"""dass.stm.fast on the two real FAST movies of the pyfastspm distribution, and on bad files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from dass.stm import CHANNELS, FastFile, FastFileError, open_fast


@pytest.fixture(scope="module")
def old(old_fast: Path) -> FastFile:
    with open_fast(old_fast) as fast:
        yield fast


@pytest.fixture(scope="module")
def new(new_fast: Path) -> FastFile:
    with open_fast(new_fast) as fast:
        yield fast


def pyfastspm_frames(path: Path, channel: str) -> np.ndarray:
    """pyfastspm's own steps, called directly."""
    from pyfastspm import FastMovie

    movie = FastMovie(str(path), log_processing=False)
    try:
        movie.reshape_to_movie(channel)
        return movie.data
    finally:
        movie.close()


# --- counts and shapes (DOMAIN.md: 105x105 px, 68 images; 196x196 px, 58 images) -------------


@pytest.mark.parametrize(
    ("which", "points", "images"), [("old", 105, 68), ("new", 196, 58)]
)
def test_counts_and_shapes_from_the_data(request, which, points, images):
    fast = request.getfixturevalue(which)
    md = fast.metadata
    assert (md["points_x"], md["points_y"]) == (points, points)
    assert md["num_images"] == images == fast.num_images
    assert md["data_length"] == images * 4 * points * points
    assert md["num_frames"] == 4 * images
    # the attribute says one image less in both files: kept side by side
    assert md["num_images_attribute"] == images - 1
    assert md["num_frames_attribute"] == 4 * (images - 1)
    assert fast.frames("udf").shape == (2 * images, points, points)
    assert fast.frames("uf").shape == (images, points, points)
    assert fast.frames("udi").shape == (2 * images, 2 * points, points)
    assert fast.frames("di").shape == (images, 2 * points, points)


# --- metadata actually in the files -------------------------------------------------------------


def test_metadata_of_the_old_file(old):
    md = old.metadata
    assert md["phase_attribute_prefix"] == "Acquisiton"  # the old misspelling
    assert "Acquisiton.X_Phase" in md["attributes"]
    assert md["phase_x"] == {"value": 175, "unit": "pixels"}
    assert md["phase_y"] == {"value": 0, "unit": "pixels"}
    assert md["frequency_x"] == {"value": 3840.2457757296465, "unit": "Hz"}
    assert md["frequency_y"] == {"value": 18.28688464633165, "unit": "Hz"}
    assert md["amplitude_x"] == {"value": 0.1, "unit": "V"}
    assert md["amplitude_y"] == {"value": 0.08, "unit": "V"}
    assert md["amplitude_z"] == {"value": 2.108, "unit": "%"}
    assert md["calibration_x"] == md["calibration_y"] == md["calibration_z"] == "uncalibrated"
    assert md["size_x"] == md["size_y"] == {"value": 105, "unit": "px"}
    assert md["sampling_rate"] == {"value": 804825.0, "unit": "Hz"}
    assert md["samples_per_pixel"] == 124
    assert md["bias"] == {"value": 0.1500346762958089, "unit": "V"}
    assert md["setpoint"] == {"value": 4.140040644525236e-09, "unit": "A"}
    assert md["preamp_gain"] == {"value": 100.0, "unit": "mV/nA"}
    assert md["loop_gain"] == {"value": 0.0, "unit": "%"}
    # stored as Latin-1 "\xb0 C"
    assert md["temperature"] == {"value": 23.93603724904929, "unit": "° C"}
    assert md["sample"] == "Gr/Ni(111)"
    assert md["comment"] == "CO exp on Gr/Ni @RT"
    assert md["date"] == "2014-10-03T11:22:25+02:00"
    assert md["file_format_version"] == ""
    assert md["software_version"] == "2.2"
    assert md["log_amplifier"] is False  # stored as "Acquisition.LogAmp." (trailing dot)
    assert "filter" not in md


def test_metadata_of_the_new_file(new):
    md = new.metadata
    assert md["phase_attribute_prefix"] == "Acquisition"
    assert not any(k.startswith("Acquisiton.") for k in md["attributes"])
    assert md["phase_x"] == {"value": -25, "unit": "pixels"}
    assert md["phase_y"] == {"value": -1, "unit": "pixels"}
    assert md["frequency_x"] == {"value": 784.9293563579278, "unit": "Hz"}
    assert md["frequency_y"] == {"value": 2.00237080703553, "unit": "Hz"}
    assert md["amplitude_x"] == {"value": 0.5, "unit": "V"}
    assert md["amplitude_y"] == {"value": 0.7, "unit": "V"}
    assert md["calibration_x"] == md["calibration_y"] == "uncalibrated"
    assert md["size_x"] == md["size_y"] == {"value": 196, "unit": "px"}
    assert md["sampling_rate"] == {"value": 307328.0, "unit": "Hz"}
    assert md["samples_per_pixel"] == 325
    assert md["adc_bits"] == {"value": 14.0, "unit": "bits"}
    assert md["bias"] == {"value": 1.5026318668749132, "unit": "V"}
    assert md["setpoint"] == {"value": 9.453279943192595e-10, "unit": "A"}
    assert md["preamp_gain"] == {"value": 30.03003003003003, "unit": "mV/nA"}
    assert md["temperature"] == {"value": 296.38567753431437, "unit": "K"}
    assert md["sample"] == md["comment"] == ""
    assert md["date"] == "2019-04-24T08:51:50+02:00"
    assert md["file_format_version"] == "2.3"
    assert md["software_version"] == "3.2"
    assert md["filter"] == {
        "enabled": False,
        "type": 2,
        "low_cutoff": {"value": 300.0, "unit": "Hz"},
        "high_cutoff": {"value": 10000.0, "unit": "Hz"},
    }


def test_metadata_is_json_able(old, new):
    for fast in (old, new):
        assert json.loads(json.dumps(fast.metadata)) == fast.metadata


def test_both_spellings_reach_pyfastspm_as_the_correct_one(old, new):
    for fast, xy in ((old, (175, 0)), (new, (-25, -1))):
        assert (fast.movie.metadata["Acquisition.X_Phase"],
                fast.movie.metadata["Acquisition.Y_Phase"]) == xy
        assert (fast.movie.x_phase, fast.movie.y_phase) == xy


def test_new_spelling_copy_of_the_old_file_gives_the_same_result(old, old_fast, tmp_path):
    renamed = tmp_path / "renamed.h5"
    shutil.copy(old_fast, renamed)
    with h5py.File(renamed, "r+") as f:
        attrs = f["data"].attrs
        for axis in "XY":
            attrs[f"Acquisition.{axis}_Phase"] = attrs[f"Acquisiton.{axis}_Phase"]
            del attrs[f"Acquisiton.{axis}_Phase"]
    with open_fast(renamed) as fast:
        assert fast.metadata["phase_attribute_prefix"] == "Acquisition"
        assert fast.metadata["phase_x"] == old.metadata["phase_x"]
        np.testing.assert_array_equal(fast.frames("udf"), old.frames("udf"))


# --- the wrapper adds no numerical change -------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
def test_frames_equal_pyfastspm_directly(old, old_fast, channel):
    expected = pyfastspm_frames(old_fast, channel)
    got = old.frames(channel)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_frames_equal_pyfastspm_directly_new_file(new, new_fast):
    np.testing.assert_array_equal(new.frames("udf"), pyfastspm_frames(new_fast, "udf"))


def test_frames_leave_the_movie_untouched_and_return_new_arrays(new, new_fast):
    with h5py.File(new_fast, "r") as f:
        raw = f["data"][()]
    before = new.movie.data.copy()
    a = new.frames("uf")
    a[...] = 0
    assert new.movie.mode == "timeseries"
    np.testing.assert_array_equal(new.movie.data, before)
    assert new.frames("uf").any()
    # pyfastspm's time series: the raw stream rolled by x_phase + 2*X_Points*y_phase
    np.testing.assert_array_equal(before, np.roll(raw.astype(np.float32), -25 + 2 * 196 * -1))


def test_frame_rate_is_pyfastspm_fps(new):
    assert new.frame_rate("udf") == pytest.approx(2 * 2.00237080703553)
    assert new.frame_rate("df") == pytest.approx(2.00237080703553)
    with pytest.raises(ValueError, match="unknown FAST channel 'xx'"):
        new.frame_rate("xx")


def test_unknown_channel(old):
    with pytest.raises(ValueError, match="unknown FAST channel 'up'.*udf"):
        old.frames("up")


def test_no_log_file_written_next_to_the_data(old_fast, tmp_path):
    copy = tmp_path / "movie.h5"
    shutil.copy(old_fast, copy)
    with open_fast(copy):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["movie.h5"]


def test_urls(old_fast, tmp_path):
    with open_fast(old_fast.as_uri()) as fast:
        assert fast.metadata["num_images"] == 68
    fsspec = pytest.importorskip("fsspec")
    mem = fsspec.filesystem("memory")
    mem.pipe("/stm/movie.h5", old_fast.read_bytes())
    try:
        with open_fast("memory://stm/movie.h5") as fast:
            assert fast.path == "memory://stm/movie.h5"
            tmpdir = fast._tmpdir
            assert tmpdir is not None and tmpdir.exists()
            assert fast.frames("uf").shape == (68, 105, 105)
        assert not tmpdir.exists()
    finally:
        mem.rm("/stm/movie.h5")


# --- bad inputs ---------------------------------------------------------------------------------


def _fast_like(path: Path, data: np.ndarray, drop: tuple[str, ...] = (), **changes) -> Path:
    """A small HDF5 file with the attributes of a real FAST file (from the new sample)."""
    attrs = {
        "Scanner.X_Points": np.uint16(4),
        "Scanner.Y_Points": np.uint16(3),
        "Scanner.Y_Frequency": 2.0,
        "Acquisition.X_Phase": np.int32(0),
        "Acquisition.Y_Phase": np.int32(0),
        "Acquisition.NumImages": np.uint64(2),
        "Acquisition.LogAmp": np.uint8(0),
        "ExperimentInfo.FileFormatVersion": "2.3",
    }
    attrs.update(changes)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("data", data=data)
        for key, value in attrs.items():
            if key not in drop:
                dset.attrs[key] = value
    return path


def test_small_synthetic_file_is_accepted(tmp_path):
    data = np.arange(2 * 4 * 4 * 3, dtype=np.int16)
    with open_fast(_fast_like(tmp_path / "ok.h5", data)) as fast:
        assert fast.num_images == 2
        assert fast.frames("udf").shape == (4, 3, 4)
        assert "num_images_attribute" not in fast.metadata


def test_truncated_hdf5(old_fast, tmp_path):
    bad = tmp_path / "half.h5"
    raw = old_fast.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FastFileError, match=r"half\.h5: truncated or corrupt HDF5") as err:
        open_fast(bad)
    assert err.value.path == str(bad)


def test_random_bytes(tmp_path):
    bad = tmp_path / "noise.h5"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FastFileError, match=r"noise\.h5: not an HDF5 file"):
        open_fast(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        open_fast(tmp_path / "nothere.h5")


def test_hdf5_without_data(tmp_path):
    bad = tmp_path / "empty.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("image", data=np.zeros((3, 3)))
    with pytest.raises(FastFileError, match=r"empty\.h5: not a FAST movie: no /data dataset"):
        open_fast(bad)


def test_data_is_a_group(tmp_path):
    bad = tmp_path / "group.h5"
    with h5py.File(bad, "w") as f:
        f.create_group("data")
    with pytest.raises(FastFileError, match=r"group\.h5: .*/data is a group"):
        open_fast(bad)


@pytest.mark.parametrize(
    ("data", "found"),
    [(np.zeros((4, 12), np.int16), r"shape \(4, 12\) of int16"),
     (np.zeros(96, np.float32), r"shape \(96,\) of float32")],
)
def test_data_not_1d_integer(tmp_path, data, found):
    bad = _fast_like(tmp_path / "image.h5", data)
    with pytest.raises(FastFileError, match=rf"image\.h5: .*1-D integer time series, found {found}"):
        open_fast(bad)


def test_missing_x_points(tmp_path):
    bad = _fast_like(tmp_path / "nox.h5", np.zeros(96, np.int16), drop=("Scanner.X_Points",))
    with pytest.raises(FastFileError, match=r"nox\.h5: .*lacks attribute\(s\) Scanner\.X_Points$"):
        open_fast(bad)


def test_missing_attributes_are_all_named_with_both_spellings(tmp_path):
    bad = _fast_like(
        tmp_path / "nophase.h5", np.zeros(96, np.int16),
        drop=("Scanner.Y_Points", "Acquisition.X_Phase", "Acquisition.Y_Phase"),
    )
    with pytest.raises(FastFileError) as err:
        open_fast(bad)
    assert str(err.value) == (
        f"{bad}: not a FAST movie: /data lacks attribute(s) Scanner.Y_Points, "
        "Acquisition.X_Phase or Acquisiton.X_Phase, Acquisition.Y_Phase or Acquisiton.Y_Phase"
    )


def test_old_spelling_is_accepted(tmp_path):
    data = np.zeros(96, np.int16)
    path = _fast_like(tmp_path / "old.h5", data, drop=("Acquisition.X_Phase", "Acquisition.Y_Phase"),
                      **{"Acquisiton.X_Phase": np.int32(1), "Acquisiton.Y_Phase": np.int32(0)})
    with open_fast(path) as fast:
        assert fast.metadata["phase_attribute_prefix"] == "Acquisiton"
        assert fast.movie.x_phase == 1


def test_length_not_a_whole_number_of_images(tmp_path):
    bad = _fast_like(tmp_path / "short.h5", np.zeros(100, np.int16))
    with pytest.raises(FastFileError) as err:
        open_fast(bad)
    assert str(err.value).startswith(f"{bad}: /data holds 100 samples, not a whole number of "
                                     "images of 4 x 4 x 3 = 48 samples (2 whole images and 4 "
                                     "samples left over)")


def test_real_file_cut_to_a_partial_image(old_fast, tmp_path):
    with h5py.File(old_fast, "r") as f:
        data = f["data"][: 44100 * 2 + 10]
        # the Latin-1 temperature unit cannot be written back through h5py's str
        attrs = {k: v for k, v in f["data"].attrs.items() if k != "ExperimentInfo.Temperature.Unit"}
    bad = tmp_path / "cut.h5"
    with h5py.File(bad, "w") as f:
        dset = f.create_dataset("data", data=data)
        dset.attrs.update(attrs)
    with pytest.raises(FastFileError, match=r"cut\.h5: /data holds 88210 samples.*105 x 105"):
        open_fast(bad)


def test_zero_frames(tmp_path):
    bad = _fast_like(tmp_path / "zero.h5", np.zeros(0, np.int16))
    with pytest.raises(FastFileError, match=r"zero\.h5: FAST movie with zero frames"):
        open_fast(bad)


@pytest.mark.parametrize("value", [np.float64(2.5), np.int32(0), "abc"])
def test_bad_points(tmp_path, value):
    bad = _fast_like(tmp_path / "pts.h5", np.zeros(96, np.int16), **{"Scanner.X_Points": value})
    with pytest.raises(FastFileError, match=r"pts\.h5: attribute Scanner\.X_Points is"):
        open_fast(bad)


def test_bad_file_format_version(tmp_path):
    bad = _fast_like(tmp_path / "ver.h5", np.zeros(96, np.int16),
                     **{"ExperimentInfo.FileFormatVersion": "two"})
    with pytest.raises(FastFileError, match=r"ver\.h5: ExperimentInfo.FileFormatVersion 'two'"):
        open_fast(bad)


def test_a_folder(tmp_path):
    with pytest.raises(FastFileError, match="is a folder"):
        open_fast(tmp_path)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, dass.stm; print('pyfastspm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ}, check=True)
    assert out.stdout.strip() == "False"

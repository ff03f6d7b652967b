"""dass.stm.export and dass.stm.service: MP4/GIF, PNG, .gsf, processed HDF5, the service call."""

from __future__ import annotations

import json

import h5py
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from dass.stm import open_fast
from dass.stm.export import (
    ExportError,
    contrast_limits,
    export_frames,
    export_gsf,
    export_hdf5,
    export_movie,
    read_gsf,
    render_frame,
)
from dass.stm.fast import FastFileError
from dass.stm.process import Recipe, Step, process
from dass.stm.service import outputs_html, process_fast_dataset
from dass.stm.synthetic import write_synthetic_fast

LIGHT = Recipe("udf", (Step.make("phase"), Step.make("align_rows", {"method": "mean"})), images=(0, 9))


def _count_frames(path: str) -> tuple[tuple[int, int], int]:
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    return tuple(meta["size"]), sum(1 for _ in reader)


@pytest.fixture(scope="module")
def old_movie(old_fast):
    with open_fast(old_fast) as fast:
        return process(fast, LIGHT)


@pytest.fixture(scope="module")
def synthetic_movie(tmp_path_factory):
    path = write_synthetic_fast(tmp_path_factory.mktemp("syn") / "syn.h5", points=24, num_images=3)
    return process(path, Recipe("udi", (Step.make("phase", {"auto": False}), Step.make("interpolate"))))


def test_mp4_of_real_file_plays_with_every_frame(old_movie, tmp_path):
    assert len(old_movie) == 20  # images 0..9, up and down
    out = export_movie(old_movie, tmp_path / "movie.mp4", fps=12.5, scaling=2.0)
    assert out.endswith(".mp4")
    size, count = _count_frames(out)
    assert count == 20
    assert size == (210, 210)  # 105 x 105 px, zoom 2, even sizes for H.264


def test_mp4_frames_are_pyfastspm_pictures(synthetic_movie, tmp_path):
    """The movie's frames are pyfastspm's gray_to_rgb pictures (up to H.264 loss)."""
    from pyfastspm.tools.frame_artists import gray_to_rgb

    out = export_movie(synthetic_movie, tmp_path / "s", scaling=4.0, label=False)
    reader = imageio_ffmpeg.read_frames(out)
    meta = next(reader)
    assert meta["size"] == (96, 96)
    lo, hi = contrast_limits(synthetic_movie)
    for i, raw in enumerate(reader):
        got = np.frombuffer(raw, np.uint8).reshape(96, 96, 3).astype(int)
        expected = gray_to_rgb(synthetic_movie.frames[i], color_map="hot",
                               contrast=np.array([lo, hi]), scaling=(2.0, 4.0)).astype(int)
        other = gray_to_rgb(synthetic_movie.frames[(i + 1) % 6], color_map="hot",
                            contrast=np.array([lo, hi]), scaling=(2.0, 4.0)).astype(int)
        assert np.abs(got - expected).mean() < 0.5 * np.abs(got - other).mean()


def test_gif_fallback_without_ffmpeg(synthetic_movie, tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg-here"))
    calls = []
    out = export_movie(synthetic_movie, tmp_path / "movie.mp4",
                       progress=lambda done, total: calls.append((done, total)))
    assert out.endswith("movie.gif")
    with Image.open(out) as gif:
        assert gif.n_frames == len(synthetic_movie) == 6
    assert calls[-1] == (6, 6)
    with pytest.raises(ExportError, match="no ffmpeg for MP4"):
        export_movie(synthetic_movie, tmp_path / "m.mp4", format="mp4")


def test_movie_errors(synthetic_movie, tmp_path):
    with pytest.raises(ExportError, match="format 'avi'"):
        export_movie(synthetic_movie, tmp_path / "m.avi", format="avi")
    with pytest.raises(ExportError, match="fps must be > 0"):
        export_movie(synthetic_movie, tmp_path / "m.mp4", fps=0)
    with pytest.raises(IndexError, match="frame 6 is not in this movie of 6 frames"):
        export_movie(synthetic_movie, tmp_path / "m.mp4", frames=[6])


def test_png_frames_local_and_fsspec(synthetic_movie, tmp_path):
    written = export_frames(synthetic_movie, tmp_path / "png", frames=[0, 5], scaling=1.0)
    assert [p.rsplit("/", 1)[-1] for p in written] == ["syn_0ui.png", "syn_2di.png"]
    with Image.open(written[1]) as img:
        assert img.size == (24, 24) and img.mode == "RGB"
        picture = np.asarray(img)
    np.testing.assert_array_equal(picture, render_frame(synthetic_movie, 5, scaling=1.0, label=False))

    import fsspec

    urls = export_frames(synthetic_movie, "memory://stm-export-test/png", frames=[1])
    with fsspec.open(urls[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_gsf_reads_back(old_movie, tmp_path):
    files = export_gsf(old_movie, tmp_path / "gsf", frames=[0, 3])
    assert [f.rsplit("/", 1)[-1] for f in files] == ["20141003_24_0uf.gsf", "20141003_24_1df.gsf"]
    data, header = read_gsf(files[1])
    np.testing.assert_array_equal(data, old_movie.frames[3])
    assert header["XRes"] == "105" and header["YRes"] == "105"
    assert header["Title"] == "20141003_24_1df"
    assert header["ExperimentInfo.Sample"] == "Gr/Ni(111)"
    assert header["Synthetic"] == "0"
    assert Recipe.from_json(header["DassRecipe"]) == LIGHT
    raw = (tmp_path / "gsf" / "20141003_24_0uf.gsf").read_bytes()
    assert (raw.index(b"\x00") + 4) // 4 * 4 + 4 * 105 * 105 <= len(raw)


def _gwyddion_gsf(path) -> tuple[dict[str, str], np.ndarray]:
    """An independent reader of Gwyddion Simple Field 1.0, written from Gwyddion's format page
    (gsf.html): a magic line, ``key = value`` lines, 1-4 NUL bytes so that the data start at a
    multiple of 4, then XRes x YRes little-endian float32, row by row. Missing XReal/YReal mean
    1.0 in Gwyddion, which is what the bug looked like."""
    raw = open(path, "rb").read()
    text_end = raw.index(b"\x00")
    lines = raw[:text_end].decode("ascii").split("\n")
    assert lines[0] == "Gwyddion Simple Field 1.0"
    fields = {}
    for line in lines[1:]:
        if line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    padding = 4 - text_end % 4
    assert raw[text_end:text_end + padding] == b"\x00" * padding
    xres, yres = int(fields["XRes"]), int(fields["YRes"])
    data = np.frombuffer(raw, dtype="<f4", count=xres * yres, offset=text_end + padding)
    assert len(raw) == text_end + padding + 4 * xres * yres
    return fields, data.reshape(yres, xres)


def test_gsf_has_the_scan_size_of_an_uncalibrated_file(old_fast, old_movie, tmp_path):
    (path,) = export_gsf(old_movie, tmp_path, frames=[2])
    fields, data = _gwyddion_gsf(path)
    np.testing.assert_array_equal(data, old_movie.frames[2])
    with h5py.File(old_fast, "r") as h5:  # the raw attributes, not dass's metadata
        attrs = h5["data"].attrs
        assert attrs["Scanner.X_Calibration"] == 0.0
        amp_x, amp_y = float(attrs["Scanner.X_Amplitude"]), float(attrs["Scanner.Y_Amplitude"])
    assert float(fields["XReal"]) == amp_x and float(fields["YReal"]) == amp_y  # 0.1 V, 0.08 V
    assert fields["XYUnits"] == "V" and fields["ZUnits"] == ""
    assert "uncalibrated" in fields["DassScale"]


def _calibrated_copy(tmp_path, name, **attrs):
    path = write_synthetic_fast(tmp_path / name, points=24, num_images=3)
    with h5py.File(path, "r+") as h5:
        for key, value in attrs.items():
            if value is None:
                del h5["data"].attrs[key]
            else:
                h5["data"].attrs[key] = value
    return path


def test_gsf_sizes_of_a_calibrated_file_in_metres(tmp_path):
    path = _calibrated_copy(tmp_path, "cal.h5", **{"Scanner.X_Calibration": np.float64(20.0),
                                                   "Scanner.Y_Calibration": np.float64(30.0)})
    recipe = Recipe("udi", (Step.make("phase", {"auto": False}), Step.make("interpolate")))
    movie = process(path, recipe)
    (gsf,) = export_gsf(movie, tmp_path / "gsf", frames=[1])
    fields, data = _gwyddion_gsf(gsf)
    assert data.shape == (48, 24)  # interlaced: twice the rows over the same height
    assert fields["XYUnits"] == "m"
    # synthetic amplitudes are 0.15 V: 0.15 V x 20 nm/V = 3 nm, 0.15 V x 30 nm/V = 4.5 nm
    assert float(fields["XReal"]) == pytest.approx(3e-9, rel=1e-12)
    assert float(fields["YReal"]) == pytest.approx(4.5e-9, rel=1e-12)

    # the drift step's larger canvas keeps the pixel size of the resized frames:
    # pyfastspm resizes 48 x 24 interlaced frames to 2**(int(log2(48)) + 1) = 64 rows and 32 columns
    drifted = process(path, recipe.with_step("drift", stepsize=2))
    (gsf,) = export_gsf(drifted, tmp_path / "drift", frames=[0])
    fields, data = _gwyddion_gsf(gsf)
    rows, cols = data.shape
    assert rows > 64 and cols > 32
    assert float(fields["XReal"]) == pytest.approx(3e-9 * cols / 32, rel=1e-12)
    assert float(fields["YReal"]) == pytest.approx(4.5e-9 * rows / 64, rel=1e-12)


def test_gsf_falls_back_to_marked_pixels(tmp_path):
    path = _calibrated_copy(tmp_path, "px.h5", **{"Scanner.X_Amplitude": None, "Scanner.Y_Amplitude": None})
    movie = process(path, Recipe("udf", (Step.make("phase", {"auto": False}),)))
    (gsf,) = export_gsf(movie, tmp_path / "gsf", frames=[0])
    fields, data = _gwyddion_gsf(gsf)
    assert data.shape == (24, 24)
    assert (fields["XReal"], fields["YReal"], fields["XYUnits"]) == ("24.0", "24.0", "px")
    assert "pixels" in fields["DassScale"]


def test_read_gsf_errors(tmp_path):
    bad = tmp_path / "bad.gsf"
    bad.write_bytes(b"not a gsf")
    with pytest.raises(ExportError, match="not a Gwyddion Simple Field"):
        read_gsf(bad)
    short = tmp_path / "short.gsf"
    short.write_bytes(b"Gwyddion Simple Field 1.0\nXRes = 4\nYRes = 4\n\x00\x00\x00" + b"\x00" * 8)
    with pytest.raises(ExportError, match="truncated"):
        read_gsf(short)
    nores = tmp_path / "nores.gsf"
    nores.write_bytes(b"Gwyddion Simple Field 1.0\nXRes = 4\n\x00\x00")
    with pytest.raises(ExportError, match="XRes and YRes"):
        read_gsf(nores)


def test_processed_hdf5_keeps_raw_data(old_fast, old_movie, tmp_path):
    out = export_hdf5(old_movie, tmp_path / "processed.h5")
    with h5py.File(old_fast, "r") as raw, h5py.File(out, "r") as new:
        assert new["data"][()].tobytes() == raw["data"][()].tobytes()
        assert new["data"].dtype == raw["data"].dtype
        assert set(new["data"].attrs) == set(raw["data"].attrs)
        for key in raw["data"].attrs:
            assert np.array_equal(new["data"].attrs[key], raw["data"].attrs[key])
        grp = new["processed"]
        np.testing.assert_array_equal(grp["frames"][()], old_movie.frames)
        assert Recipe.from_json(grp.attrs["recipe"]) == LIGHT
        assert json.loads(grp.attrs["metadata"])["points_x"] == 105
        assert [c.decode() for c in grp["frame_channels"][:2]] == ["uf", "df"]
        assert grp.attrs["fps"] == pytest.approx(old_movie.fps)
        assert not grp.attrs["synthetic"]
    with pytest.raises(ExportError, match="already holds a /processed group"):
        export_hdf5(old_movie, tmp_path / "again.h5", source=out)


def test_hdf5_refuses_another_file(synthetic_movie, old_fast, tmp_path):
    with pytest.raises(ExportError, match="not the raw file of this movie"):
        export_hdf5(synthetic_movie, tmp_path / "x.h5", source=old_fast)


# ---------------------------------------------------------------------------------------------
# the service call


def test_service_processes_a_folder(tmp_path):
    data = tmp_path / "dataset"
    (data / "raw").mkdir(parents=True)
    write_synthetic_fast(data / "raw" / "a.h5", points=16, num_images=3, spelling="old")
    write_synthetic_fast(data / "raw" / "b.h5", points=16, num_images=3)
    (data / "raw" / "notes.h5").write_bytes(b"not hdf5")
    recipe = Recipe("udi", (Step.make("phase", {"auto": False}), Step.make("interpolate"),
                            Step.make("level_plane")))
    calls = []
    summary = process_fast_dataset(data, tmp_path / "out", recipe=recipe.to_dict(), frames="first",
                                   fps=5.0, hdf5=True, progress=lambda d, t: calls.append((d, t)))
    assert [e["source"].rsplit("/", 1)[-1] for e in summary["files"]] == ["a.h5", "b.h5"]
    assert summary["skipped"][0]["source"].endswith("notes.h5")
    assert "not an HDF5 file" in summary["skipped"][0]["reason"]
    assert summary["synthetic"] is True
    assert calls[-1] == (3, 3)
    entry = summary["files"][0]
    assert entry["num_frames"] == 6
    assert entry["movie"] == "a/a.mp4" and entry["metadata"] == "a/metadata.json"
    assert entry["frames"] == ["a/frames/a_0ui.png"] and entry["gsf"] == ["a/gsf/a_0ui.gsf"]
    assert _count_frames(str(tmp_path / "out" / entry["movie"]))[1] == 6
    assert len(entry["frames"]) == 1 and len(entry["gsf"]) == 1
    md = json.loads((tmp_path / "out" / "a" / "metadata.json").read_text())
    assert md["synthetic"] is True and md["metadata"]["phase_attribute_prefix"] == "Acquisiton"
    assert Recipe.from_dict(md["recipe"]) == recipe
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["files"][1]["num_frames"] == 6
    with h5py.File(tmp_path / "out" / entry["hdf5"], "r") as h5:
        assert h5["processed/frames"].shape[0] == 6
    assert Recipe.from_dict(md["replay_recipe"]).step("phase").params["x_phase"] == md["processing"]["x_phase"]

    # the job notebook links the movies (relative to the notebook beside out/), never embeds them
    page = outputs_html(summary, tmp_path / "out")
    assert '<video src="out/a/a.mp4" controls' in page and '<a href="out/a/a.mp4" download>a.mp4</a>' in page
    assert '<a href="out/b/frames/b_0ui.png">b_0ui.png</a>' in page
    assert "skipped " in page and "notes.h5" in page
    assert "base64" not in page and "data:" not in page and len(page) < 2000
    assert 'src="a/a.mp4"' in outputs_html(summary, tmp_path / "out", base=tmp_path / "out")


def test_service_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        process_fast_dataset(tmp_path / "absent", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FastFileError, match="no FAST movie"):
        process_fast_dataset(tmp_path / "empty", tmp_path / "out")
    not_fast = tmp_path / "x.h5"
    with h5py.File(not_fast, "w") as h5:
        h5["image"] = np.zeros((2, 2))
    with pytest.raises(FastFileError, match="no /data dataset"):
        process_fast_dataset([not_fast], tmp_path / "out")


def test_service_reads_and_writes_fsspec_urls():
    import fsspec

    from dass.stm.synthetic import SyntheticFast, synthetic_fast_bytes

    fs = fsspec.filesystem("memory")
    fs.pipe("/stm-service-test/in/raw/m.h5", synthetic_fast_bytes(SyntheticFast(points=16, num_images=2)))
    recipe = Recipe("uf", (Step.make("level_plane"),))
    summary = process_fast_dataset("memory://stm-service-test/in", "memory://stm-service-test/out",
                                   recipe=recipe, frames=[0])
    (entry,) = summary["files"]
    assert entry["source"].startswith("memory://")
    assert entry["source"].endswith("/stm-service-test/in/raw/m.h5")
    assert entry["movie"] == "m/m.mp4"
    assert fs.cat("/stm-service-test/out/m/m.mp4")[4:8] == b"ftyp"  # an MP4 container
    with fsspec.open("memory://stm-service-test/out/" + entry["gsf"][0], "rb") as f:
        assert f.read(25) == b"Gwyddion Simple Field 1.0"
    md = json.loads(fs.cat("/stm-service-test/out/m/metadata.json"))
    assert md["num_frames"] == 2 and md["synthetic"] is True

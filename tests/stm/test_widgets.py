"""dass.stm.widgets.MovieApp, driven through its methods and widgets, without a browser."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
from PIL import Image

from dass.data.session import Dataset
from dass.stm.export import render_frame
from dass.stm.process import Recipe, Step, process
from dass.stm.synthetic import write_synthetic_fast
from dass.stm.widgets import MovieApp, find_fast_movies


@pytest.fixture(scope="module")
def mounted(tmp_path_factory):
    """A dataset folder as the session mounts it, holding one synthetic FAST movie."""
    root = tmp_path_factory.mktemp("datasets") / "p-1" / "fast"
    write_synthetic_fast(root / "raw" / "movie.h5", points=20, num_images=3)
    dataset = Dataset(id="p-1/fast", proposal="p-1", name="fast", url=f"file://{root}", path=root)
    return dataset, root / "raw" / "movie.h5"


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def test_choices_from_datasets_and_load(mounted, tmp_path):
    dataset, movie = mounted
    assert find_fast_movies([dataset]) == [("p-1/fast: raw/movie.h5", str(movie))]
    # an HDF5 file that is not a FAST movie (a KMAP scan, say) is not offered
    with h5py.File(movie.parent / "scan_master.h5", "w") as h5:
        h5["1.1/measurement/imgnr"] = np.arange(3)
    assert find_fast_movies([dataset]) == [("p-1/fast: raw/movie.h5", str(movie))]
    (movie.parent / "scan_master.h5").unlink()
    app = MovieApp(datasets=[dataset], output_dir=tmp_path / "out")
    assert app.chooser.options[0][1] == str(movie)
    app.load_button.click()
    assert app.fast is not None and app.fast.metadata["points_x"] == 20
    assert "SYNTHETIC" in app.status.value
    assert app.slider.max == app.play.max == 5  # 'udi': 3 images x (up, down)
    assert _png(app.image.value).shape == (40, 40, 3)


def test_slider_channels_and_steps_preview(mounted):
    _, movie = mounted
    app = MovieApp(movie, datasets=[])
    raw_frame = app.frame(3)
    assert raw_frame[0] is app.raw and raw_frame[1] == 3

    app.slider.value = 3  # what Play moves
    shown = _png(app.image.value)
    np.testing.assert_array_equal(shown, render_frame(app.raw, 3, scaling=2.0))

    app.channel.value = "uf"
    assert app.recipe.channels == "uf" and app.slider.max == 2

    app.steps["level_plane"].value = True  # the checkbox
    assert app.recipe.names == ("level_plane",)
    preview, i = app.frame(1)
    expected = process(movie, Recipe("uf", (Step.make("level_plane"),)))
    np.testing.assert_array_equal(preview.frames[i], expected.frames[1])
    assert preview.image_ids == [1]  # only the shown image was processed

    app.set_step("align_rows", True, method="mean")
    assert app.recipe.step("align_rows").params["method"] == "mean"
    assert app.steps["align_rows"].value is True
    app.steps["align_rows"].value = False
    assert app.recipe.names == ("level_plane",)


def test_preview_reuses_phase_fft_and_creep(mounted):
    """Ticking a frame step redoes neither phase, FFT nor the creep fit (the StageCache keeps
    them), and the frames stay those of a full run with pyfastspm's own functions."""
    _, movie = mounted
    app = MovieApp(movie, datasets=[])
    app.set_step("phase", True)
    app.set_step("fft", True)
    app.set_step("creep", True, index_to_linear=0.5)  # 0.2 is too little for 20 rows
    kept = dict(app.stages)
    # time series after phase, after phase + fft, and the creep grid
    assert len(kept) == 3
    app.steps["align_rows"].value = True
    app.slider.value = 4
    assert all(app.stages[k] is v for k, v in kept.items())  # reused, not recomputed
    preview, i = app.frame(4)
    reference = process(movie, app.recipe, engine="pyfastspm")
    np.testing.assert_array_equal(preview.frames[i], reference.frames[4])
    app.process_movie()
    assert all(app.stages[k] is v for k, v in kept.items())
    np.testing.assert_array_equal(app.processed.frames, reference.frames)


def test_creep_ticks_interpolate(mounted):
    _, movie = mounted
    app = MovieApp(movie, datasets=[])
    app.set_step("creep", True, known_params=[0.5])  # known parameters: no fit, fast
    assert set(app.recipe.names) == {"creep", "interpolate"}
    assert app.steps["creep"].value is True
    assert app.steps["interpolate"].value is True
    app.steps["interpolate"].value = False
    assert app.recipe.names == ()
    assert app.steps["creep"].value is False


def test_process_movie_and_exports(mounted, tmp_path):
    _, movie = mounted
    app = MovieApp(movie, datasets=[], recipe={"channels": "udf", "steps": [{"name": "fix_zero"}]},
                   output_dir=tmp_path / "out")
    assert app.steps["fix_zero"].value is True
    app.process_button.click()
    assert app.progress.value == app.progress.max == 3
    assert app.frame(2)[0] is app.processed
    assert app.processed.frames.min() == 0.0  # fix_zero moved each minimum to 0
    mp4 = app.export("mp4")
    assert mp4[0].endswith("movie.mp4")
    pngs = app.export("png")
    assert len(pngs) == 6
    (h5,) = app.export("hdf5")
    with h5py.File(h5, "r") as f, h5py.File(movie, "r") as raw:
        assert f["data"][()].tobytes() == raw["data"][()].tobytes()
        assert Recipe.from_json(f["processed"].attrs["recipe"]).names == ("fix_zero",)
    assert "wrote 1 file(s)" in app.status.value


def test_user_errors_go_to_the_status_line(tmp_path):
    app = MovieApp(datasets=[])
    assert app.chooser.options[0][1] == ""
    app.load_button.click()
    assert "choose a movie" in app.status.value
    app.path_text.value = str(tmp_path / "absent.h5")
    app.load_button.click()
    assert "no such file" in app.status.value
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"nope")
    app.path_text.value = str(bad)
    app.load_button.click()
    assert "not an HDF5 file" in app.status.value
    with pytest.raises(ValueError, match="load a movie first"):
        app.frame(0)
    with pytest.raises(ValueError, match="unknown export 'avi'"):
        app.export("avi")


def test_landing_without_a_session_and_with_one(mounted, tmp_path):
    """The landing notebook's helpers: outside a session (no manifest), with an empty one, with
    a dataset but no FAST movie, and with a FAST movie."""
    import json

    from dass.stm.widgets import first_look, session_datasets

    found, note = session_datasets(tmp_path / "absent.json")
    assert found == [] and "No datasets are mounted here" in note and "p-2026-002/stm-au111-fast" in note
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"datasets": []}))
    found, note = session_datasets(empty)
    assert found == [] and "This session has no datasets" in note
    assert "No FAST movie among the mounted datasets" in first_look([])
    assert MovieApp(datasets=found).movie_choices() == []

    dataset, movie = mounted
    manifest = tmp_path / "session.json"
    manifest.write_text(json.dumps({"datasets": [{
        "id": dataset.id, "proposal": dataset.proposal, "name": dataset.name,
        "url": dataset.url, "mount": str(dataset.path)}]}))
    found, note = session_datasets(manifest)
    assert note == "" and [d.id for d in found] == ["p-1/fast"]
    text = first_look(found)
    assert text.startswith("p-1/fast: raw/movie.h5: /data has 4800 samples")  # 3 x 4 x 20 x 20
    assert "    Scanner.X_Points = 20" in text and text.endswith("images in the stream: 3 of 1600 samples each")

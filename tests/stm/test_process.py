"""dass.stm.process: recipes (validation, JSON) and processing equal to pyfastspm's own steps.

The reference runs below call pyfastspm directly, in the order of its example notebook
(``examples/pyfastspm_converter.ipynb``), on the two real FAST files of the pyfastspm wheel.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from dass.stm import open_fast
from dass.stm.process import (
    STEP_ORDER,
    ProcessingError,
    Recipe,
    RecipeError,
    Step,
    process,
)
from dass.stm.synthetic import write_synthetic_fast


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


# ---------------------------------------------------------------------------------------------
# equal to pyfastspm called directly


def test_old_file_equals_pyfastspm_notebook_pipeline(old_fast):
    """Automatic phase, FFT (x, y, 10 x overtones), sine creep fit, interpolation, row
    alignment, plane, Gaussian 2-D filter on 'udi' — as pyfastspm's notebook does it (with mean
    instead of median row alignment, 5 x cheaper)."""
    import pyfastspm as pf

    recipe = Recipe.from_dict({
        "channels": "udi",
        "steps": [
            {"name": "filter_2d", "params": {"kind": "gaussian", "pixel_width": 3}},
            {"name": "phase", "params": {"auto": True}},
            {"name": "fft"},
            {"name": "creep", "params": {"mode": "sin", "index_to_linear": 0.2}},
            {"name": "interpolate"},
            {"name": "align_rows", "params": {"method": "mean"}},
            {"name": "level_plane"},
        ],
    })
    calls = []
    with open_fast(old_fast) as fast:
        raw_before = fast.movie.data.copy()
        got = process(fast, recipe, progress=lambda done, total: calls.append((done, total)))
        assert np.array_equal(fast.movie.data, raw_before)  # the FastFile's movie is untouched

    with _quiet():
        ft = pf.FastMovie(str(old_fast), y_phase=0, log_processing=False)
        x_phase = ft.correct_phase(apply_auto_xphase=True, index_frame_to_correlate=0,
                                   sigma_gauss=0, additional_x_phase=0, manual_y_phase=0)
        pf.filter_movie(ft, [True, True, True, False, False, False, False], None, None,
                        (), 3, 10, None)
        ft.reshape_to_movie("udi")
        creep = pf.Creep(ft, index_to_linear=0.2, creep_mode="sin")
        grid = creep.fit_creep((0.3,), frames=[0, 2])
        pf.interpolate(ft, grid=grid)
        pf.align_rows(ft, "mean")
        pf.level_plane(ft)
        pf.gaussian_2d(ft, 3)

    np.testing.assert_array_equal(got.frames, ft.data)
    assert got.frames.shape == (136, 210, 105)
    assert got.processing["x_phase"] == x_phase
    assert got.fps == pytest.approx(ft.fps)
    assert got.labels[:3] == ["0ui", "0di", "1ui"]
    assert got.image_ids[-1] == 67
    assert calls == [(i, 9) for i in range(1, 10)]
    assert got.recipe.names == ("phase", "fft", "creep", "interpolate", "align_rows",
                                "level_plane", "filter_2d")
    assert not got.synthetic


def test_new_file_equals_pyfastspm_given_phase_notches_drift(new_fast):
    """Given phase, custom notches + noise filter, 'udf', an image range, drift ('common'),
    fix zero, median filter (interpolation is tested on the smaller file: it costs ~8 s here)."""
    import pyfastspm as pf

    recipe = Recipe.from_dict({
        "channels": "udf",
        "images": [2, 5],
        "steps": [
            {"name": "phase", "params": {"auto": False, "x_phase": -24, "y_phase": -1}},
            {"name": "fft", "params": {"filter_x": False, "x_overtones": 0,
                                       "notches": [[1500.0, 20.0]], "noise": True}},
            {"name": "drift", "params": {"mode": "common", "stepsize": 5}},
            {"name": "fix_zero"},
            {"name": "filter_2d", "params": {"kind": "median", "pixel_width": 3}},
        ],
    })
    with open_fast(new_fast) as fast:
        got = process(fast, recipe)

    with _quiet():
        ft = pf.FastMovie(str(new_fast), log_processing=False)
        ft.reload_timeseries(x_phase=-24, y_phase=-1)
        pf.convert_to_spectrum(ft)
        y = float(ft.metadata["Scanner.Y_Frequency"])
        pf.filter_freq(ft, [2 * y, 1500.0], [y, 20.0], ["h", "g"])
        thresh = np.median(np.abs(ft.data))
        pf.filter_noise(ft, thresh, thresh)
        pf.convert_to_timeseries(ft)
        ft.reshape_to_movie("udf")
        drift = pf.Drift(ft, stepsize=5, boxcar=True)
        drift.file = str(new_fast.parent / "unused.drift.txt")
        ft.data, path = drift.correct("common")
        (new_fast.parent / "unused.drift.txt").unlink()
        pf.fix_zero(ft)
        pf.median_2d(ft, 3)

    np.testing.assert_array_equal(got.frames, ft.data[4:12])
    assert got.image_ids == [2, 2, 3, 3, 4, 4, 5, 5]
    assert got.frame_channels == ["uf", "df"] * 4
    np.testing.assert_allclose(got.processing["drift"]["drift_path"], np.round(path, 5))
    assert got.processing["fft"]["filters"] == [[2 * y, y, "h"], [1500.0, 20.0, "g"]]
    assert got.times[0] == pytest.approx(4 / ft.fps)
    assert not list(new_fast.parent.glob("*.drift.txt"))  # nothing written next to the data


def test_no_steps_gives_pyfastspm_frames(new_fast):
    with open_fast(new_fast) as fast:
        got = process(fast, Recipe("uf"))
        np.testing.assert_array_equal(got.frames, fast.frames("uf"))
    assert len(got) == 58


# ---------------------------------------------------------------------------------------------
# recipes


def test_recipe_json_round_trip_and_order():
    recipe = Recipe("ui", (Step.make("filter_2d"), Step.make("phase", {"auto": False, "x_phase": 3})),
                    images=(1, 2))
    text = recipe.to_json()
    back = Recipe.from_json(text)
    assert back == recipe
    assert back.names == ("phase", "filter_2d")
    assert json.loads(text)["steps"][0]["params"]["x_phase"] == 3
    assert Recipe.from_dict(json.loads(text)).images == (1, 2)
    assert recipe.with_step("drift", stepsize=3).step("drift").params["stepsize"] == 3
    assert "creep" not in Recipe.standard().without("interpolate").names
    assert set(Recipe.standard().names) < set(STEP_ORDER)


@pytest.mark.parametrize(
    ("data", "step", "field", "words"),
    [
        ({"steps": [{"name": "sharpen"}]}, "sharpen", None, "unknown step"),
        ({"steps": [{"name": "fft", "params": {"x_overtone": 3}}]}, "fft", "x_overtone", "unknown parameter"),
        ({"steps": [{"name": "fft", "params": {"x_overtones": -1}}]}, "fft", "x_overtones", ">= 0"),
        ({"steps": [{"name": "fft", "params": {"notches": [[100.0]]}}]}, "fft", "notches", "2 numbers"),
        ({"steps": [{"name": "drift", "params": {"mode": "half"}}]}, "drift", "mode", "'full'"),
        ({"steps": [{"name": "filter_2d", "params": {"pixel_width": "3"}}]}, "filter_2d", "pixel_width", "whole number"),
        ({"steps": [{"name": "phase", "params": {"auto": True, "x_phase": 4}}]}, "phase", "x_phase", "auto false"),
        ({"steps": [{"name": "destreak", "params": {"kernel": [[1, 2]]}}]}, "destreak", "kernel", "odd"),
        ({"steps": [{"name": "creep"}]}, "creep", None, "interpolate"),
        ({"steps": [{"name": "fix_zero"}, {"name": "fix_zero"}]}, "fix_zero", None, "twice"),
        ({"steps": [{"name": "fix_zero", "options": {}}]}, "fix_zero", "options", "unexpected key"),
        ({"channels": "uu"}, None, "channels", "unknown channels"),
        ({"images": [3, 1]}, None, "images", "before first"),
        ({"images": "all"}, None, "images", "[first, last]"),
        ({"steps": "fft"}, None, "steps", "must be a list"),
        ({"colour": "hot"}, None, "colour", "unknown field"),
        ({"version": 2}, None, "version", "not supported"),
    ],
)
def test_recipe_errors_name_step_and_field(data, step, field, words):
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data)
    err = info.value
    assert (err.step, err.field) == (step, field)
    assert words in str(err)
    if step is not None:
        assert f"step {step!r}" in str(err)
    if field is not None:
        assert f"field {field!r}" in str(err)


def test_recipe_from_bad_json():
    with pytest.raises(RecipeError, match="not valid JSON"):
        Recipe.from_json("{'steps': []}")
    with pytest.raises(RecipeError, match="JSON object"):
        Recipe.from_dict([1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# recipes that do not fit the movie


@pytest.fixture(scope="module")
def tiny_fast(tmp_path_factory):
    return write_synthetic_fast(tmp_path_factory.mktemp("tiny") / "tiny.h5", points=16, num_images=3)


def test_image_range_past_the_end(tiny_fast):
    with pytest.raises(RecipeError, match=r"past the last image \(2\)") as info:
        process(tiny_fast, Recipe("uf", images=(0, 3)))
    assert info.value.field == "images"


def test_drift_stepsize_too_large(tiny_fast):
    with pytest.raises(RecipeError, match="stepsize 10 must be smaller") as info:
        process(tiny_fast, Recipe("udf", (Step.make("drift"),)))
    assert (info.value.step, info.value.field) == ("drift", "stepsize")


def test_pyfastspm_failure_names_file_and_step(tiny_fast):
    # 'uf' of 3 images has 3 frames; pyfastspm's creep fit correlates frames 3 and 4
    recipe = Recipe("uf", (Step.make("creep"), Step.make("interpolate")))
    with pytest.raises(ProcessingError) as info:
        process(tiny_fast, recipe)
    assert info.value.step == "creep"
    assert str(tiny_fast) in str(info.value)
    assert "IndexError" in str(info.value)


def test_process_opens_a_path_and_reports_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        process(tmp_path / "absent.h5", Recipe())


# ---------------------------------------------------------------------------------------------
# exact replay, checks at submit, no library noise


@pytest.fixture(scope="module")
def small_fast(tmp_path_factory):
    return write_synthetic_fast(tmp_path_factory.mktemp("small") / "small.h5", points=32, num_images=8)


@pytest.mark.parametrize("creep", [{"mode": "sin"}, {"mode": "bezier"}])
def test_replay_recipe_gives_the_same_frames_without_fitting(small_fast, creep):
    recipe = Recipe.from_dict({"channels": "udi", "steps": [
        {"name": "phase"}, {"name": "creep", "params": creep}, {"name": "interpolate"},
        {"name": "drift", "params": {"stepsize": 4}}, {"name": "align_rows"}]})
    first = process(small_fast, recipe)
    found = first.processing
    assert found["creep"]["fitted"] and found["drift"]["fitted"]
    replay = Recipe.from_json(json.dumps(first.summary()["replay_recipe"]))  # as written to outputs
    assert replay.step("phase").params["auto"] is False
    assert replay.step("phase").params["x_phase"] == found["x_phase"]
    if creep["mode"] == "sin":
        assert replay.step("creep").params["known_params"] == found["creep"]["params"]
        assert len(found["creep"]["params"]) == 1 and 0 < found["creep"]["params"][0] < 2
    else:
        assert replay.step("creep").params["known_input"] == found["creep"]["shape"]
    assert replay.step("drift").params["known_path"] == found["drift"]["drift_path"]
    assert np.shape(found["drift"]["drift_path"]) == (2, 16)

    again = process(small_fast, replay)
    np.testing.assert_array_equal(again.frames, first.frames)
    assert not again.processing["creep"]["fitted"] and not again.processing["drift"]["fitted"]
    assert again.processing["drift"]["drift_path"] == found["drift"]["drift_path"]
    assert {k: v for k, v in again.processing["creep"].items() if k != "fitted"} == \
        {k: v for k, v in found["creep"].items() if k != "fitted"}


def test_known_drift_path_must_fit_the_movie(small_fast):
    recipe = Recipe("udi", (Step.make("drift", {"known_path": [[0.0, 1.0], [0.0, 1.0]]}),))
    with pytest.raises(RecipeError, match="known_path has 2 shifts, but the movie has 16 frames") as info:
        process(small_fast, recipe)
    assert (info.value.step, info.value.field) == ("drift", "known_path")
    with pytest.raises(RecipeError, match="one number per frame") as info:
        Step.make("drift", {"known_path": [[0.0, 1.0], [0.0]]})
    assert info.value.field == "known_path"


def test_check_recipe_at_submit():
    from dass.stm.process import check_recipe

    assert check_recipe({}) == check_recipe(None) == check_recipe("") == Recipe.standard().to_dict()
    given = check_recipe('{"channels": "udf", "steps": [{"name": "align_rows"}]}')
    assert given["steps"] == [{"name": "align_rows", "params": {"method": "median"}}]
    for bad, step, field in [
        ({"steps": [{"name": "creep", "params": {"mode": "cubic"}}, {"name": "interpolate"}]}, "creep", "mode"),
        ({"steps": [{"name": "fft", "params": {"notches": [[50, -1]]}}]}, "fft", "notches"),
        ({"channels": "xyz"}, None, "channels"),
        ('{"steps": [', None, None),
    ]:
        with pytest.raises(RecipeError) as info:
            check_recipe(bad)
        assert (info.value.step, info.value.field) == (step, field), bad
        assert isinstance(info.value, ValueError)


def test_no_library_noise_on_import_and_processing(small_fast):
    """pyfastspm's import prints 'mkl_fft import failed', logs a false 'ffmpeg is unavailable'
    and configures the root logger; none of it reaches a program that uses dass.stm."""
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from dass.stm import open_fast\n"
        "from dass.stm.process import Recipe, process\n"
        "from dass.stm.export import export_gsf\n"
        f"with open_fast({str(small_fast)!r}) as fast:\n"
        "    movie = process(fast, Recipe.standard().without('creep'))\n"
        "root = logging.getLogger()\n"
        "assert not root.handlers and root.level == logging.WARNING, (root.handlers, root.level)\n"
        "print('frames', len(movie))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "frames 16\n"
    assert proc.stderr == ""

"""dass.stm.engine: the fast engine gives pyfastspm's frames exactly (max abs diff 0).

Compared with ``process(..., engine="pyfastspm")``, which runs pyfastspm's own functions and is
itself checked against pyfastspm called directly in test_process.py; on both real FAST files
of the pyfastspm wheel and a synthetic movie, for the standard recipe and recipes with creep,
drift and filters.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from dass.stm import engine, open_fast
from dass.stm.process import Recipe, process
from dass.stm.synthetic import write_synthetic_fast


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def _recipe(channels, *steps, images=None):
    return Recipe.from_dict({"channels": channels, "images": images,
                             "steps": [{"name": n, "params": p} for n, p in steps]})


STANDARD = Recipe.standard()
CREEP_DRIFT = _recipe("udi", ("phase", {}), ("creep", {"mode": "bezier"}), ("interpolate", {}),
                      ("drift", {"stepsize": 4, "mode": "common"}), ("align_rows", {"method": "mean"}),
                      ("fix_zero", {}))
FILTERS = _recipe("udf", ("phase", {"auto": False}),
                  ("fft", {"notches": [[1000.0, 50.0]], "x_overtones": 3}),
                  ("interpolate", {"offset": 0.25}), ("destreak", {}),
                  ("align_rows", {"method": "median"}), ("level_plane", {}),
                  ("filter_2d", {"kind": "median", "pixel_width": 3}), images=[1, 4])
DOWN_ONLY = _recipe("di", ("phase", {}), ("creep", {"mode": "sin"}), ("interpolate", {}),
                    ("align_rows", {"method": "poly2"}), ("filter_2d", {"kind": "mean"}))
BACKWARD = _recipe("ub", ("interpolate", {}), ("align_rows", {}), ("filter_2d", {}), images=[0, 2])


def _both(path, recipe):
    with open_fast(path) as fast, _quiet():
        reference = process(fast, recipe, engine="pyfastspm")
        fast_one = process(fast, recipe, engine="dass")
    return reference, fast_one


def _assert_identical(reference, fast_one):
    assert reference.frames.shape == fast_one.frames.shape
    assert reference.frames.dtype == fast_one.frames.dtype == np.float32
    assert np.abs(reference.frames.astype(np.float64) - fast_one.frames).max() == 0.0
    np.testing.assert_array_equal(reference.frames, fast_one.frames)
    assert reference.labels == fast_one.labels
    assert fast_one.processing["engine"] == "dass" and reference.processing["engine"] == "pyfastspm"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_fast(tmp_path_factory.mktemp("engine") / "syn.h5", points=32, num_images=8)


@pytest.mark.parametrize("recipe", [STANDARD, CREEP_DRIFT, FILTERS, DOWN_ONLY, BACKWARD],
                         ids=["standard", "creep-drift", "filters", "down-only", "backward"])
def test_synthetic_movie_identical(synthetic, recipe):
    _assert_identical(*_both(synthetic, recipe))


@pytest.mark.parametrize("recipe", [STANDARD, CREEP_DRIFT, FILTERS], ids=["standard", "creep-drift", "filters"])
def test_old_real_file_identical(old_fast, recipe):
    reference, fast_one = _both(old_fast, recipe)
    _assert_identical(reference, fast_one)
    if recipe is STANDARD:
        assert fast_one.frames.shape == (136, 210, 105)


@pytest.mark.parametrize("recipe", [STANDARD, FILTERS], ids=["standard", "filters"])
def test_new_real_file_identical(new_fast, recipe):
    reference, fast_one = _both(new_fast, recipe)
    _assert_identical(reference, fast_one)
    if recipe is STANDARD:
        assert fast_one.frames.shape == (116, 392, 196)


def test_matrix_equals_pyfastspm_matrix():
    """The CSR matrix itself: same entries, same column order, same NaN rows."""
    from pyfastspm.artefact_removal.interpolate import _output_x_grid, _output_y_grid, get_interpolation_matrix

    ny, nx = 40, 20
    y, t1 = _output_y_grid(ny, nx)
    x, t2 = _output_x_grid(ny, nx)
    xnew, ynew = np.meshgrid(t2, t1)
    ynew = ynew + 0.3  # some grid points fall outside the measured points: NaN rows
    points = list(zip(y.flatten(), x.flatten()))
    grid = list(zip(ynew.flatten(), xnew.flatten()))
    with _quiet():
        reference = get_interpolation_matrix(points, grid)
    ours = engine.interpolation_matrix(np.array(points), np.array(grid))
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    np.testing.assert_array_equal(ours.indptr, reference.indptr)
    np.testing.assert_array_equal(ours.indices, reference.indices)
    np.testing.assert_array_equal(ours.data, reference.data)  # NaN == NaN for this check
    assert np.isnan(ours.data).any()


def test_matrices_are_cached_per_geometry():
    engine.clear_cache()
    first = engine.interpolation_matrices((24, 12), "udi")
    assert engine.interpolation_matrices((24, 12), "udi") is first
    assert engine.interpolation_matrices((24, 12), "udi", offset=0.5) is not first
    grid = engine._grids(24, 12, "udi", 0.0, None, 1.0, 1.0)  # noqa: SLF001 - the uncorrected grid
    y_up = grid[0][:, 0].reshape(24, 12)
    creep = (y_up * 0.99, y_up[:, ::-1] * 0.99)
    with_creep = engine.interpolation_matrices((24, 12), "udi", grid=creep)
    assert with_creep is not first
    assert engine.interpolation_matrices((24, 12), "udi", grid=(creep[0].copy(), creep[1].copy())) is with_creep
    uncached = engine.interpolation_matrices((24, 12), "udi", cache=False)
    assert uncached is not first
    np.testing.assert_array_equal(uncached[0].toarray(), first[0].toarray())  # NaN where NaN


def test_unknown_engine(synthetic):
    with pytest.raises(ValueError, match="engine 'fast' is unknown; use one of 'dass', 'pyfastspm'"):
        process(synthetic, STANDARD, engine="fast")


def test_stage_cache_gives_the_same_frames(synthetic):
    from dass.stm.process import StageCache, preview_frame

    cache = StageCache()
    with open_fast(synthetic) as fast, _quiet():
        full = process(fast, STANDARD, engine="pyfastspm")
        for image in (2, 5, 2):
            for channel in (0, 1):
                got = preview_frame(fast, STANDARD, image, channel, cache=cache)
                np.testing.assert_array_equal(got, full.frames[2 * image + channel])
        assert len(cache) == 2  # the time series after phase and fft, and the creep grid
        lighter = STANDARD.without("filter_2d").with_step("align_rows", method="mean")
        again = process(fast, lighter.replace(images=(3, 4)), cache=cache)
        reference = process(fast, lighter.replace(images=(3, 4)), engine="pyfastspm")
    np.testing.assert_array_equal(again.frames, reference.frames)
    assert again.processing["creep"] == reference.processing["creep"]
    assert again.processing["fft"] == reference.processing["fft"]

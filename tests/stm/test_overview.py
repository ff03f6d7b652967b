"""dass.stm.overview and dass.stm.service.process_with_fallback: the steps of the STM notebooks
(FAST overview, landing first look, the FAST-movie job's processing with its fallback), on synthetic FAST movies, checked against the
raw stream read with h5py and the layout the FAST module writes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from dass.stm.fast import FastFileError
from dass.stm.overview import describe_fast_file, fast_overview, frame_png
from dass.stm.service import process_with_fallback
from dass.stm.process import ProcessingError
from dass.stm.synthetic import write_synthetic_fast

POINTS, IMAGES = 32, 3


def _raw_forward_up(path, x_phase, y_phase, image):
    """The forward lines of the up sweep of ``image``, read as the FAST layout says: the stream
    rolled by ``x_phase + 2·X·y_phase``, reshaped to (images, 4·Y, X), even rows of the first 2·Y."""
    with h5py.File(path, "r") as h5:
        stream = h5["data"][()]
    movie = np.roll(stream, x_phase + 2 * POINTS * y_phase).reshape(IMAGES, 4 * POINTS, POINTS)
    return movie[image, : 2 * POINTS][0::2].astype(np.float64)


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast")
    plain = write_synthetic_fast(folder / "plain.h5", points=POINTS, num_images=IMAGES)
    phased = write_synthetic_fast(folder / "phased.h5", points=POINTS, num_images=IMAGES, x_phase=5, y_phase=3)
    return plain, phased


@pytest.mark.parametrize("which, phases", [(0, (0, 0)), (1, (5, 3))])
def test_fast_overview_frame_is_the_raw_forward_up_lines(movies, which, phases):
    path = movies[which]
    for image in range(IMAGES):
        overview = fast_overview(path, image)
        np.testing.assert_array_equal(overview.forward_up, _raw_forward_up(path, *phases, image))
    assert (overview.x_phase, overview.y_phase) == phases
    # the phases undo the roll the synthetic writer applied: both files hold the same images
    np.testing.assert_array_equal(fast_overview(movies[0], 1).forward_up, fast_overview(movies[1], 1).forward_up)


def test_fast_overview_record(movies):
    overview = fast_overview(movies[1], 2)
    record = overview.record("frame.png")
    assert record["samples"] == IMAGES * 4 * POINTS * POINTS and record["dtype"] == "int16"
    assert (record["x_points"], record["y_points"], record["images"]) == (POINTS, POINTS, IMAGES)
    assert (record["x_phase"], record["y_phase"]) == (5, 3)
    assert record["attributes"]["Scanner.X_Points"] == POINTS
    assert record["attributes"]["Acquisition.X_Phase"] == 5
    frame = record["frame"]
    assert frame["index"] == 2 and frame["png"] == "frame.png" and frame["shape"] == [POINTS, POINTS]
    assert (frame["min"], frame["max"]) == (overview.forward_up.min(), overview.forward_up.max())
    assert frame["x_interpolated"] is False
    json.dumps(record)  # JSON-able


def test_fast_overview_names_the_frame_range_and_bad_files(movies, tmp_path):
    with pytest.raises(ValueError, match=f"frame must be between 0 and {IMAGES - 1}, got {IMAGES}"):
        fast_overview(movies[0], IMAGES)
    with pytest.raises(ValueError, match="got -1"):
        fast_overview(movies[0], -1)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["data"] = np.zeros(8, np.int16)
    with pytest.raises(FastFileError, match="lacks attribute"):
        fast_overview(other)


def test_frame_png_scales_min_to_max(tmp_path):
    frame = np.array([[-2.0, 0.0], [2.0, 1.0]])
    image = frame_png(frame, tmp_path / "f.png")
    with Image.open(tmp_path / "f.png") as png:
        assert png.mode == "L" and np.asarray(png).tolist() == [[0, 128], [255, 191]]
    assert image.size == (2, 2)
    frame_png(np.ones((2, 2)), tmp_path / "flat.png")
    with Image.open(tmp_path / "flat.png") as png:
        assert np.asarray(png).max() == 0


def test_describe_fast_file_lists_attributes_and_images(movies):
    text = describe_fast_file(movies[0], label="p/stm/plain.h5").splitlines()
    assert text[0] == f"p/stm/plain.h5: /data has {IMAGES * 4 * POINTS * POINTS} samples"
    assert f"    Scanner.X_Points = {POINTS}" in text
    assert text[-1] == f"images in the stream: {IMAGES} of {4 * POINTS * POINTS} samples each"


def test_process_with_fallback_drops_creep_only_for_the_standard_recipe(tmp_path):
    # two images make four frames: the standard recipe's creep fit correlates frames 3 and 4
    folder = tmp_path / "one"
    write_synthetic_fast(folder / "two.h5", points=POINTS, num_images=2)
    said = []
    summary = process_with_fallback(folder, tmp_path / "out", recipe={}, frames="none", say=said.append)
    assert len(said) == 1 and said[0].startswith("creep correction is not possible here")
    assert [s["name"] for s in summary["recipe"]["steps"]] == ["phase", "fft", "interpolate", "align_rows", "filter_2d"]
    (entry,) = summary["files"]
    assert (tmp_path / "out" / entry["movie"]).is_file()
    # a recipe the user gave fails as it is
    with pytest.raises(ProcessingError) as err:
        process_with_fallback(folder, tmp_path / "out2", recipe={"channels": "udi", "steps": [
            {"name": "creep"}, {"name": "interpolate"}]}, frames="none", say=said.append)
    assert err.value.step == "creep" and len(said) == 1

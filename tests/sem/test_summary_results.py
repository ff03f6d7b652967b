"""dass.sem.summary and dass.sem.results: the steps of the SEM notebooks, data in, data out.

The notebooks themselves run headless in tests/test_service_notebooks.py; here each step is
checked on its own against numbers computed independently."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dass.data.session import Dataset
from dass.sem.checkpoint import ModelInfo
from dass.sem.classify import Outcome, Prediction
from dass.sem.results import (
    category_counts,
    classification_rows,
    model_lines,
    outcome_lines,
    plot_categories,
    plot_classified,
    write_classifications,
)
from dass.sem.summary import (
    contact_sheet,
    eight_bit,
    measure_images,
    open_image,
    pixel_statistics,
    summary_lines,
    write_csv,
)


def _folder_dataset(folder: Path) -> Dataset:
    return Dataset(id="p1/images", proposal="p1", name="images", url=folder.as_uri(), path=folder)


@pytest.fixture
def images(tmp_path):
    """A grey 8-bit PNG, a 16-bit TIFF, a palette PNG and a 1-bit PNG in one dataset."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    wide = (rng.integers(0, 4096, (20, 50)) + 100).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "a_grey.png")
    Image.fromarray(wide).save(tmp_path / "b_wide.tif")
    palette = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P")
    palette.save(tmp_path / "c_palette.png")
    Image.fromarray(np.eye(6, dtype=bool)).save(tmp_path / "d_bits.png")
    return _folder_dataset(tmp_path), grey, wide


# ---------------------------------------------------------------------------- summary


def test_eight_bit_keeps_8_bit_and_scales_the_rest_min_to_max():
    grey = np.array([[3, 200]], dtype=np.uint8)
    assert eight_bit(grey) is grey or np.array_equal(eight_bit(grey), grey)
    wide = np.array([[100, 1100, 2100]], dtype=np.uint16)
    assert eight_bit(wide).tolist() == [[0, 128, 255]] and eight_bit(wide).dtype == np.uint8
    floats = np.array([[-1.0, 0.0, 1.0]])
    before = floats.copy()
    assert eight_bit(floats).tolist() == [[0, 128, 255]]
    assert np.array_equal(floats, before)  # the input is not modified
    assert eight_bit(np.full((2, 3), 7, np.uint16)).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_eight_bit_keeps_three_colour_channels_or_the_grey_of_grey_alpha():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert eight_bit(rgba).shape == (2, 2, 3)
    grey_alpha = np.stack([np.full((2, 2), 9, np.uint8), np.full((2, 2), 255, np.uint8)], axis=-1)
    assert eight_bit(grey_alpha).tolist() == [[9, 9], [9, 9]]


def test_pixel_statistics_match_numpy():
    pixels = np.array([[0, 10], [20, 30]], dtype=np.uint16)
    assert pixel_statistics(pixels) == {"dtype": "uint16", "min": 0, "max": 30, "mean": 15.0, "std": 11.18}
    with pytest.raises(ValueError, match="without pixels"):
        pixel_statistics(np.zeros((0, 3)))


def test_open_image_turns_palette_and_bits_into_values(images):
    ds, grey, _ = images
    assert open_image(ds, "c_palette.png").mode == "RGB"
    assert open_image(ds, "c_palette.png", as_values=False).mode == "P"
    assert open_image(ds, "d_bits.png").mode == "L"
    assert np.array_equal(np.asarray(open_image(ds, "a_grey.png")), grey)


def test_measure_images_rows_and_thumbnails(images):
    ds, grey, wide = images
    rows, thumbnails = measure_images(ds, ["a_grey.png", "b_wide.tif"], thumbnail_px=16)
    assert [r["file"] for r in rows] == ["a_grey.png", "b_wide.tif"]
    assert rows[0] == {
        "file": "a_grey.png", "width": 40, "height": 30, "dtype": "uint8",
        "min": int(grey.min()), "max": int(grey.max()),
        "mean": round(float(grey.mean()), 3), "std": round(float(grey.std()), 3),
    }
    assert (rows[1]["width"], rows[1]["height"], rows[1]["dtype"]) == (50, 20, "uint16")
    assert (rows[1]["min"], rows[1]["max"]) == (int(wide.min()), int(wide.max()))
    assert [t.size for t in thumbnails] == [(16, 12), (16, 6)]  # aspect ratio kept
    assert all(t.mode == "L" for t in thumbnails)
    # a thumbnail no smaller than the image is the image's 8-bit view, the 16-bit one scaled
    _, (same,) = measure_images(ds, ["b_wide.tif"], thumbnail_px=64)
    expected = np.round((wide - float(wide.min())) * 255.0 / float(wide.max() - wide.min()))
    assert np.array_equal(np.asarray(same), expected.astype(np.uint8))
    with pytest.raises(ValueError, match="thumbnail_px"):
        measure_images(ds, ["a_grey.png"], thumbnail_px=0)


def test_summary_lines_and_csv(images, tmp_path):
    ds, _, _ = images
    rows, _ = measure_images(ds, ["a_grey.png", "b_wide.tif"])
    lines = summary_lines(rows).splitlines()
    assert lines[0].startswith("  1  a_grey.png: 40 x 30 uint8, min ")
    assert lines[1].startswith("  2  b_wide.tif: 50 x 20 uint16")
    write_csv(rows, tmp_path / "summary.csv")
    with open(tmp_path / "summary.csv", newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["file"] for r in read] == ["a_grey.png", "b_wide.tif"]
    assert list(read[0]) == ["file", "width", "height", "dtype", "min", "max", "mean", "std"]
    with pytest.raises(ValueError, match="no rows"):
        write_csv([], tmp_path / "empty.csv")


def test_contact_sheet_places_centred_numbered_thumbnails():
    thumbs = [Image.new("L", (20, 10), 255 - 40 * i) for i in range(5)]
    sheet = contact_sheet(thumbs, cell_px=32)
    columns = math.ceil(math.sqrt(5))
    assert sheet.size == (columns * 32, 2 * 32) and sheet.mode == "RGB"
    pixels = np.asarray(sheet)
    for i in range(5):
        left, top = (i % columns) * 32, (i // columns) * 32
        # a pixel of the thumbnail away from the number, centred: rows 11..20, columns 6..25
        assert tuple(pixels[top + 18, left + 20]) == (255 - 40 * i,) * 3
        assert tuple(pixels[top + 2, left + 20]) == (0, 0, 0)  # black above the thumbnail
        corner = pixels[top : top + 20, left : left + 20].astype(int)
        yellow = (corner[..., 0] > 150) & (corner[..., 1] > 150) & (corner[..., 2] < 100)
        assert yellow.any()  # the number, in yellow at the top left
    with pytest.raises(ValueError, match="at least one thumbnail"):
        contact_sheet([])


# ---------------------------------------------------------------------------- results

CLASSES = ["Nanowires", "Particles", "Tips"]


def _outcomes():
    return [
        Outcome("a.png", Prediction("Particles", 0.7, {"Nanowires": 0.1, "Particles": 0.7, "Tips": 0.2})),
        Outcome("b.tif", error="not an image"),
        Outcome("c.png", Prediction("Particles", 0.5123456789, {"Nanowires": 0.25, "Particles": 0.5123456789,
                                                                 "Tips": 0.2376543211})),
    ]


def _info(**trained_on):
    return ModelInfo(name="m1", architecture="resnet18", classes=CLASSES, input_size=64, trained_on=trained_on)


def test_model_lines_warn_about_synthetic_training_data():
    lines = model_lines(_info(url="s3://x", n_images=60, synthetic=True), "cpu").splitlines()
    assert lines[0] == "model m1 (resnet18, 64 px, on cpu)"
    assert lines[1] == "trained on s3://x (60 images)"
    assert lines[2].startswith("WARNING: this model was trained on SYNTHETIC images")
    assert len(model_lines(_info(url="s3://x", n_images=5), "cuda").splitlines()) == 2


def test_outcome_lines():
    assert outcome_lines(_outcomes()).splitlines() == [
        "a.png: Particles (70.0 %)", "b.tif: not classified: not an image", "c.png: Particles (51.2 %)",
    ]


def test_classification_rows_one_per_outcome_with_every_score():
    rows = classification_rows(_outcomes(), CLASSES)
    assert list(rows[0]) == ["file", "status", "category", "display_name", "certainty", "reason", *CLASSES]
    assert rows[0]["status"] == "ok" and rows[0]["display_name"] == "Particles" and rows[0]["Tips"] == 0.2
    assert rows[1] == {"file": "b.tif", "status": "error", "category": "", "display_name": "", "certainty": "",
                       "reason": "not an image", "Nanowires": "", "Particles": "", "Tips": ""}
    assert rows[2]["certainty"] == 0.512346 and rows[2]["Tips"] == 0.237654


def test_write_classifications_csv_and_json(tmp_path):
    csv_path, json_path = write_classifications(
        _outcomes(), _info(synthetic=True), tmp_path, dataset_id="p1/images", synthetic_data=True
    )
    with open(csv_path, newline="") as f:
        assert [r["file"] for r in csv.DictReader(f)] == ["a.png", "b.tif", "c.png"]
    answer = json.loads(json_path.read_text())
    assert answer["dataset"] == "p1/images" and answer["synthetic_data"] is True
    assert answer["model"]["name"] == "m1" and answer["model"]["synthetic"] is True
    assert [r["status"] for r in answer["results"]] == ["ok", "error", "ok"]
    with pytest.raises(ValueError, match="no classification outcomes"):
        write_classifications([], _info(), tmp_path, dataset_id="p1/images", synthetic_data=False)


def test_category_counts_in_class_order():
    assert category_counts(_outcomes(), CLASSES) == {"Nanowires": 0, "Particles": 2, "Tips": 0}


def test_plots_are_written(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import io

    import matplotlib.pyplot as plt

    buffers = []
    for value in (50, 200, 120):
        buf = io.BytesIO()
        Image.new("L", (40, 30), value).save(buf, format="PNG")
        buffers.append(buf.getvalue())
    fig = plot_classified(_outcomes(), buffers, tmp_path / "classified.png")
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["a.png\nParticles 70 %", "c.png\nParticles 51 %"]
    plt.close(fig)
    assert plot_classified([Outcome("x", error="bad")], [b""]) is None
    fig = plot_categories({"Nanowires": 1, "Particles": 3}, title="t", path=tmp_path / "categories.png")
    assert [p.get_width() for p in fig.axes[0].patches] == [1, 3]
    plt.close(fig)
    for name in ("classified.png", "categories.png"):
        with Image.open(tmp_path / name) as png:
            assert png.size[0] > 100

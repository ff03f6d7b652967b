"""dass.stm.still_widgets.ImageApp driven through its methods and widgets, on a real .sxm."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dass.data.session import Dataset
from dass.stm.nanonis import open_sxm
from dass.stm.still import align_rows, apply, fix_zero, plane_fit
from dass.stm.still_widgets import ImageApp, find_images


@pytest.fixture()
def dataset(tmp_path: Path, stm_sxm: Path) -> Dataset:
    root = tmp_path / "datasets" / "p1" / "stm"
    (root / "raw").mkdir(parents=True)
    shutil.copyfile(stm_sxm, root / "raw" / stm_sxm.name)
    (root / "raw" / "notes.txt").write_text("not an image")
    (root / "raw" / "x--1_1.I(V)_mtrx").write_bytes(b"curve, not an image")
    return Dataset(id="p1/stm", proposal="p1", name="stm", url=root.as_uri(), path=root)


def test_find_images_in_datasets(dataset: Dataset, stm_sxm: Path, tmp_path: Path) -> None:
    missing = Dataset(id="p1/gone", proposal="p1", name="gone", url="file:///nowhere",
                      path=tmp_path / "nowhere")
    found = find_images([dataset, missing])
    assert [label for label, _ in found] == [f"p1/stm/raw/{stm_sxm.name}"]


def test_app_loads_and_applies_steps(dataset: Dataset, stm_sxm: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    app = ImageApp(datasets=[dataset], progress=lambda *a: calls.append(a))
    assert app.raw is None
    app.file_select.value = app.file_select.options[1][1]  # as a user picking the file
    assert list(app.channel_select.options) == open_sxm(stm_sxm).channel_names
    assert app.channel_select.value == "Z"
    raw = open_sxm(stm_sxm).image("Z", "forward")
    np.testing.assert_array_equal(app.raw.data, raw.data)
    np.testing.assert_array_equal(app.processed.data, raw.data)  # nothing ticked

    app.plane.value = True
    app.rows.value = True
    app.zero.value = True
    assert app.steps() == [{"step": "plane_fit"}, {"step": "align_rows", "method": "median"},
                           {"step": "fix_zero"}]
    expected = fix_zero(align_rows(plane_fit(raw), method="median"))
    np.testing.assert_allclose(app.processed.data, expected.data)
    assert app.processed.data.min() == 0.0
    assert calls[-3:] == [(1, 3, "plane_fit"), (2, 3, "align_rows"), (3, 3, "fix_zero")]
    for view in (app.before_view, app.after_view):
        with Image.open(io.BytesIO(view.value)) as png:
            assert png.format == "PNG"

    app.row_method.value = "polynomial"
    app.row_order.value = 2
    app.notch.value = True
    backward = app.select("Current", "backward")
    assert backward.channel == "Current" and backward.direction == "backward"
    np.testing.assert_allclose(app.processed.data, apply(backward, app.steps()).data)
    assert app.processed.metadata["processing"][2]["step"] == "fft_notch"

    png = app.export_png(tmp_path / "out" / "scan")
    gsf = app.export_gsf(tmp_path / "out" / "scan.gsf")
    assert png.name == "scan.png" and png.read_bytes().startswith(b"\x89PNG")
    assert gsf.read_bytes().startswith(b"Gwyddion Simple Field 1.0\n")
    app.export_dir.value = str(tmp_path / "exports")
    app.png_button.click()
    assert (tmp_path / "exports" / f"{stm_sxm.stem}_Current_backward.png").is_file()


def test_app_errors_go_to_status(tmp_path: Path, stm_sxm: Path) -> None:
    app = ImageApp(datasets=[])
    with pytest.raises(ValueError, match="no image opened yet"):
        app.update()
    with pytest.raises(ValueError, match="nothing to export"):
        app.export_png(tmp_path / "x")
    cut = tmp_path / "cut.sxm"
    cut.write_bytes(stm_sxm.read_bytes()[:50_000])
    app.path_text.value = str(cut)
    app.open_button.click()
    assert "cut.sxm: truncated .sxm" in app.status.value
    app.path_text.value = str(tmp_path / "scan.tif")
    app.open_button.click()
    assert "not a still image this app opens" in app.status.value

"""dass.kmap.widgets: the KMAP notebook app, driven through its methods and buttons (no browser)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dass.data.session import Dataset
from dass.kmap.errors import KmapInputError

pytest.importorskip("ipywidgets")
pytest.importorskip("xsocs")

from dass.kmap.widgets import KmapApp, find_masters, qspace_projections  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A mounted-dataset folder holding a small synthetic scan (4 x 5 positions, 9 angles)."""
    from dass.kmap import synthetic

    root = tmp_path_factory.mktemp("ds") / "p1" / "kmap-demo"
    master, truth = synthetic.generate(root / "raw", shape=(4, 5), n_angles=9, frame_shape=(24, 24), seed=2,
                                       name="demo")
    ds = Dataset(id="p1/kmap-demo", proposal="p1", name="kmap-demo", url=f"file://{root}", path=root,
                 metadata={"title": "SYNTHETIC KMAP demo", "synthetic": True})
    return ds, master, truth


@pytest.fixture(scope="module")
def app(dataset, tmp_path_factory):
    ds, master, truth = dataset
    app = KmapApp(datasets=[ds], output_dir=tmp_path_factory.mktemp("app-out"))
    app.grid[0].value = app.grid[1].value = app.grid[2].value = 32
    app.run()
    return app


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def test_scan_choices_from_datasets(dataset, tmp_path):
    ds, master, _ = dataset
    assert find_masters(ds.path) == [master]
    assert find_masters(tmp_path / "nothing") == []
    app = KmapApp(datasets=[ds], output_dir=tmp_path)
    assert app.scan.options == (("p1/kmap-demo: raw/demo_master.h5", str(master)),)
    assert app.master_path() == master
    app.path_text.value = "/elsewhere/x_master.h5"
    assert str(app.master_path()) == "/elsewhere/x_master.h5"
    given = KmapApp(datasets=[], path=master, output_dir=tmp_path)
    assert given.scan.value == str(master)


def test_parameters_and_bad_controls(tmp_path):
    app = KmapApp(datasets=[], output_dir=tmp_path)
    with pytest.raises(KmapInputError, match="no scan chosen"):
        app.master_path()
    app.hkl.value = "2, 2, 4"
    app.lattice_a.value = 5.6
    app.use_roi.value = True
    for box, v in zip(app.roi, (0.0, 1.0, 0.5, 1.5)):
        box.value = v
    params = app.parameters()
    assert params["reference"] == {"hkl": [2, 2, 4], "lattice_a": 5.6}
    assert params["roi"] == [0.0, 1.0, 0.5, 1.5] and params["grid"] == [40, 40, 40]
    app.ref_kind.value = "median"
    assert app.parameters()["reference"] is None
    app.ref_kind.value = "reflection"
    app.hkl.value = "0 0 x"
    with pytest.raises(KmapInputError, match="three integers"):
        app.parameters()
    # the Run button reports the error in the status line instead of raising
    app.run_button.click()
    assert "no scan chosen" in app.status.value
    with pytest.raises(KmapInputError, match="press Run first"):
        app.select(0, 0)
    with pytest.raises(KmapInputError, match="press Run first"):
        app.export("csv")


def test_run_shows_maps(app, dataset):
    _, _, truth = dataset
    assert app.progress.value == 100
    assert "20/20 positions ok" in app.status.value and "SYNTHETIC" in app.status.value
    assert app.maps.shape == truth.shape
    np.testing.assert_allclose(app.maps.strain, truth.strain, atol=1e-4)
    w, h = _png_size(app.maps_image.value)
    assert w > h > 100
    assert [label for label, _ in app.x_slider.options] == [f"{v:g}" for v in truth.x]
    assert len(app.y_slider.options) == truth.shape[0]


def test_select_shows_projections_and_fit(app, dataset):
    _, _, truth = dataset
    info = app.select(3, 2)
    index = 2 * truth.shape[1] + 3
    assert info["index"] == index and info["x"] == truth.x[3] and info["y"] == truth.y[2]
    np.testing.assert_allclose(info["center"], app.fit.center[index])
    for d in range(3):
        axis, proj, curve = info["axes"][d], info["projections"][d], info["curves"][d]
        assert proj.shape == axis.shape == curve.shape
        bin_width = axis[1] - axis[0]
        # the projection peaks where the truth put the peak, and so does the fitted curve
        assert abs(axis[np.argmax(proj)] - truth.q[2, 3, d]) <= 1.5 * bin_width
        assert abs(axis[np.argmax(curve)] - truth.q[2, 3, d]) <= 1.5 * bin_width
    assert info["sums"][0].shape == (axis.size, axis.size)
    assert _png_size(info["image"])[0] > 300
    assert "strain" in app.point_info.value
    # moving the sliders selects another position
    app.x_slider.value = 1
    app.y_slider.value = 3
    assert app.selected["index"] == 3 * truth.shape[1] + 1
    with pytest.raises(KmapInputError, match="outside"):
        app.select(5, 0)
    with pytest.raises(KmapInputError, match="out of range"):
        qspace_projections(app.qspace_path, 20)


def test_export_buttons(app):
    paths = app.export("csv")
    assert paths[0].read_text().splitlines()[0].startswith("x,y,qx,qy,qz")
    app.export_buttons["png"].click()
    assert "demo_strain.png" in app.export_status.value
    h5 = app.export("hdf5")[0]
    import h5py

    with h5py.File(h5, "r") as f:
        assert f["entry/strain/x"].attrs["units"] == "um"
    with pytest.raises(KmapInputError, match="unknown export"):
        app.export("xlsx")


def test_mask_normalizer_thresholds_and_engine_controls(dataset, tmp_path):
    ds, master, truth = dataset
    app = KmapApp(datasets=[ds], output_dir=tmp_path / "out")
    assert ("mon", "mon") in app.normalizer.options  # the scan's counters are offered
    mask = np.zeros((24, 24), np.uint8)
    mask[0] = 1
    np.save(tmp_path / "mask.npy", mask)
    app.mask_path.value = str(tmp_path / "mask.npy")
    app.normalizer.value = "mon"
    app.min_height.value = "0.5"
    app.strain_min.value, app.strain_max.value = "-0.01", "0.01"
    app.engine.value = "xsocs"
    params = app.parameters()
    assert params["mask"] == str(tmp_path / "mask.npy") and params["normalizer"] == "mon"
    assert params["min_height"] == 0.5 and params["max_width"] is None
    assert params["strain_range"] == (-0.01, 0.01) and params["engine"] == "xsocs"
    app.grid[0].value = app.grid[1].value = app.grid[2].value = 20
    summary = app.run()
    assert summary["parameters"]["normalizer"] == "mon" and summary["parameters"]["masked_pixels"] == 24
    assert summary["parameters"]["engine"] == "xsocs" and summary["parameters"]["min_height"] == 0.5
    app.strain_max.value = ""
    with pytest.raises(KmapInputError, match="both strain min and strain max"):
        app.parameters()
    app.strain_max.value = "big"
    with pytest.raises(KmapInputError, match="type a number"):
        app.parameters()

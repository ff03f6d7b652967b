"""dass.kmap.qspace / dass.kmap.fit: same numbers as xsocs called directly, and the truth."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from xsocs.process.fit import BackgroundTypes, FitTypes, PeakFitter
from xsocs.process.qspace import QSpaceConverter, kmap_2_qspace

from dass.kmap import KmapInputError, fit, qspace

GRID = (28, 28, 28)
DATASETS = ("Data/qspace", "Data/histo", "Data/qx", "Data/qy", "Data/qz", "Data/sample_x",
            "Data/sample_y", "Data/qspace_sum")


def _datasets(path):
    with h5py.File(path) as h5:
        names = []
        h5.visit(names.append)
        return {n: h5[n][()] for n in names if isinstance(h5[n], h5py.Dataset)}


def assert_same_qspace(ours, theirs):
    a, b = _datasets(ours), _datasets(theirs)
    for name in DATASETS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert set(a) == set(b)
    for name in a:
        if isinstance(a[name], np.ndarray) and a[name].dtype.kind in "iuf":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def converted(small_scan, tmp_path_factory):
    """(dass q-space file, xsocs q-space file) of the small scan, default parameters."""
    master, _ = small_scan
    out = tmp_path_factory.mktemp("qspace")
    ours = qspace.convert(master, out / "dass.h5", grid=GRID, n_proc=1)
    kmap_2_qspace(str(master), str(out / "xsocs.h5"), list(GRID), n_proc=1)
    return ours, out / "xsocs.h5"


def test_qspace_equals_xsocs(converted):
    assert_same_qspace(*converted)


def test_qspace_options_equal_xsocs(small_scan, tmp_path):
    """ROI in sample coordinates, mask, median filter and normalizer: same as xsocs."""
    master, _ = small_scan
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, :2] = 1
    roi = (0.4, 2.6, 0.4, 2.1)
    seen: list[float] = []
    ours = qspace.convert(master, tmp_path / "dass.h5", grid=(20, 22, 24), roi=roi,
                          mask=mask, medfilt=(3, 3), normalizer="mon", n_proc=2,
                          progress=seen.append)
    converter = QSpaceConverter(str(master), qspace_dims=[20, 22, 24], medfilt_dims=[3, 3],
                                output_f=str(tmp_path / "xsocs.h5"), roi=list(roi))
    converter.normalizer = "mon"
    converter.mask = mask
    converter.n_proc = 2
    converter.convert()
    assert converter.status == QSpaceConverter.DONE
    assert_same_qspace(ours, tmp_path / "xsocs.h5")
    with h5py.File(ours) as h5:
        x = h5["Data/sample_x"][()]
        y = h5["Data/sample_y"][()]
    assert ((x >= 0.4) & (x <= 2.6) & (y >= 0.4) & (y <= 2.1)).all() and len(x) == 5 * 4
    assert seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.parametrize(
    "method, background",
    [("gaussian", "none"), ("gaussian", "constant"), ("centroid", "snip"),
     ("centroid", "none")],
)
def test_fit_equals_xsocs(converted, tmp_path, method, background):
    qfile, _ = converted
    ours = fit.fit(qfile, tmp_path / "fit.h5", method=method, background=background)
    code = FitTypes.GAUSSIAN if method == "gaussian" else FitTypes.CENTROID
    bg = {"none": BackgroundTypes.NONE, "constant": BackgroundTypes.CONSTANT,
          "snip": BackgroundTypes.SNIP}[background]
    theirs = PeakFitter(str(qfile), fit_type=code, background=bg, n_proc=1).peak_fit()
    key = "Center" if method == "gaussian" else "COM"
    for axis in range(3):
        np.testing.assert_array_equal(ours.center[:, axis], theirs.get_results(axis, key))
        np.testing.assert_array_equal(ours.status[:, axis] == 0,
                                      theirs.get_results(axis, "Status"))
        for name in theirs.available_result_names:
            if name != "Status":
                np.testing.assert_array_equal(ours.raw[name][:, axis],
                                              theirs.get_results(axis, name))
    np.testing.assert_array_equal(ours.x, theirs.sample_x)
    np.testing.assert_array_equal(ours.y, theirs.sample_y)
    assert ours.method == method and ours.background == background
    # the file is xsocs' own: reading it back gives the same numbers
    back = fit.read_fit(tmp_path / "fit.h5")
    np.testing.assert_array_equal(back.center, ours.center)
    np.testing.assert_array_equal(back.status, ours.status)
    assert back.method == method and back.background == background


def test_fit_roi_and_processes_equal_xsocs(converted, tmp_path):
    qfile, _ = converted
    with h5py.File(qfile) as h5:
        qx, qy, qz = h5["Data/qx"][()], h5["Data/qy"][()], h5["Data/qz"][()]
    roi = ((qx[3], qx[-4]), (qy[2], qy[-3]), (qz[4], qz[-2]))
    seen: list[float] = []
    ours = fit.fit(qfile, tmp_path / "fit.h5", roi=roi, n_proc=2, progress=seen.append)
    theirs = PeakFitter(str(qfile), n_proc=1,
                        roi_indices=[[3, len(qx) - 3], [2, len(qy) - 2], [4, len(qz) - 1]]
                        ).peak_fit()
    for axis in range(3):
        np.testing.assert_array_equal(ours.center[:, axis], theirs.get_results(axis, "Center"))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 10


def test_fitted_q_matches_truth(small_scan, converted, tmp_path):
    """Gaussian fit recovers the generator's |q| (strain) and q direction (tilts)."""
    _, truth = small_scan
    result = fit.fit(converted[0], tmp_path / "fit.h5", method="gaussian")
    assert result.ok_mask().all()
    q_true = truth.q.reshape(-1, 3)
    # positions come in the generator's order (x fast)
    np.testing.assert_array_equal(result.x, np.tile(truth.x, truth.shape[0]))
    strain = truth.q0 / result.q_norm - 1.0
    rms = np.sqrt(np.mean((strain - truth.strain.ravel()) ** 2))
    assert rms <= 5e-5, rms
    cosang = (result.center * q_true).sum(1) / (result.q_norm * np.linalg.norm(q_true, axis=1))
    angle_deg = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
    assert angle_deg.max() <= 0.002, angle_deg.max()
    # the strained island stands out: fitted strain inside minus outside ~ 1e-3
    inside = truth.strain.ravel() > 6e-4
    step = strain[inside].mean() - strain[~inside].mean()
    assert step == pytest.approx(truth.strain.ravel()[inside].mean()
                                 - truth.strain.ravel()[~inside].mean(), abs=5e-5)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"grid": (10, 10)}, "grid"),
        ({"grid": (10, 1, 10)}, "grid"),
        ({"roi": (100.0, 200.0, 0.0, 1.0)}, "roi"),
        ({"roi": (2.0, 1.0, 0.0, 1.0)}, "roi"),
        ({"mask": np.zeros((16, 16))}, "mask"),
        ({"mask": np.ones((32, 32))}, "mask"),
        ({"normalizer": "monitor2"}, "normalizer"),
        ({"medfilt": (0, 3)}, "medfilt"),
        ({"n_proc": 0}, "n_proc"),
    ],
)
def test_convert_bad_parameters(small_scan, tmp_path, kwargs, field):
    master, _ = small_scan
    args = {"grid": (10, 10, 10), **kwargs}
    with pytest.raises(KmapInputError) as err:
        qspace.convert(master, tmp_path / "q.h5", **args)
    assert err.value.field == field
    assert not (tmp_path / "q.h5").exists()  # refused before any work


def test_convert_refuses_to_overwrite(converted, small_scan):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        qspace.convert(small_scan[0], converted[0], grid=GRID)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"method": "lorentz"}, "method"), ({"background": "linear"}, "background"),
     ({"roi": ((0, 1), (0, 1))}, "roi"), ({"roi": ((9, 10), (9, 10), (9, 10))}, "roi")],
)
def test_fit_bad_parameters(converted, tmp_path, kwargs, field):
    with pytest.raises(KmapInputError) as err:
        fit.fit(converted[0], tmp_path / "f.h5", **kwargs)
    assert err.value.field == field
    assert not (tmp_path / "f.h5").exists()


def test_fit_bad_files(tmp_path, small_scan):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(KmapInputError, match="not an HDF5 file"):
        fit.fit(text, tmp_path / "f.h5")
    with pytest.raises(KmapInputError, match="not found"):
        fit.fit(tmp_path / "missing.h5", tmp_path / "f.h5")
    with pytest.raises(KmapInputError, match="not an xsocs q-space file"):
        fit.fit(small_scan[0], tmp_path / "f.h5")  # a master file, not a q-space file
    with pytest.raises(KmapInputError, match="not an HDF5 file"):
        fit.read_fit(text)

"""dass.stm.still: corrections on constructed (synthetic) images with known answers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from dass.stm.errors import StepError
from dass.stm.still import (
    StillImage,
    align_rows,
    apply,
    before_after_png,
    fft_notch,
    find_periodic_peaks,
    fix_zero,
    gsf_bytes,
    plane_fit,
    png_bytes,
    validate_steps,
    write_gsf,
)

SYNTH = {"synthetic": True}


def _surface(rows: int = 64, cols: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth, non-periodic synthetic 'surface' (a few Gaussian bumps)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    out = np.zeros((rows, cols))
    for _ in range(5):
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        out += rng.uniform(0.5, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 40.0)
    return out


def _image(data: np.ndarray) -> StillImage:
    return StillImage(data, channel="Z", unit="m", direction="forward",
                      pixel_size=(1e-10, 1e-10), metadata=SYNTH)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("shape", [(16, 16), (20, 33)])
def test_plane_fit_removes_tilt(shape: tuple[int, int], dtype: type) -> None:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    tilted = (7 + 2 * x - 3 * y).astype(dtype)
    image = _image(tilted)
    out = plane_fit(image)
    assert np.abs(out.data).max() < 1e-9
    np.testing.assert_array_equal(image.data, tilted)  # input untouched
    assert out.metadata["processing"] == [{"step": "plane_fit"}]
    assert out.pixel_size == image.pixel_size and out.channel == "Z"


def test_plane_fit_keeps_features_and_ignores_nan() -> None:
    surface = _surface()
    y, x = np.mgrid[0:64, 0:80]
    data = surface + 0.05 * x + 0.02 * y
    data[3, 4] = np.nan
    out = plane_fit(_image(data))
    assert np.isnan(out.data[3, 4])
    # the residual differs from the surface only by a plane (its own best fit)
    rest = out.data - surface
    good = np.isfinite(rest)
    design = np.column_stack([np.ones(good.sum()), x[good], y[good]])
    coef, *_ = np.linalg.lstsq(design, rest[good], rcond=None)
    assert np.abs(rest[good] - design @ coef).max() < 1e-9


@pytest.mark.parametrize("method", ["mean", "median"])
def test_align_rows_removes_offsets(method: str) -> None:
    rng = np.random.default_rng(1)
    row = rng.normal(size=50)
    offsets = rng.normal(scale=10.0, size=(30, 1))
    data = np.tile(row, (30, 1)) + offsets
    out = align_rows(_image(data), method=method)
    centre = np.mean(row) if method == "mean" else np.median(row)
    np.testing.assert_allclose(out.data, np.tile(row - centre, (30, 1)), atol=1e-9)
    assert out.metadata["processing"][-1] == {"step": "align_rows", "method": method}


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_align_rows_polynomial(order: int) -> None:
    rng = np.random.default_rng(2)
    x = np.linspace(-1, 1, 40)
    rows = [np.polyval(rng.normal(size=order + 1), x) for _ in range(12)]
    out = align_rows(_image(np.array(rows)), method="polynomial", order=order)
    assert np.abs(out.data).max() < 1e-9
    assert out.metadata["processing"][-1]["order"] == order


def test_align_rows_errors() -> None:
    image = _image(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="method 'mode' is unknown"):
        align_rows(image, method="mode")
    with pytest.raises(ValueError, match="order 5 must be between 0 and 4"):
        align_rows(image, method="polynomial", order=5)
    with pytest.raises(TypeError, match="expected a StillImage"):
        align_rows(np.zeros((4, 5)))  # type: ignore[arg-type]


def test_fix_zero() -> None:
    data = _surface() - 3.5
    out = fix_zero(_image(data))
    assert out.data.min() == 0.0
    np.testing.assert_allclose(out.data, data - data.min())


def test_fft_notch_given_peak_removes_sinusoid() -> None:
    rows, cols = 64, 80
    y, x = np.mgrid[0:rows, 0:cols]
    surface = _surface(rows, cols)
    noise = 0.4 * np.sin(2 * np.pi * (5 * y / rows + 12 * x / cols) + 0.3)
    out = fft_notch(_image(surface + noise), peaks=[(5, 12)], radius=0.5)
    # an on-grid sinusoid sits in exactly two bins: removing them removes it completely,
    # apart from the surface's own (tiny) content in those bins
    spec = np.fft.fft2(surface)
    spec[5, 12] = spec[-5, -12] = 0
    np.testing.assert_allclose(out.data, np.fft.ifft2(spec).real, atol=1e-9)
    assert np.abs(out.data - surface).max() < 0.05 * np.abs(noise).max()
    assert out.metadata["processing"][-1] == {"step": "fft_notch", "peaks": [[5, 12]], "radius": 0.5}


def _noisy_surface(rows: int, cols: int, seed: int) -> np.ndarray:
    """A synthetic surface plus a little white (non-periodic) measurement noise."""
    return _surface(rows, cols, seed) + np.random.default_rng(seed).normal(scale=0.01, size=(rows, cols))


def test_fft_notch_automatic_finds_the_noise() -> None:
    rows, cols = 64, 64
    y, x = np.mgrid[0:rows, 0:cols]
    surface = _noisy_surface(rows, cols, seed=3)
    noise = 0.3 * np.sin(2 * np.pi * (-7 * x / cols + 9 * y / rows))
    image = _image(surface + noise)
    peaks = find_periodic_peaks(image, count=1)
    assert peaks == [(9, -7)]
    out = fft_notch(image, count=1)
    residual = out.data - surface
    assert np.sqrt(np.mean(residual**2)) < 0.1 * np.sqrt(np.mean(noise**2))
    # the recorded step replays identically
    again = apply(image, out.metadata["processing"])
    np.testing.assert_allclose(again.data, out.data)


def test_fft_notch_off_grid_frequency() -> None:
    rows, cols = 64, 80
    y, x = np.mgrid[0:rows, 0:cols]
    surface = _noisy_surface(rows, cols, seed=5)
    noise = 0.2 * np.sin(2 * np.pi * (3.3 * y / rows - 7.4 * x / cols))
    image = _image(surface + noise)
    assert find_periodic_peaks(image, count=1) == [(3, -7)]  # the nearest frequency bin
    out = fft_notch(image, count=1, radius=2.5)
    before = np.sqrt(np.mean((image.data - surface) ** 2))
    after = np.sqrt(np.mean((out.data - surface) ** 2))
    assert after < 0.5 * before  # leakage of an off-grid frequency reaches beyond the disc


def test_fft_notch_nothing_periodic() -> None:
    image = _image(_noisy_surface(64, 80, seed=4))
    assert find_periodic_peaks(image) == []
    out = fft_notch(image)
    assert out.metadata["processing"][-1]["peaks"] == []
    np.testing.assert_allclose(out.data, image.data, atol=1e-12)
    with pytest.raises(ValueError, match=r"peaks\[0\] must be a pair"):
        fft_notch(image, peaks=[(1, 2, 3)])
    with pytest.raises(ValueError, match="radius must be a positive"):
        fft_notch(image, peaks=[], radius=0)


def test_apply_step_list_and_progress() -> None:
    y, x = np.mgrid[0:32, 0:40]
    data = _surface(32, 40) + 0.1 * x + np.arange(32)[:, None] * 0.0
    steps = [{"step": "plane_fit"}, {"step": "align_rows", "method": "polynomial", "order": 1},
             {"step": "fix_zero"}]
    seen: list[tuple[int, int, str]] = []
    out = apply(_image(data), json.loads(json.dumps(steps)), progress=lambda *a: seen.append(a))
    expected = fix_zero(align_rows(plane_fit(_image(data)), method="polynomial", order=1))
    np.testing.assert_array_equal(out.data, expected.data)
    assert seen == [(1, 3, "plane_fit"), (2, 3, "align_rows"), (3, 3, "fix_zero")]
    assert out.metadata["processing"] == steps
    assert out.metadata["synthetic"] is True


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("plane_fit", "must be a list"),
        ([["plane_fit"]], "step 0 must be a dict"),
        ([{"step": "plane_fit"}, {"step": "blur"}], "step 1: 'step' is 'blur'; use one of"),
        ([{}], "step 0: 'step' is None"),
        ([{"step": "align_rows", "methd": "mean"}], "unknown option 'methd'; allowed: method, order"),
        ([{"step": "align_rows", "method": "mode"}], "option 'method' is 'mode'"),
        ([{"step": "align_rows", "order": 1.5}], "option 'order' must be a whole number"),
        ([{"step": "fft_notch", "peaks": [[1]]}], "option 'peaks' must be a list of"),
        ([{"step": "fft_notch", "radius": "2"}], "option 'radius' must be a finite number"),
        ([{"step": "fix_zero", "to": 1}], "unknown option 'to'; allowed: none"),
    ],
)
def test_validate_steps_errors(steps: object, message: str) -> None:
    with pytest.raises(StepError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate_steps(steps)


def test_still_image_validation() -> None:
    with pytest.raises(ValueError, match="non-empty 2-D"):
        StillImage(np.zeros(5))
    with pytest.raises(ValueError, match="numeric 2-D"):
        StillImage([["a", "b"]])
    with pytest.raises(ValueError, match="pixel_size must be two positive"):
        StillImage(np.zeros((2, 2)), pixel_size=(0, 1e-9))
    assert StillImage(np.zeros((2, 3)), pixel_size=(1e-9, 2e-9)).size == pytest.approx((3e-9, 4e-9))
    assert _image(np.zeros((2, 2))).title == "synthetic Z forward (m)"


def test_figures_are_png() -> None:
    before = _image(_surface())
    after = plane_fit(before)
    for blob in (before_after_png(before, after), png_bytes(after)):
        with Image.open(io.BytesIO(blob)) as png:
            assert png.format == "PNG" and png.size[0] > 100


def test_gsf_round_trip(tmp_path) -> None:
    image = _image(_surface(10, 12))
    blob = gsf_bytes(image)
    end = blob.index(b"\0")
    header = dict(line.split(" = ", 1) for line in blob[:end].decode("ascii").splitlines()[1:])
    assert blob.startswith(b"Gwyddion Simple Field 1.0\n")
    assert (int(header["XRes"]), int(header["YRes"])) == (12, 10)
    assert float(header["XReal"]) == pytest.approx(12e-10)
    assert header["ZUnits"] == "m" and header["Title"].startswith("synthetic")
    start = len(blob) - 4 * 120
    assert start % 4 == 0 and set(blob[end:start]) == {0} and 1 <= start - end <= 4
    values = np.frombuffer(blob[start:], dtype="<f4").reshape(10, 12)
    np.testing.assert_allclose(values, image.data.astype(np.float32))
    path = write_gsf(image, tmp_path / "out")
    assert path.name == "out.gsf" and path.read_bytes() == blob

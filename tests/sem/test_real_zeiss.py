"""Tests on the two real Zeiss SmartSEM TIFFs shipped in hyperspy 1.7.6."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from dass.sem.databar import crop_data_bar, detect_data_bar, preprocess
from dass.sem.io import read_sem

# Seen by eye in test-artifacts/zeiss_*_bar.png: the bar begins with a black
# one-pixel separator line, then the white strip with "EHT = ...".
BAR_ROW = {"1k": 691, "512": 350}


def test_metadata_1k(zeiss_samples):
    sem = read_sem(zeiss_samples["1k"])
    md = sem.metadata
    assert sem.vendor == "zeiss"
    assert sem.image.shape == (768, 1024) and sem.image.dtype == np.float32
    assert md["accelerating_voltage"] == {"value": 25.0, "unit": "kV"}
    assert md["working_distance"] == {"value": pytest.approx(14.808), "unit": "mm"}
    assert md["magnification"] == {"value": 105.0, "unit": "x"}
    assert md["detector"] == "HE-SE2"
    assert md["datetime"] == "2015-12-23T09:40:32"
    assert md["instrument_serial"] == "Merlin-61-08"
    assert md["probe_current"]["value"] == pytest.approx(1.0)
    assert md["chamber_pressure"] == {"value": pytest.approx(1.87e-4), "unit": "Pa"}
    assert md["gun_pressure"] == {"value": pytest.approx(8.69e-8), "unit": "Pa"}
    # 1024 wide: the width rule and ap_pixel_size (2.615 µm) agree
    assert md["pixel_size"]["unit"] == "nm"
    assert md["pixel_size"]["value"] == pytest.approx(2614.514)
    assert sem.raw_metadata["ap_pixel_size"] == ("Pixel Size", 2.615, "µm")


def test_metadata_512(zeiss_samples):
    sem = read_sem(str(zeiss_samples["512"]))
    md = sem.metadata
    assert sem.image.shape == (384, 512)
    assert md["accelerating_voltage"] == {"value": 5.0, "unit": "kV"}
    assert md["working_distance"]["value"] == pytest.approx(3.9)
    assert md["magnification"] == {"value": 50000.0, "unit": "x"}  # stored as '50.00 K X'
    assert md["detector"] == "InLens"
    assert md["datetime"] == "2018-09-25T08:20:42"
    assert md["instrument_serial"] == "ULTRA 55-36-06"
    # width rule md[''][3] * 1024 / 512, not ap_pixel_size (5.825 nm, wrong here)
    assert sem.raw_metadata["ap_pixel_size"] == ("Pixel Size", 5.825, "nm")
    assert sem.raw_metadata[""][3] == pytest.approx(5.824988e-09)
    assert md["pixel_size"] == {"value": pytest.approx(11.649976), "unit": "nm"}


@pytest.mark.parametrize("key", ["1k", "512"])
def test_palette_applied(zeiss_samples, key):
    with tifffile.TiffFile(zeiss_samples[key]) as tif:
        page = tif.pages.first
        assert page.photometric == 3  # palette image
        indices, colormap = page.asarray(), page.colormap
    rgb = colormap.T[indices] / 65535.0  # apply the palette
    expected = (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float32)
    grey = (colormap[0] == colormap[1]) & (colormap[1] == colormap[2])
    non_grey_used = np.isin(indices, np.flatnonzero(~grey))
    if key == "512":
        # this palette is not a grey ramp: some indices are coloured (e.g. 9 -> pure red)
        assert not grey.all() and non_grey_used.any()
        assert not np.allclose(expected[non_grey_used], indices[non_grey_used] / 255.0, atol=0.02)
    sem = read_sem(zeiss_samples[key])
    np.testing.assert_allclose(sem.image, expected, atol=1e-6)
    assert 0.0 <= sem.image.min() and sem.image.max() <= 1.0


@pytest.mark.parametrize("key", ["1k", "512"])
def test_data_bar_detected_and_cropped(zeiss_samples, artifacts, key):
    sem = read_sem(zeiss_samples[key])
    row = detect_data_bar(sem.image)
    h = sem.image.shape[0]
    # artifact for visual checking: image with the detected row marked in red
    rgb = np.repeat((sem.image[..., None] * 255).astype(np.uint8), 3, axis=2)
    rgb[row, :, :] = (255, 0, 0)
    Image.fromarray(rgb[max(0, row - 60) :]).save(artifacts / f"zeiss_{key}_bar.png")
    assert row is not None and abs(row - BAR_ROW[key]) <= 3
    assert 0.08 <= (h - row) / h <= 0.11
    before = sem.image.copy()
    cropped = crop_data_bar(sem.image)
    assert cropped.shape == (row, sem.image.shape[1])
    assert np.array_equal(sem.image, before)
    assert detect_data_bar(cropped) is None
    x = preprocess(sem.image, 224)
    assert x.shape == (224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x, preprocess(cropped, 224, crop=False))


def test_read_from_bytes_and_fileobj(zeiss_samples):
    data = zeiss_samples["512"].read_bytes()
    a = read_sem(data)
    with open(zeiss_samples["512"], "rb") as fh:
        b = read_sem(fh)
    assert a.source == "<bytes>" and b.source.endswith("512pix.tif")
    assert a.metadata == b.metadata
    np.testing.assert_array_equal(a.image, b.image)


def test_read_fsspec_url(zeiss_samples):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/sem/zeiss.tif", zeiss_samples["1k"].read_bytes())
    sem = read_sem("memory://sem/zeiss.tif")
    assert sem.source == "memory://sem/zeiss.tif"
    assert sem.metadata["instrument_serial"] == "Merlin-61-08"


def test_truncated_real_tiff(zeiss_samples):
    from dass.sem.io import SemReadError

    data = zeiss_samples["1k"].read_bytes()
    with pytest.raises(SemReadError, match="corrupt TIFF"):
        read_sem(data[:5000])

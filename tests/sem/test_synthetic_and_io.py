"""Synthetic generator, data bar on synthetic images, PNG/JPEG reading, bad inputs."""

from __future__ import annotations

import io
import json
import struct
import zlib

import fsspec
import numpy as np
import pytest
import tifffile
from PIL import Image

from dass.sem.categories import CATEGORIES, CATEGORY_IDS, category, display_name
from dass.sem.databar import crop_data_bar, detect_data_bar, preprocess
from dass.sem.io import SemReadError, decode_bytes, read_sem, to_grayscale
from dass.sem.synthetic import data_bar_row, generate, write_dataset


def test_categories():
    assert CATEGORY_IDS == (
        "Biological", "Fibres", "Films_Coated_Surface", "MEMS_devices_and_electrodes", "Nanowires",
        "Particles", "Patterned_surface", "Porous_Sponge", "Powder", "Tips",
    )
    assert display_name("MEMS_devices_and_electrodes") == "MEMS devices and electrodes"
    assert display_name("Films_Coated_Surface") == "Films and coated surfaces"
    assert display_name("Porous_Sponge") == "Porous sponge"
    assert len({c.name for c in CATEGORIES}) == 10
    with pytest.raises(ValueError, match="use one of"):
        category("porous")


@pytest.mark.parametrize("cid", CATEGORY_IDS)
@pytest.mark.parametrize("size", [(384, 512), (256, 256)])
def test_synthetic_bar_detected(cid, size):
    img = generate(cid, size=size, seed=7)
    assert img.shape == size and img.dtype == np.uint8
    row = detect_data_bar(img)
    assert row is not None and abs(row - data_bar_row(size[0])) <= 2
    assert detect_data_bar(crop_data_bar(img)) is None
    assert detect_data_bar(generate(cid, size=size, seed=7, data_bar=False)) is None


@pytest.mark.parametrize("cid", CATEGORY_IDS)
def test_synthetic_deterministic(cid):
    a = generate(cid, size=(96, 128), seed=3)
    assert np.array_equal(a, generate(cid, size=(96, 128), seed=3))
    assert not np.array_equal(a, generate(cid, size=(96, 128), seed=4))


def test_synthetic_classes_differ():
    imgs = [preprocess(generate(c, size=(192, 256), seed=0), 64) for c in CATEGORY_IDS]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.abs(imgs[i] - imgs[j]).mean() > 0.03, (CATEGORY_IDS[i], CATEGORY_IDS[j])


def test_synthetic_bad_args():
    with pytest.raises(ValueError, match="use one of"):
        generate("Spheres")
    with pytest.raises(ValueError, match="at least"):
        generate("Tips", size=(8, 8))


def test_write_dataset_marks_synthetic():
    fs = fsspec.filesystem("memory")
    counts = write_dataset(fs, "/synth-ds", per_class=2, size=(64, 96), seed=1)
    assert counts == {c: 2 for c in CATEGORY_IDS}
    assert fs.cat("/synth-ds/README.txt").startswith(b"SYNTHETIC")
    meta = json.loads(fs.cat("/synth-ds/metadata.json"))
    assert meta["synthetic"] is True and meta["data_bar_row"] == data_bar_row(64)
    png = fs.cat("/synth-ds/Tips/1.png")
    assert Image.open(io.BytesIO(png)).text["synthetic"] == "true"
    sem = read_sem("memory://synth-ds/Tips/1.png")
    expected = generate("Tips", size=(64, 96), seed=100003 + 1)
    np.testing.assert_allclose(sem.image, expected / 255.0, atol=1e-6)


def _encode(array, fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_read_png_gray_rgb_palette():
    gray = generate("Particles", size=(64, 64), seed=2)
    sem = read_sem(_encode(gray, "PNG"))
    np.testing.assert_allclose(sem.image, gray / 255.0, atol=1e-6)
    assert sem.vendor is None and sem.metadata == {}
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    np.testing.assert_allclose(read_sem(_encode(rgb, "PNG")).image, 0.299, atol=1e-6)
    # palette PNG whose palette is not a grey ramp: the palette is applied
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    out = read_sem(buf.getvalue()).image
    np.testing.assert_allclose(out, [[0.0, 0.299], [0.114, 0.299]], atol=1e-6)


def test_read_jpeg_and_16bit_tiff():
    gray = generate("Powder", size=(64, 64), seed=2)
    sem = read_sem(_encode(gray, "JPEG", quality=95))
    assert sem.image.shape == (64, 64) and np.abs(sem.image - gray / 255.0).mean() < 0.05
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.array([[0, 65535]], np.uint16))
    np.testing.assert_allclose(read_sem(buf.getvalue()).image, [[0.0, 1.0]])


def test_palette_tiff_non_grey():
    buf = io.BytesIO()
    cmap = np.zeros((3, 256), np.uint16)
    cmap[1, 1] = 65535  # index 1 -> pure green
    cmap[:, 2] = 65535  # index 2 -> white
    tifffile.imwrite(buf, np.array([[0, 1, 2]], np.uint8), photometric="palette", colormap=cmap)
    np.testing.assert_allclose(read_sem(buf.getvalue()).image, [[0.0, 0.587, 1.0]], atol=1e-6)


def test_input_not_mutated():
    img = generate("Fibres", size=(128, 128), seed=0)
    before = img.copy()
    preprocess(img, 32)
    crop_data_bar(img)
    to_grayscale(img)
    assert np.array_equal(img, before)


def _png_header(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


def _tiff_header(width, height):
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, width * height)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHII", tag, typ, count, value) if typ == 4 else struct.pack("<HHIHH", tag, typ, count, value, 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0\0\0\0"


def test_bad_inputs(tmp_path):
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(SemReadError, match=r"empty file: .*empty\.tif"):
        read_sem(empty)
    text = tmp_path / "notes.txt"
    text.write_text("EHT = 5 kV\n")
    with pytest.raises(SemReadError, match=r"not an image: .*notes\.txt"):
        read_sem(text)
    buf = io.BytesIO()
    tifffile.imwrite(buf, generate("Tips", size=(256, 256)), compression="zlib")
    truncated = tmp_path / "cut.tif"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(SemReadError, match=r"corrupt TIFF: .*cut\.tif"):
        read_sem(truncated)
    png = _encode(generate("Tips", size=(256, 256)), "PNG")
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(png[: len(png) // 2])
    with pytest.raises(SemReadError, match=r"corrupt PNG: .*cut\.png"):
        read_sem(cut_png)
    with pytest.raises(SemReadError, match="file not found"):
        read_sem(tmp_path / "missing.tif")
    with pytest.raises(SemReadError, match="empty file"):
        read_sem(b"")


@pytest.mark.parametrize("make", [_png_header, _tiff_header])
def test_huge_dimensions_refused(tmp_path, make):
    path = tmp_path / "huge.img"
    path.write_bytes(make(60000, 50000))
    with pytest.raises(SemReadError, match=r"image too large: .*huge\.img.*max_pixels"):
        read_sem(path)
    small = _encode(np.zeros((20, 20), np.uint8), "PNG")
    with pytest.raises(SemReadError, match="too large"):
        read_sem(small, max_pixels=100)
    assert read_sem(small, max_pixels=400).image.shape == (20, 20)


@pytest.mark.parametrize("array, fmt, sample_bytes", [
    (np.zeros((40, 50), np.uint8), "PNG", 1),
    (np.zeros((40, 50, 3), np.uint8), "PNG", 3),
    (np.zeros((40, 50), np.uint16), "TIFF", 2),
    (np.zeros((40, 50, 3), np.uint16), "TIFF", 6),
])
def test_the_memory_of_decoding_is_checked_from_the_header(array, fmt, sample_bytes):
    """``max_decode_bytes`` refuses an image whose reading would take more memory (pixels x
    (bytes per decoded pixel + the working copies)) before anything is decoded."""
    need = decode_bytes(40, 50, sample_bytes)
    assert need == 40 * 50 * (sample_bytes + 17)
    data = _encode(array, fmt) if fmt == "PNG" else _tiff(array)
    with pytest.raises(SemReadError, match=rf"too large to decode: .*50x40 .*{sample_bytes} byte.*max_decode_bytes"):
        read_sem(data, max_decode_bytes=need - 1)
    assert read_sem(data, max_decode_bytes=need).image.shape == (40, 50)
    with pytest.raises(ValueError, match="max_decode_bytes must be positive"):
        read_sem(data, max_decode_bytes=0)


def _tiff(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    return buf.getvalue()


def test_preprocess_contract():
    img = generate("Nanowires", size=(384, 512), seed=1)
    x = preprocess(img, 128)
    assert x.shape == (128, 128) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x, preprocess(img[: data_bar_row(384)], 128, crop=False), atol=1e-6)
    with pytest.raises(ValueError, match="positive integer"):
        preprocess(img, 0)

"""12-bit (and 10-, 14-bit) detector data in 16-bit files: detected, scaled right, said so.

A 12-bit detector stores values 0..4095 in a 16-bit TIFF. Scaled by 65535 such an image is at
most 6 % bright; :func:`read_sem` finds the significant bits from the ``MaxSampleValue`` tag or
from the data's range, scales by 2**bits - 1 and adds a note to the result.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from dass.sem import read_sem  # noqa: E402
from dass.sem.io import to_grayscale  # noqa: E402


def tiff16(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, metadata=None, **kwargs)
    return buf.getvalue()


def ramp(top: int, shape=(64, 96)) -> np.ndarray:
    return np.linspace(0, top, shape[0] * shape[1]).reshape(shape).round().astype(np.uint16)


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_packed_bits_are_detected_from_the_data_range(bits):
    top = 2**bits - 1
    sem = read_sem(tiff16(ramp(top)))
    assert sem.bit_depth == bits
    assert sem.image.max() == pytest.approx(1.0)
    assert sem.image.min() == 0.0
    assert len(sem.notes) == 1 and f"{bits}-bit data in a 16-bit TIFF" in sem.notes[0]
    assert f"scaled by {top}" in sem.notes[0]


def test_twelve_bit_image_is_as_bright_as_its_eight_bit_twin():
    rng = np.random.default_rng(3)
    eight = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    eight[0, 0] = 255
    twelve = (eight.astype(np.int64) * 4095 // 255).astype(np.uint16)
    a, b = read_sem(tiff16(eight)), read_sem(tiff16(twelve))
    assert a.notes == [] and a.bit_depth == 8
    assert b.bit_depth == 12
    assert np.abs(a.image - b.image).max() < 1 / 255 + 1e-6
    # without detection the image would be at most 4095 / 65535, about 6 % bright
    assert to_grayscale(twelve).max() == pytest.approx(4095 / 65535)


def test_max_sample_value_tag_wins_over_the_data_range():
    # 12-bit data that happens to stay below 2048 (a dark image): the tag still says 12 bits
    dark = ramp(1500)
    sem = read_sem(tiff16(dark, extratags=[(281, "H", 1, 4095, True)]))
    assert sem.bit_depth == 12
    assert "MaxSampleValue tag 4095" in sem.notes[0]
    assert sem.image.max() == pytest.approx(1500 / 4095, abs=1e-6)


def test_full_range_sixteen_bit_is_left_alone():
    sem = read_sem(tiff16(ramp(65535)))
    assert sem.bit_depth == 16 and sem.notes == []
    assert sem.image.max() == pytest.approx(1.0)


def test_sixteen_bit_png_is_handled_too():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(ramp(4095)).save(buf, format="PNG")
    sem = read_sem(buf.getvalue())
    assert sem.bit_depth == 12 and "16-bit PNG" in sem.notes[0]
    assert sem.image.max() == pytest.approx(1.0)


def test_input_array_is_not_modified():
    a = ramp(4095)
    before = a.copy()
    to_grayscale(a, scale=4095)
    assert np.array_equal(a, before)

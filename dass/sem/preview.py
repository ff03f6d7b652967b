"""PNG previews of SEM images, made on the server so that TIFFs can be seen in a browser.

:func:`preview_png` turns a :class:`~dass.sem.io.SemImage` (any format :func:`read_sem`
reads: Zeiss/FEI TIFF, 16-bit, palette, PNG, JPEG) into a small 8-bit PNG: the grayscale
image scaled down to fit `max_size`, with the data bar -- the part the classifier does not
look at -- outlined in amber. Previews are cached beside the images of a dataset, under
:data:`PREVIEW_FOLDER` (:func:`preview_path`), so each is made once.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["PREVIEW_FOLDER", "is_preview_path", "preview_path", "preview_png"]

#: Folder inside a dataset that holds the cached previews (hidden from image listings).
PREVIEW_FOLDER = ".dass-previews"
#: Outline colour of the data bar (amber, visible on dark and light bars).
BAR_COLOUR = (245, 158, 11)


def preview_path(path: str) -> str:
    """Where the preview of a dataset file is cached, relative to the dataset folder.

    Examples
    --------
    >>> preview_path("run1/a.tif")
    '.dass-previews/run1/a.tif.png'
    """
    return f"{PREVIEW_FOLDER}/{path}.png"


def is_preview_path(path: str) -> bool:
    """True for a path inside the preview cache of a dataset."""
    return path == PREVIEW_FOLDER or path.startswith(PREVIEW_FOLDER + "/")


def preview_png(sem: Any, *, max_size: int = 512, bar_row: int | None = None, detect: bool = True) -> bytes:
    """A PNG preview of an SEM image with its data bar outlined.

    Parameters
    ----------
    sem : SemImage or ndarray
        The image (a :class:`~dass.sem.io.SemImage`, or any array
        :func:`~dass.sem.io.to_grayscale` accepts); not modified.
    max_size : int, optional
        Longest side of the preview in pixels (default 512); smaller images keep their size.
    bar_row : int, optional
        First row of the data bar; default: the row the file records (FEI), else detected
        with :func:`~dass.sem.databar.detect_data_bar` when `detect` is true.
    detect : bool, optional
        Detect the data bar when its row is not known (default True).

    Returns
    -------
    bytes
        An RGB PNG.

    Examples
    --------
    >>> from PIL import Image
    >>> png = preview_png(np.zeros((300, 1000), np.uint8), max_size=200)
    >>> Image.open(io.BytesIO(png)).size
    (200, 60)
    """
    from PIL import Image, ImageDraw

    from dass.sem.databar import detect_data_bar
    from dass.sem.io import SemImage, to_grayscale

    if int(max_size) != max_size or max_size < 16:
        raise ValueError(f"max_size must be an integer >= 16, got {max_size!r}")
    if isinstance(sem, SemImage):
        if bar_row is None:
            bar_row = sem.data_bar_row
        image = sem.image
    else:
        image = to_grayscale(np.asarray(sem))
    h, w = image.shape
    if bar_row is None and detect:
        bar_row = detect_data_bar(image)
    gray = Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), mode="L")
    scale = min(1.0, max_size / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = gray.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    rgb = gray.convert("RGB")
    if bar_row is not None and 0 < bar_row < h:
        draw = ImageDraw.Draw(rgb)
        top = int(round(bar_row * rgb.height / h))
        width = max(1, round(rgb.width / 256))
        draw.rectangle([0, top, rgb.width - 1, rgb.height - 1], outline=BAR_COLOUR, width=width)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=1)  # fast: SEM noise hardly compresses
    return buf.getvalue()

"""Measuring and showing the images of SEM datasets: the steps of the SEM image-summary job
(``sem/service/image_summary.ipynb``) and of the landing notebook's first look.

Torch-free: pillow and numpy only (matplotlib when an image is shown). A ``dataset`` here is
anything with ``open(name)`` returning a binary file, such as :class:`dass.data.Dataset`;
finding the files is :func:`dass.data.notebook.file_names`.

Examples
--------
>>> import numpy as np
>>> eight_bit(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)).tolist()
[[0, 64], [128, 255]]
>>> stats = pixel_statistics(np.array([[0, 10], [20, 30]], dtype=np.uint8))
>>> stats["min"], stats["max"], stats["mean"], stats["std"]
(0, 30, 15.0, 11.18)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "FIRST_LOOK_SUFFIXES",
    "open_image",
    "pixel_statistics",
    "eight_bit",
    "measure_images",
    "summary_lines",
    "write_csv",
    "contact_sheet",
    "show_image",
]

#: the image files an SEM job reads (PNG, TIFF, JPEG), compared without regard to case
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: the images the landing notebook's first look considers
FIRST_LOOK_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")


def open_image(dataset: Any, name: str, *, as_values: bool = True) -> Any:
    """The image ``name`` of ``dataset`` as a loaded PIL image (the first page of a multi-page
    TIFF). With ``as_values`` (default), palette and 1-bit images are converted to RGB(A) and L
    so that their pixels are values; else the image is as stored."""
    from PIL import Image

    with dataset.open(name) as f:
        image = Image.open(f)
        image.load()
    if as_values and image.mode in ("1", "P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" else "L" if image.mode == "1" else "RGB")
    return image


def pixel_statistics(pixels: np.ndarray) -> dict[str, Any]:
    """``dtype``, ``min``, ``max`` (as the pixel type's Python number), ``mean`` and ``std``
    (rounded to 3 decimals) over all pixels and channels of ``pixels``."""
    pixels = np.asarray(pixels)
    if pixels.size == 0:
        raise ValueError("an image without pixels has no statistics")
    return {
        "dtype": str(pixels.dtype),
        "min": pixels.min().item(),
        "max": pixels.max().item(),
        "mean": round(float(pixels.mean()), 3),
        "std": round(float(pixels.std()), 3),
    }


def eight_bit(pixels: np.ndarray) -> np.ndarray:
    """An 8-bit view of an image for a contact sheet.

    Colour images keep their first three channels (one channel of a grey-alpha image); 8-bit
    pixels are kept as they are, any other type is scaled linearly from its minimum (0) to its
    maximum (255), all zeros when flat. ``pixels`` is not modified.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., 0]
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def measure_images(
    dataset: Any, names: Iterable[str], *, thumbnail_px: int = 256
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Read each image of ``names`` and measure it.

    Parameters
    ----------
    dataset : dass.data.Dataset
        Where the images are.
    names : iterable of str
        Paths relative to ``dataset``.
    thumbnail_px : int
        Largest side of the thumbnails.

    Returns
    -------
    rows : list of dict
        Per image ``file``, ``width``, ``height``, ``dtype``, ``min``, ``max``, ``mean``,
        ``std`` (see :func:`pixel_statistics`; the microscope's data bar included).
    thumbnails : list of PIL.Image.Image
        8-bit thumbnails (:func:`eight_bit`), aspect ratio kept.
    """
    from PIL import Image

    if thumbnail_px < 1:
        raise ValueError(f"thumbnail_px must be at least 1, got {thumbnail_px}")
    rows, thumbnails = [], []
    for name in names:
        image = open_image(dataset, name)
        pixels = np.asarray(image)
        rows.append({"file": name, "width": image.width, "height": image.height, **pixel_statistics(pixels)})
        thumbnail = Image.fromarray(eight_bit(pixels))
        thumbnail.thumbnail((thumbnail_px, thumbnail_px))
        thumbnails.append(thumbnail)
    return rows, thumbnails


def summary_lines(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows of :func:`measure_images` as numbered text lines (numbers as on the sheet)."""
    return "\n".join(
        f"{number:3d}  {row['file']}: {row['width']} x {row['height']} {row['dtype']}, "
        f"min {row['min']}, max {row['max']}, mean {row['mean']}, std {row['std']}"
        for number, row in enumerate(rows, 1)
    )


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write ``rows`` (dicts with the same keys, in the order of the first) as a CSV file."""
    if not rows:
        raise ValueError(f"no rows to write to {os.fspath(path)}")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def contact_sheet(thumbnails: Sequence[Any], *, cell_px: int = 256) -> Any:
    """The thumbnails on a black RGB sheet, row by row in a square-ish grid of ``cell_px``
    cells (each centred in its cell), numbered from 1 in yellow at the top left.

    Returns
    -------
    PIL.Image.Image
        ``columns · cell_px`` wide with ``columns = ceil(sqrt(n))``.
    """
    from PIL import Image, ImageDraw

    if not thumbnails:
        raise ValueError("a contact sheet needs at least one thumbnail")
    columns = math.ceil(math.sqrt(len(thumbnails)))
    sheet_rows = math.ceil(len(thumbnails) / columns)
    sheet = Image.new("RGB", (columns * cell_px, sheet_rows * cell_px), "black")
    draw = ImageDraw.Draw(sheet)
    for index, thumbnail in enumerate(thumbnails):
        left = (index % columns) * cell_px
        top = (index // columns) * cell_px
        sheet.paste(
            thumbnail.convert("RGB"),
            (left + (cell_px - thumbnail.width) // 2, top + (cell_px - thumbnail.height) // 2),
        )
        draw.text((left + 4, top + 4), str(index + 1), fill=(255, 255, 0))
    return sheet


def show_image(image: Any, *, title: str = "") -> None:
    """Show ``image`` in grey with matplotlib, or with IPython's display when matplotlib is
    not installed."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        from IPython.display import display

        display(image)
        return
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.imshow(image, cmap="gray")
    ax.set_title(title)
    ax.set_axis_off()
    plt.show()

"""Detect and crop the microscope's info strip (data bar), and preprocess.

SEM images usually keep the instrument's data bar at the bottom: a band of
about 9-10 % of the height (Zeiss) with a plain background, text and a scale
bar, separated from the image by a sharp boundary. :func:`detect_data_bar`
finds it from row statistics alone; :func:`preprocess` is the single
preprocessing shared by training and inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["crop_data_bar", "detect_data_bar", "preprocess"]

#: Largest fraction of the height searched for a data bar.
MAX_BAR_FRACTION = 0.25
#: A row is "flat" when at least this fraction of pixels share one level (+-2/255).
_FLAT_ROW = 0.5
#: At least this fraction of the band's rows must be flat.
_FLAT_BAND = 0.75
#: Minimum mean absolute change (in [0, 1]) across the boundary row.
_MIN_EDGE = 0.08


def _as_gray(image: np.ndarray) -> np.ndarray:
    from dass.sem.io import to_grayscale

    a = np.asarray(image)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D image (H, W) or (H, W, 3|4), got shape {a.shape}")
    return to_grayscale(a)


def _row_flatness(levels: np.ndarray) -> np.ndarray:
    """Fraction of each row's pixels within +-2 levels of the row's commonest level."""
    h, w = levels.shape
    # one histogram per row: bincount over (row, level) pairs (much faster than np.add.at)
    keys = (np.arange(h, dtype=np.int64)[:, None] * 256 + levels).ravel()
    counts = np.bincount(keys, minlength=h * 256).reshape(h, 256)
    csum = np.zeros((h, 257), np.int64)
    np.cumsum(counts, axis=1, out=csum[:, 1:])
    # pixels in each run of 5 levels [a, a + 4], a = 0..251: the windows +-2 around a level
    # clipped at 0 and 255 hold no more than these, so the largest is the same
    return (csum[:, 5:] - csum[:, :-5]).max(axis=1) / w


def detect_data_bar(image: np.ndarray, *, max_fraction: float = MAX_BAR_FRACTION) -> int | None:
    """Find the first row of the data bar at the bottom of an SEM image.

    The bar is taken to be a band at the bottom, no taller than `max_fraction`
    of the height, whose rows are mostly "flat" (most pixels share one
    background level, as in digitally drawn text on a plain background), and
    which starts at a sharp boundary: the largest mean change between
    consecutive rows. A one-pixel separator line above the band is included.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3|4)
        Any dtype accepted by :func:`dass.sem.io.to_grayscale`; not modified.
    max_fraction : float, optional
        Largest bar height as a fraction of the image height (default 0.25).

    Returns
    -------
    int or None
        Row index where the bar starts, or ``None`` when there is no bar.

    Examples
    --------
    >>> img = np.random.default_rng(0).uniform(0.3, 0.7, (100, 80))
    >>> img[90:] = 0.05
    >>> img[93:95, 10:40] = 1.0  # "text"
    >>> detect_data_bar(img)
    90
    >>> detect_data_bar(img[:90]) is None
    True
    """
    if not 0 < max_fraction < 1:
        raise ValueError(f"max_fraction must be between 0 and 1, got {max_fraction}")
    return _bar_row(_as_gray(image), max_fraction)


def _bar_row(gray: np.ndarray, max_fraction: float = MAX_BAR_FRACTION) -> int | None:
    """:func:`detect_data_bar` on a float grayscale image in [0, 1] (not converted again)."""
    h, w = gray.shape
    if h < 8 or w < 8:
        return None
    first = max(1, h - int(np.floor(max_fraction * h)))
    last = h - max(3, int(0.02 * h))  # a bar is at least 2 % of the height
    # Only the bottom rows can hold the bar: the scores below look at most 4 rows above
    # ``first``, so rows above ``start`` are never read (same result, a fraction of the work).
    # flatness, flat, edge and flat_from are indexed by row number (rows above ``start`` unused).
    start = max(0, first - 4)
    levels = np.clip(np.rint(gray[start:] * 255), 0, 255).astype(np.intp)  # rows start..h-1
    flatness = np.zeros(h)
    flatness[start:] = _row_flatness(levels)
    flat = flatness >= _FLAT_ROW
    edge = np.zeros(h - 1)
    edge[start:] = np.abs(np.diff(gray[start:], axis=0)).mean(axis=1)  # edge[r-1] = change into row r
    # share of flat rows in [r, h) for every r >= start
    flat_from = np.zeros(h)
    flat_from[start:] = np.cumsum(flat[start:][::-1])[::-1] / np.arange(h - start, 0, -1)
    # every candidate row r in first..last at once (the rows above ``first`` that the scores
    # read are at least ``start``): a boundary below flat rows is more likely text inside the
    # bar than the bar's top edge, so its weight is halved (a separator line still wins); the
    # strongest cue is the step from textured image rows to the flat rows of the bar, so the
    # rise in flatness over the 3 rows above is added
    rows = np.arange(first, last + 1)
    if rows.size == 0:
        return None
    above = np.maximum(np.stack([rows - 1, rows - 2, rows - 3]), start)  # no-op: first - 3 > start
    jump = np.maximum(0.0, flatness[rows] - flatness[above].max(axis=0))
    score = edge[rows - 1] * np.where(flat[above].all(axis=0), 0.5, 1.0) + jump
    score[(flat_from[rows] < _FLAT_BAND) | ~flat[rows] | ~(score > _MIN_EDGE)] = -np.inf
    if not np.isfinite(score).any():
        return None
    best = int(rows[np.argmax(score)])  # the first of equal scores, as a top-down scan finds
    # include a thin uniform separator line directly above the chosen row
    for _ in range(3):
        r = best - 1
        if r >= first and flat[r] and _row_flatness(levels[r - 1 - start : r + 1 - start])[1] > 0.95 and edge[r - 1] > _MIN_EDGE:
            best = r
        else:
            break
    return int(best)


def crop_data_bar(image: np.ndarray, *, bar_row: int | None = None) -> np.ndarray:
    """Return the image without its data bar.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Not modified.
    bar_row : int, optional
        First row of the bar; detected with :func:`detect_data_bar` when omitted.

    Returns
    -------
    ndarray
        A copy of ``image[:bar_row]`` (the whole image, copied, when there is no bar).

    Examples
    --------
    >>> img = np.zeros((10, 4))
    >>> crop_data_bar(img, bar_row=8).shape
    (8, 4)
    """
    a = np.asarray(image)
    if a.ndim < 2:
        raise ValueError(f"expected an image with at least 2 dimensions, got shape {a.shape}")
    if bar_row is None:
        bar_row = detect_data_bar(a)
    elif not 0 < int(bar_row) <= a.shape[0]:
        raise ValueError(f"bar_row must be in 1..{a.shape[0]} for an image of height {a.shape[0]}, got {bar_row}")
    if bar_row is None:
        return a.copy()
    return a[: int(bar_row)].copy()


def preprocess(image: Any, size: int, *, crop: bool = True, bar_row: int | None = None) -> np.ndarray:
    """Crop the data bar and resize to a square model input.

    The one preprocessing used identically by training and inference:
    grayscale float32 in [0, 1], bar cropped, resized to ``(size, size)`` with
    PIL's antialiased bicubic filter (aspect ratio not kept; computed by torch where torch is,
    see :func:`_resize`). No float64 step.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3|4), or SemImage
        Any dtype accepted by :func:`dass.sem.io.to_grayscale`; not modified. For a
        :class:`~dass.sem.io.SemImage` whose file says where its data bar starts
        (``data_bar_row``, FEI), that row is used instead of detection.
    size : int
        Output side length in pixels.
    crop : bool, optional
        Remove the data bar first (default True).
    bar_row : int, optional
        First row of the data bar, when known; detected when omitted.

    Returns
    -------
    ndarray of float32, shape (size, size), values in [0, 1]

    Examples
    --------
    >>> preprocess(np.zeros((30, 40), np.uint8), 16).shape
    (16, 16)
    """
    from dass.sem.io import SemImage

    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if isinstance(image, SemImage):
        if bar_row is None:
            bar_row = image.data_bar_row
        image = image.image
    if isinstance(image, np.ndarray) and image.dtype == np.float32 and image.ndim == 2 and (
        image.size and 0.0 <= image.min() and image.max() <= 1.0
    ):
        gray = image  # already what _as_gray makes (a SemImage's image): no copy, not modified
    else:
        gray = _as_gray(image)
    if crop:
        if bar_row is None:
            bar_row = _bar_row(gray)
        elif not 0 < int(bar_row) <= gray.shape[0]:
            raise ValueError(f"bar_row must be in 1..{gray.shape[0]} for an image of height {gray.shape[0]}, "
                             f"got {bar_row}")
        if bar_row is not None:
            gray = gray[: int(bar_row)]
    return _resize(gray, int(size))


def _resize(gray: np.ndarray, size: int) -> np.ndarray:
    """``gray`` (float32, 2-D) resized to ``(size, size)`` with PIL's antialiased bicubic filter,
    clipped to [0, 1].

    Computed by torch (``interpolate(mode="bicubic", antialias=True)``, the same filter:
    equal to PIL's within 2e-5) when torch is there, as it is wherever a model is trained or
    run: about half of PIL's time for a 384x512 image, and without holding the GIL. Else by
    PIL itself.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - the model's own environments have torch
        torch = None
    if torch is None:
        from PIL import Image

        pil = Image.fromarray(np.ascontiguousarray(gray), mode="F")
        out = np.array(pil.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None), dtype=np.float32)
    else:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(gray))[None, None]
            out = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", antialias=True,
                                                  align_corners=False)[0, 0].numpy()
    return np.clip(out, 0.0, 1.0, out=out)

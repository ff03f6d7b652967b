"""Still STM images (Nanonis ``.sxm``, Omicron MATRIX) and their common corrections.

Why one module: :class:`StillImage` and its corrections (plane fit, row alignment, fix
zero, FFT notch) are one small algebra on the same array type, documented and tested together.

:class:`StillImage` is one channel of one scan direction: a 2-D float array plus its channel
name, unit, direction, pixel size (metres, or ``None`` when the file gives no calibration) and a
JSON-able metadata dict. The readers (:func:`dass.stm.nanonis.read_sxm`,
:func:`dass.stm.matrix.read_matrix`) make them.

The corrections are pure functions: the image comes first, options are keywords, the input is
never changed and a new :class:`StillImage` is returned whose ``metadata["processing"]`` lists
the steps applied so far (a step list that :func:`apply` replays):

- :func:`plane_fit` — subtract the least-squares plane ``a + b·x + c·y``;
- :func:`align_rows` — make the rows agree: subtract each row's mean or median, or a polynomial
  of order *n* fitted to each row;
- :func:`fix_zero` — shift the values so that the minimum is 0;
- :func:`fft_notch` — remove periodic noise by zeroing small discs of the 2-D Fourier transform
  at given frequencies or at the strongest periodic peaks (:func:`find_periodic_peaks`).

:func:`apply` runs a serialisable step list such as
``[{"step": "plane_fit"}, {"step": "align_rows", "method": "median"}, {"step": "fix_zero"}]``
after validating it (:func:`validate_steps`). :func:`before_after_png` draws a before/after
figure (matplotlib, Agg, no display), :func:`png_bytes` one image, :func:`gsf_bytes` /
:func:`write_gsf` a Gwyddion Simple Field file.

Examples
--------
>>> import numpy as np
>>> y, x = np.mgrid[0:32, 0:32]
>>> img = StillImage(2.0 + 0.1 * x - 0.3 * y, channel="Z", unit="m")
>>> float(abs(plane_fit(img).data).max()) < 1e-12
True
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StepError

__all__ = [
    "StillImage",
    "plane_fit",
    "align_rows",
    "fix_zero",
    "fft_notch",
    "find_periodic_peaks",
    "STEPS",
    "validate_steps",
    "apply",
    "before_after_png",
    "png_bytes",
    "gsf_bytes",
    "write_gsf",
]

ROW_METHODS: tuple[str, ...] = ("mean", "median", "polynomial")


@dataclasses.dataclass(frozen=True, eq=False)
class StillImage:
    """One channel, one direction of a still scan.

    Parameters
    ----------
    data : array_like, 2-D
        The values, converted to a new ``float64`` array (rows = slow axis, columns = fast axis;
        row 0 is the top of the image as displayed).
    channel : str
        Channel name as the file gives it (``"Z"``, ``"Current"``, …).
    unit : str
        Unit of ``data`` (``"m"``, ``"A"``, …); ``""`` when unknown.
    direction : str
        Scan direction: ``"forward"``/``"backward"`` (Nanonis) or a MATRIX trace
        (``"forward/up"``, …); ``""`` when unknown.
    pixel_size : (float, float) or None
        ``(dx, dy)`` in metres, or ``None`` when the file gives no calibrated size.
    metadata : dict
        JSON-able catalogue metadata of the file; ``"processing"`` lists applied steps and
        ``"synthetic": True`` marks made-up data.

    Raises
    ------
    ValueError
        ``data`` is not 2-D, is empty, or is not numeric; ``pixel_size`` is not two positive
        finite numbers.
    """

    data: np.ndarray
    channel: str = ""
    unit: str = ""
    direction: str = ""
    pixel_size: tuple[float, float] | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            data = np.array(self.data, dtype=np.float64)  # always a copy: inputs never shared
        except (TypeError, ValueError):
            raise ValueError(
                f"StillImage data must be a numeric 2-D array, got {type(self.data).__name__}"
            ) from None
        if data.ndim != 2 or 0 in data.shape:
            raise ValueError(
                f"StillImage data must be a non-empty 2-D array (rows, columns), "
                f"got shape {data.shape}"
            )
        data.flags.writeable = False
        object.__setattr__(self, "data", data)
        if self.pixel_size is not None:
            try:
                dx, dy = (float(v) for v in self.pixel_size)
            except (TypeError, ValueError):
                raise ValueError(
                    f"pixel_size must be (dx, dy) in metres or None, got {self.pixel_size!r}"
                ) from None
            if not (math.isfinite(dx) and math.isfinite(dy) and dx > 0 and dy > 0):
                raise ValueError(
                    f"pixel_size must be two positive finite lengths in metres, got {(dx, dy)}"
                )
            object.__setattr__(self, "pixel_size", (dx, dy))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def size(self) -> tuple[float, float] | None:
        """Physical ``(width, height)`` in metres, or ``None`` without a pixel size."""
        if self.pixel_size is None:
            return None
        return (self.pixel_size[0] * self.shape[1], self.pixel_size[1] * self.shape[0])

    @property
    def synthetic(self) -> bool:
        """True for made-up data (``metadata["synthetic"]``)."""
        return bool(self.metadata.get("synthetic"))

    @property
    def title(self) -> str:
        """A short label: channel, direction and unit; prefixed ``"synthetic"`` when it is."""
        parts = [p for p in (self.channel, self.direction) if p]
        text = " ".join(parts) or "image"
        if self.unit:
            text += f" ({self.unit})"
        return f"synthetic {text}" if self.synthetic else text

    def with_data(self, data: np.ndarray, step: Mapping[str, Any] | None = None) -> StillImage:
        """A new image with ``data`` replaced and, if given, ``step`` appended to
        ``metadata["processing"]``; everything else is kept."""
        metadata = dict(self.metadata)
        if step is not None:
            metadata["processing"] = [*metadata.get("processing", []), dict(step)]
        return dataclasses.replace(self, data=data, metadata=metadata)

    def __repr__(self) -> str:
        return f"<StillImage {self.title} {self.shape[0]}x{self.shape[1]}>"


def _check_image(image: Any, where: str) -> StillImage:
    if not isinstance(image, StillImage):
        raise TypeError(f"{where}: expected a StillImage, got {type(image).__name__}")
    return image


# ---------------------------------------------------------------------------------------------
# corrections


def plane_fit(image: StillImage) -> StillImage:
    """Subtract the least-squares plane ``a + b·x + c·y`` (x = column, y = row index).

    Non-finite pixels (NaN from an interrupted scan) are ignored in the fit and stay NaN.

    Parameters
    ----------
    image : StillImage

    Returns
    -------
    StillImage
        The residual; a tilted plane becomes 0 to rounding.

    Examples
    --------
    >>> y, x = np.mgrid[0:8, 0:8]
    >>> float(abs(plane_fit(StillImage(1 + x + 2 * y)).data).max()) < 1e-12
    True
    """
    image = _check_image(image, "plane_fit")
    rows, cols = image.shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    good = np.isfinite(image.data)
    if good.sum() < 3:
        raise ValueError("plane_fit needs at least 3 finite pixels")
    design = np.column_stack([np.ones(good.sum()), x[good], y[good]])
    coef, *_ = np.linalg.lstsq(design, image.data[good], rcond=None)
    plane = coef[0] + coef[1] * x + coef[2] * y
    return image.with_data(image.data - plane, {"step": "plane_fit"})


def align_rows(image: StillImage, *, method: str = "median", order: int = 1) -> StillImage:
    """Remove the row-to-row offsets of a scan (jumps of the tip between lines).

    Parameters
    ----------
    image : StillImage
    method : {"median", "mean", "polynomial"}
        ``"median"`` (robust to adsorbates and steps) or ``"mean"``: each row's median/mean is
        subtracted, so every row ends with median/mean 0. ``"polynomial"``: a polynomial of
        degree ``order`` in x is fitted to each row and subtracted (``order=0`` equals
        ``"mean"``; ``order=1`` also removes each row's slope).
    order : int
        Polynomial degree for ``method="polynomial"``, 0 to ``columns - 1``.

    Returns
    -------
    StillImage

    Examples
    --------
    >>> data = np.arange(4.0)[:, None] + np.zeros((4, 5))
    >>> float(abs(align_rows(StillImage(data), method="mean").data).max())
    0.0
    """
    image = _check_image(image, "align_rows")
    if method not in ROW_METHODS:
        raise ValueError(f"align_rows: method {method!r} is unknown; use one of {', '.join(ROW_METHODS)}")
    data = image.data
    if method == "mean":
        out = data - np.nanmean(data, axis=1, keepdims=True)
        step: dict[str, Any] = {"step": "align_rows", "method": "mean"}
    elif method == "median":
        out = data - np.nanmedian(data, axis=1, keepdims=True)
        step = {"step": "align_rows", "method": "median"}
    else:
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
            raise ValueError(f"align_rows: order must be a whole number, got {order!r}")
        if not 0 <= order < image.shape[1]:
            raise ValueError(
                f"align_rows: order {order} must be between 0 and {image.shape[1] - 1} "
                f"(the row length minus one)"
            )
        x = np.linspace(-1.0, 1.0, image.shape[1])  # scaled for a well-conditioned fit
        out = np.empty_like(data)
        for i, row in enumerate(data):
            good = np.isfinite(row)
            if good.sum() <= order:
                out[i] = row - np.nanmean(row) if good.any() else row
                continue
            coef = np.polynomial.polynomial.polyfit(x[good], row[good], int(order))
            out[i] = row - np.polynomial.polynomial.polyval(x, coef)
        step = {"step": "align_rows", "method": "polynomial", "order": int(order)}
    return image.with_data(out, step)


def fix_zero(image: StillImage) -> StillImage:
    """Shift the values so that the smallest finite value is 0 (Gwyddion's "fix zero").

    Examples
    --------
    >>> float(fix_zero(StillImage([[3.0, 5.0], [4.0, 9.0]])).data.min())
    0.0
    """
    image = _check_image(image, "fix_zero")
    if not np.isfinite(image.data).any():
        raise ValueError("fix_zero: the image has no finite value")
    return image.with_data(image.data - np.nanmin(image.data), {"step": "fix_zero"})


def _signed_frequencies(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer frequencies (cycles per image) of each FFT bin, ``(fy, fx)`` grids."""
    fy = np.fft.fftfreq(rows, d=1.0 / rows)
    fx = np.fft.fftfreq(cols, d=1.0 / cols)
    return np.meshgrid(fy, fx, indexing="ij")


def find_periodic_peaks(
    image: StillImage, *, count: int = 2, exclude: float = 3.0, threshold: float = 20.0
) -> list[tuple[int, int]]:
    """The strongest periodic components of an image, as frequencies for :func:`fft_notch`.

    The power spectrum of the mean-free image is searched for local maxima (3×3) outside a disc
    of radius ``exclude`` around zero frequency (the image's slow background); a peak counts when
    its power exceeds ``threshold`` times the median power of its ring (the bins at the same
    distance from zero frequency, since a surface's spectrum falls off with frequency). Each periodic pattern gives two
    symmetric peaks ``f`` and ``-f``; only one of each pair is returned.

    Parameters
    ----------
    image : StillImage
    count : int
        At most this many peaks, strongest first.
    exclude : float
        Radius (in frequency bins, i.e. cycles per image) around 0 that is never a peak.
    threshold : float
        Minimum power, in multiples of the median power at the same frequency radius.

    Returns
    -------
    list of (int, int)
        ``(fy, fx)``: cycles per image height and width (``fx`` may be negative).
    """
    image = _check_image(image, "find_periodic_peaks")
    from scipy import ndimage

    data = np.nan_to_num(image.data - np.nanmean(image.data))
    # a Hann window keeps the jump between opposite edges from streaking along the axes
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    power = np.abs(np.fft.fft2(data * window)) ** 2
    fy, fx = _signed_frequencies(*image.shape)
    radius = np.hypot(fy, fx)
    local_max = power == ndimage.maximum_filter(power, size=3, mode="wrap")
    # the spectrum of a surface falls off with |f|: compare each bin with the median power of
    # its ring (same |f|, rounded), so that only what stands out in its ring counts as periodic
    ring = np.rint(radius).astype(int)
    ring_median = ndimage.median(power, labels=ring, index=np.arange(ring.max() + 1))
    floor = np.asarray(ring_median)[ring]
    tiny = np.finfo(np.float64).tiny + 1e-12 * float(power.max(initial=0.0))
    score = power / np.maximum(floor, tiny)
    # one of each +f/-f pair: the upper half plane plus the positive fx half of the fy=0 row
    half = (fy > 0) | ((fy == 0) & (fx > 0))
    candidates = local_max & half & (radius > exclude) & (score > threshold)
    order = np.argsort(power[candidates])[::-1][: max(int(count), 0)]
    ys, xs = np.nonzero(candidates)
    return [(int(fy[ys[i], xs[i]]), int(fx[ys[i], xs[i]])) for i in order]


def fft_notch(
    image: StillImage,
    *,
    peaks: Sequence[Sequence[float]] | None = None,
    radius: float = 1.5,
    count: int = 2,
    exclude: float = 3.0,
    threshold: float = 20.0,
) -> StillImage:
    """Remove periodic noise: zero discs of the Fourier transform around given frequencies.

    Parameters
    ----------
    image : StillImage
    peaks : list of (fy, fx), optional
        Frequencies in cycles per image height/width (as from :func:`find_periodic_peaks`);
        each is removed together with its mirror ``(-fy, -fx)`` so the result stays real.
        ``None``: find the ``count`` strongest peaks automatically (``exclude`` and
        ``threshold`` as in :func:`find_periodic_peaks`). Note that an atomic lattice is
        periodic too: automatic mode removes it when it is the strongest pattern.
    radius : float
        Radius of each zeroed disc, in frequency bins (> 0).

    Returns
    -------
    StillImage
        The filtered image; ``metadata["processing"][-1]["peaks"]`` records the frequencies
        actually removed, so that the step replays identically.
    """
    image = _check_image(image, "fft_notch")
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"fft_notch: radius must be a positive number of bins, got {radius!r}")
    if peaks is None:
        found = find_periodic_peaks(image, count=count, exclude=exclude, threshold=threshold)
        chosen = [(float(a), float(b)) for a, b in found]
    else:
        chosen = []
        for i, peak in enumerate(peaks):
            try:
                a, b = (float(v) for v in peak)
            except (TypeError, ValueError):
                raise ValueError(
                    f"fft_notch: peaks[{i}] must be a pair (fy, fx) of numbers, got {peak!r}"
                ) from None
            chosen.append((a, b))
    rows, cols = image.shape
    fy, fx = _signed_frequencies(rows, cols)
    mask = np.zeros(image.shape, dtype=bool)
    for a, b in chosen:
        for sa, sb in ((a, b), (-a, -b)):
            # distance on the periodic frequency grid (a peak near Nyquist wraps around)
            dy = (fy - sa + rows / 2) % rows - rows / 2
            dx = (fx - sb + cols / 2) % cols - cols / 2
            mask |= np.hypot(dy, dx) <= radius
    data = image.data
    nan = ~np.isfinite(data)
    filled = np.where(nan, np.nanmean(data), data)
    spectrum = np.fft.fft2(filled)
    spectrum[mask] = 0.0
    out = np.fft.ifft2(spectrum).real
    out[nan] = np.nan
    step = {
        "step": "fft_notch",
        "peaks": [[_whole(a), _whole(b)] for a, b in chosen],
        "radius": float(radius),
    }
    return image.with_data(out, step)


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# ---------------------------------------------------------------------------------------------
# step lists

#: The steps :func:`apply` knows, by name.
STEPS: dict[str, Callable[..., StillImage]] = {
    "plane_fit": plane_fit,
    "align_rows": align_rows,
    "fix_zero": fix_zero,
    "fft_notch": fft_notch,
}


def _options(function: Callable[..., StillImage]) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(function).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _check_option(index: int, name: str, key: str, value: Any, default: Any) -> Any:
    where = f"step {index} ({name}): option {key!r}"
    if key == "peaks":
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(p, (list, tuple))
            and len(p) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
            for p in value
        ):
            raise StepError(f"{where} must be a list of [fy, fx] number pairs or null, got {value!r}")
        return [list(p) for p in value]
    if isinstance(default, str):
        if not isinstance(value, str):
            raise StepError(f"{where} must be a string, got {value!r}")
        if key == "method" and value not in ROW_METHODS:
            raise StepError(f"{where} is {value!r}; use one of {', '.join(ROW_METHODS)}")
        return value
    if isinstance(default, bool):  # pragma: no cover - no boolean options yet
        if not isinstance(value, bool):
            raise StepError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise StepError(f"{where} must be a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise StepError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    return value  # pragma: no cover


def validate_steps(steps: Any) -> list[dict[str, Any]]:
    """Check a step list and return it normalised (a new list of new dicts).

    Parameters
    ----------
    steps : list of dict
        Each ``{"step": name, **options}`` with ``name`` a key of :data:`STEPS` and options the
        keyword options of that function (e.g. ``{"step": "align_rows", "method":
        "polynomial", "order": 2}``). JSON-able, so it can be stored or passed to a job.

    Raises
    ------
    StepError
        Not a list, an entry that is not a dict, no or an unknown ``"step"``, an unknown option
        or one of the wrong type; the message names the step's position and the field.
    """
    if not isinstance(steps, (list, tuple)):
        raise StepError(f"the steps must be a list of {{'step': name, ...}} dicts, got {type(steps).__name__}")
    out = []
    for index, entry in enumerate(steps):
        if not isinstance(entry, Mapping):
            raise StepError(f"step {index} must be a dict like {{'step': 'plane_fit'}}, got {entry!r}")
        name = entry.get("step")
        if name not in STEPS:
            raise StepError(
                f"step {index}: 'step' is {name!r}; use one of {', '.join(STEPS)}"
            )
        options = _options(STEPS[name])
        clean: dict[str, Any] = {"step": name}
        for key, value in entry.items():
            if key == "step":
                continue
            if key not in options:
                allowed = ", ".join(options) or "none"
                raise StepError(f"step {index} ({name}): unknown option {key!r}; allowed: {allowed}")
            clean[key] = _check_option(index, name, key, value, options[key].default)
        out.append(clean)
    return out


def apply(
    image: StillImage,
    steps: Sequence[Mapping[str, Any]],
    progress: Callable[[int, int, str], None] | None = None,
) -> StillImage:
    """Run a step list on an image, in order.

    Parameters
    ----------
    image : StillImage
    steps : list of dict
        See :func:`validate_steps`; validated completely before anything runs.
    progress : callable, optional
        Called as ``progress(done, total, step_name)`` after each step.

    Returns
    -------
    StillImage
        ``metadata["processing"]`` ends with the steps as run (with automatic FFT peaks filled
        in), so applying that list to the raw image again gives the same result.

    Examples
    --------
    >>> y, x = np.mgrid[0:16, 0:16]
    >>> out = apply(StillImage(5 + x + y), [{"step": "plane_fit"}, {"step": "fix_zero"}])
    >>> [s["step"] for s in out.metadata["processing"]]
    ['plane_fit', 'fix_zero']
    """
    image = _check_image(image, "apply")
    clean = validate_steps(steps)
    for done, step in enumerate(clean, start=1):
        options = {k: v for k, v in step.items() if k != "step"}
        image = STEPS[step["step"]](image, **options)
        if progress is not None:
            progress(done, len(clean), step["step"])
    return image


# ---------------------------------------------------------------------------------------------
# figures and export


def _extent(image: StillImage) -> tuple[list[float] | None, str]:
    if image.size is None:
        return None, "px"
    width, height = image.size
    scale, unit = (1e9, "nm") if max(width, height) < 1e-6 else (1e6, "µm")
    return [0.0, width * scale, height * scale, 0.0], unit


def _draw(ax: Any, image: StillImage, cmap: str, title: str) -> None:
    extent, unit = _extent(image)
    shown = ax.imshow(image.data, cmap=cmap, extent=extent, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"x ({unit})")
    ax.set_ylabel(f"y ({unit})")
    bar = ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(image.unit or "a.u.")


def before_after_png(
    before: StillImage, after: StillImage, *, cmap: str = "afmhot", dpi: int = 100
) -> bytes:
    """A PNG with ``before`` and ``after`` side by side (axes in nm/µm when calibrated).

    Drawn with matplotlib's Agg canvas (no display, no pyplot state). The titles say
    "synthetic" for synthetic images and list the steps of ``after``.
    """
    _check_image(before, "before_after_png")
    _check_image(after, "before_after_png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [s.get("step", "?") for s in after.metadata.get("processing", [])[
        len(before.metadata.get("processing", [])):]]
    fig = Figure(figsize=(9.0, 4.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_before, ax_after = fig.subplots(1, 2)
    _draw(ax_before, before, cmap, f"before: {before.title}")
    _draw(ax_after, after, cmap, "after: " + (" → ".join(steps) or after.title))
    if before.synthetic or after.synthetic:
        fig.suptitle("synthetic data", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def png_bytes(image: StillImage, *, cmap: str = "afmhot", dpi: int = 100) -> bytes:
    """One image as a PNG figure with axes, colour bar and title."""
    _check_image(image, "png_bytes")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 4.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    _draw(fig.subplots(), image, cmap, image.title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _gsf_text(value: Any) -> str:
    """A header value on one ASCII line (GSF headers are ``key = value`` lines)."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.encode("ascii", "replace").decode("ascii")


def gsf_bytes(image: StillImage) -> bytes:
    """The image as a Gwyddion Simple Field (``.gsf``) file, as bytes.

    Format (gwyddion.net, "GSF"): the line ``Gwyddion Simple Field 1.0``, ``key = value``
    lines (``XRes``, ``YRes``, ``XReal``, ``YReal`` in metres, ``XYUnits``, ``ZUnits``,
    ``Title``), 1–4 NUL bytes so the header length is a multiple of 4, then ``XRes·YRes``
    little-endian float32 values row by row. Without a pixel size, ``XReal``/``YReal`` are the
    pixel counts and ``XYUnits`` is empty.
    """
    _check_image(image, "gsf_bytes")
    rows, cols = image.shape
    if image.size is None:
        real_x, real_y, xy_units = float(cols), float(rows), ""
    else:
        real_x, real_y = image.size
        xy_units = "m"
    lines = [
        "Gwyddion Simple Field 1.0",
        f"XRes = {cols}",
        f"YRes = {rows}",
        f"XReal = {real_x:.9g}",
        f"YReal = {real_y:.9g}",
        f"XYUnits = {xy_units}",
        f"ZUnits = {_gsf_text(image.unit)}",
        f"Title = {_gsf_text(image.title)}",
    ]
    header = ("\n".join(lines) + "\n").encode("ascii")
    header += b"\0" * (4 - len(header) % 4)
    return header + image.data.astype("<f4").tobytes()


def write_gsf(image: StillImage, path: str | os.PathLike[str]) -> Path:
    """Write :func:`gsf_bytes` to ``path`` (``.gsf`` added when missing); returns the path."""
    target = Path(path)
    if target.suffix.lower() != ".gsf":
        target = target.with_name(target.name + ".gsf")
    target.write_bytes(gsf_bytes(image))
    return target

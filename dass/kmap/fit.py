"""Peak fitting of q-space histograms through xsocs' :class:`~xsocs.process.fit.PeakFitter`.

xsocs projects each position's 3-D q-space histogram onto the qx, qy and qz axes (normalised by
the bin hit counts), optionally subtracts a background (none, constant, SNIP) and fits each
projection with a Gaussian or takes its centroid. dass checks the parameters, runs PeakFitter
unchanged, writes xsocs' own fit file (``FitResult.to_fit_h5``) and returns the numbers as
plain ``(n, 3)`` arrays in :class:`FitResult`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KmapInputError, KmapProcessingError

METHODS = ("gaussian", "centroid")
BACKGROUNDS = ("none", "constant", "snip")

__all__ = ["BACKGROUNDS", "METHODS", "FitResult", "fit", "read_fit", "from_xsocs"]


@dataclass
class FitResult:
    """Fitted peak per scan position: ``(n, 3)`` arrays, columns (qx, qy, qz).

    ``status`` is 0 where the fit of that axis succeeded and 1 where it failed (xsocs stores
    the opposite, a boolean "ok"; :meth:`ok_mask` gives the positions where all three axes are
    ok). ``raw`` holds every parameter xsocs returned, by its xsocs name (``Area``, ``Center``,
    ``Sigma`` for the Gaussian; ``COM``, ``I_sum``, ``I_max``, ``Pos_max`` for the centroid),
    each ``(n, 3)``, unchanged.
    """

    path: Path
    """The xsocs fit HDF5 file written (or read)."""
    x: np.ndarray
    """(n,) sample x position of each point, µm."""
    y: np.ndarray
    """(n,) sample y position of each point, µm."""
    center: np.ndarray
    """(n, 3) peak centre (qx, qy, qz), Å⁻¹: Gaussian ``Center`` or centroid ``COM``."""
    height: np.ndarray
    """(n, 3) peak height of the projection: Area / (√(2π) σ) for the Gaussian, ``I_max``
    for the centroid."""
    width: np.ndarray
    """(n, 3) Gaussian σ, Å⁻¹ (NaN for the centroid, which has no width)."""
    status: np.ndarray
    """(n, 3) int8: 0 = ok, 1 = failed."""
    method: str
    """"gaussian" or "centroid" (xsocs' fits), or "direct" (:mod:`dass.kmap.direct`)."""
    background: str
    """"none", "constant" or "snip"."""
    axis_names: tuple[str, str, str] = ("qx", "qy", "qz")
    raw: dict[str, np.ndarray] | None = None
    axes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    """The q axes (bin centres, Å⁻¹) the fit saw (the q-space ROI when one was given):
    a centre outside them is masked by :func:`dass.kmap.maps.strain_tilt`."""
    center_err: np.ndarray | None = None
    """(n, 3) 1 σ uncertainty of the centre, Å⁻¹ (engine "direct" only; xsocs gives none)."""
    q_norm_err: np.ndarray | None = None
    """(n,) 1 σ uncertainty of |q|, Å⁻¹ (engine "direct" only)."""

    def ok_mask(self) -> np.ndarray:
        """(n,) bool: True where the fit succeeded on all three axes and the centre is finite."""
        return (self.status == 0).all(axis=1) & np.isfinite(self.center).all(axis=1)

    @property
    def q_norm(self) -> np.ndarray:
        """(n,) |q| of the fitted centre, Å⁻¹."""
        return np.linalg.norm(self.center, axis=1)


_METHOD_CODES = {"gaussian": 0, "centroid": 1}  # xsocs FitTypes.GAUSSIAN / CENTROID
_BACKGROUND_NAMES = {"none": "None", "constant": "Constant", "snip": "Snip"}


def _method_code(method: str) -> int:
    if method not in _METHOD_CODES:
        raise KmapInputError(f"unknown fit method {method!r}: use one of {METHODS}", field="method")
    from xsocs.process.fit import FitTypes

    return FitTypes.GAUSSIAN if method == "gaussian" else FitTypes.CENTROID


def _background_code(background: str) -> Any:
    if background not in _BACKGROUND_NAMES:
        raise KmapInputError(
            f"unknown background {background!r}: use one of {BACKGROUNDS}", field="background"
        )
    from xsocs.process.fit import BackgroundTypes

    return {"none": BackgroundTypes.NONE, "constant": BackgroundTypes.CONSTANT,
            "snip": BackgroundTypes.SNIP}[background]


def from_xsocs(result: Any, path: str | Path) -> FitResult:
    """Turn an ``xsocs.process.fit.FitResult`` into a dass :class:`FitResult` (no numerical change)."""
    from xsocs.process.fit import FitTypes

    names = [n for n in result.available_result_names if n != "Status"]
    raw = {n: np.stack([result.get_results(d, n) for d in range(3)], axis=1) for n in names}
    ok = np.stack([result.get_results(d, "Status") for d in range(3)], axis=1).astype(bool)
    if result.fit_mode == FitTypes.GAUSSIAN:
        method = "gaussian"
        center = raw["Center"]
        width = raw["Sigma"]
        with np.errstate(invalid="ignore", divide="ignore"):
            height = raw["Area"] / (math.sqrt(2.0 * math.pi) * width)
    else:
        method = "centroid"
        center = raw["COM"]
        width = np.full_like(center, np.nan)
        height = raw["I_max"]
    mode = result.background_mode
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    bg = {v: k for k, v in _BACKGROUND_NAMES.items()}.get(mode, mode.lower())
    return FitResult(
        path=Path(path), x=np.asarray(result.sample_x, dtype=np.float64),
        y=np.asarray(result.sample_y, dtype=np.float64), center=center, height=height,
        width=width, status=(~ok).astype(np.int8), method=method, background=bg,
        axis_names=tuple(n.decode() if isinstance(n, bytes) else str(n)
                         for n in result.qspace_dimension_names),
        raw=raw,
        axes=tuple(np.asarray(a, dtype=np.float64) for a in result.qspace_dimension_values),
    )


def _check_qspace(path: Path) -> tuple[list[np.ndarray], int]:
    import h5py

    if not path.is_file():
        raise KmapInputError("q-space file not found: run dass.kmap.qspace.convert first",
                             file=path)
    if not h5py.is_hdf5(path):
        raise KmapInputError("not an HDF5 file: pass the QSpace HDF5 written by "
                             "dass.kmap.qspace.convert", file=path)
    from xsocs.io.QSpaceH5 import QSpaceH5

    try:
        with QSpaceH5(str(path)) as qh5:
            axes = [np.asarray(a) for a in qh5.qspace_dimension_values]
            with qh5.qspace_dset_ctx() as dset:
                n = int(dset.shape[0])
            qh5.histo  # noqa: B018 - must exist for the fit
    except (KeyError, TypeError, OSError) as exc:
        raise KmapInputError(
            f"not an xsocs q-space file ({exc}): it needs Data/qspace, Data/histo and the "
            "q axes; write it with dass.kmap.qspace.convert", file=path,
        ) from None
    return axes, n


def _roi_indices(roi: Sequence[Sequence[float]], axes: list[np.ndarray], path: Path) -> list[list[int]]:
    try:
        bounds = [(float(lo), float(hi)) for lo, hi in roi]
    except (TypeError, ValueError):
        bounds = []
    if len(bounds) != 3:
        raise KmapInputError(
            f"q-space roi must be ((qx_min, qx_max), (qy_min, qy_max), (qz_min, qz_max)) in "
            f"1/Å; got {roi!r}", file=path, field="roi",
        )
    out = []
    for name, axis, (lo, hi) in zip(("qx", "qy", "qz"), axes, bounds):
        idx = np.nonzero((axis >= lo) & (axis <= hi))[0]
        if idx.size < 3:
            raise KmapInputError(
                f"roi {name} range [{lo}, {hi}] holds {idx.size} bins (need at least 3); the "
                f"{name} axis spans [{axis[0]:.5f}, {axis[-1]:.5f}] 1/Å", file=path, field="roi",
            )
        out.append([int(idx[0]), int(idx[-1]) + 1])
    return out


def fit(
    qspace_h5: str | Path,
    output: str | Path,
    *,
    method: str = "gaussian",
    background: str = "none",
    roi: Sequence[Sequence[float]] | None = None,
    n_proc: int = 1,
    overwrite: bool = False,
    progress: Callable[[float], None] | None = None,
) -> FitResult:
    """Fit the peak of every position of a q-space file with xsocs' PeakFitter.

    Parameters
    ----------
    qspace_h5
        QSpace HDF5 written by :func:`dass.kmap.qspace.convert` (or xsocs).
    output
        Fit HDF5 to write (xsocs' own layout, readable by the X-SOCS GUI and :func:`read_fit`).
    method
        "gaussian" (1-D Gaussian per axis projection) or "centroid" (centre of mass).
    background
        "none", "constant" (subtract the minimum) or "snip".
    roi
        Optional q-space box ``((qx_min, qx_max), (qy_min, qy_max), (qz_min, qz_max))`` in Å⁻¹;
        the fit sees only the bins inside (xsocs ``roi_indices``).
    n_proc
        Worker processes.
    overwrite
        Replace an existing ``output``.
    progress
        Called with the fraction of positions done (0..1).

    Returns
    -------
    FitResult
    """
    qpath = Path(qspace_h5)
    out = Path(output)
    code = _method_code(method)
    bg = _background_code(background)
    if int(n_proc) < 1:
        raise KmapInputError(f"n_proc must be >= 1, got {n_proc}", field="n_proc")
    axes, _ = _check_qspace(qpath)
    roi_indices = _roi_indices(roi, axes, qpath) if roi is not None else None
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists: pass overwrite=True to replace it")
        os.remove(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    from xsocs.process.fit import PeakFitter

    fitter = PeakFitter(str(qpath), fit_type=code, n_proc=int(n_proc),
                        roi_indices=roi_indices, background=bg)
    if progress is None:
        result = fitter.peak_fit()
    else:
        for frac in fitter.peak_fit_iterator():
            progress(float(frac))
        result = fitter.results
        progress(1.0)
    if fitter.status != PeakFitter.DONE or result is None:
        raise KmapProcessingError(f"xsocs PeakFitter ended with status {fitter.status}", file=qpath)
    result.to_fit_h5(str(out), mode="w")
    return from_xsocs(result, out)


def read_fit(path: str | Path) -> FitResult:
    """Read a fit HDF5 written by :func:`fit` (or the X-SOCS GUI)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise KmapInputError("fit file not found", file=p)
    if not h5py.is_hdf5(p):
        raise KmapInputError("not an HDF5 file: pass a fit file written by dass.kmap.fit.fit",
                             file=p)
    from xsocs.process.fit import FitResult as XsocsFitResult

    try:
        result = XsocsFitResult.from_fit_h5(str(p))
    except (KeyError, RuntimeError, TypeError, IndexError) as exc:
        raise KmapInputError(f"not an xsocs fit file ({exc}): write it with dass.kmap.fit.fit",
                             file=p) from None
    with h5py.File(p, "r") as h5:
        engine = h5.attrs.get("dass_engine")
    out = from_xsocs(result, p)
    if engine in ("direct", b"direct"):
        out = _labelled(out)
    return out


def _labelled(result: FitResult) -> FitResult:
    """A FitResult from a direct fit file: method "direct", uncertainties filled in."""
    raw = result.raw or {}
    result.method = "direct"
    if "Center_err" in raw:
        result.center_err = raw["Center_err"]
    if "Qnorm_err" in raw:
        result.q_norm_err = raw["Qnorm_err"][:, 0]
    return result

"""Q-space conversion of a KMAP scan through xsocs' :class:`~xsocs.process.qspace.QSpaceConverter`.

Per sample position xsocs maps every pixel of every rocking-angle frame to its q vector
(xrayutilities), and bins the intensities into a regular (qx, qy, qz) histogram; the output is
xsocs' QSpace HDF5 (``Data/qspace`` (n, nx, ny, nz), ``Data/histo`` hit counts, the q axes,
sample positions). dass checks the master file and the parameters first, then runs the
converter unchanged, reporting its progress.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KmapInputError, KmapProcessingError
from .inputs import ScanInfo, check_master, check_normalizer, load_mask

__all__ = ["convert", "check_parameters"]

log = logging.getLogger(__name__)

POLL_S = 0.02


def check_parameters(
    info: ScanInfo,
    *,
    grid: Sequence[int],
    roi: Sequence[float] | None = None,
    mask: Any = None,
    normalizer: str | None = None,
    medfilt: Sequence[int] | None = None,
    n_proc: int = 1,
) -> dict[str, Any]:
    """Validate conversion parameters against a checked scan; return them normalised.

    Raises :class:`KmapInputError` naming the parameter and what to fix.
    """
    try:
        g = [int(v) for v in grid]
    except (TypeError, ValueError):
        g = []
    if len(g) != 3 or min(g) < 2 or any(float(a) != b for a, b in zip(grid, g)):
        raise KmapInputError(f"grid must be three integers >= 2 (bins along qx, qy, qz), got "
                             f"{grid!r}", file=info.path, field="grid")
    out: dict[str, Any] = {"grid": g, "roi": None, "mask": None, "normalizer": None,
                           "normalizer_bad": np.zeros(info.n_positions, bool), "medfilt": None,
                           "indices": np.arange(info.n_positions)}
    if roi is not None:
        try:
            r = [float(v) for v in roi]
        except (TypeError, ValueError):
            r = []
        if len(r) != 4 or not np.isfinite(r).all() or r[0] > r[1] or r[2] > r[3]:
            raise KmapInputError(
                f"roi must be (x_min, x_max, y_min, y_max) in sample coordinates (µm) with "
                f"min <= max, got {roi!r}", file=info.path, field="roi",
            )
        sel = (info.x >= r[0]) & (info.x <= r[1]) & (info.y >= r[2]) & (info.y <= r[3])
        if not sel.any():
            raise KmapInputError(
                f"roi {r} selects no scan position; the scan spans x [{info.x.min():g}, "
                f"{info.x.max():g}] and y [{info.y.min():g}, {info.y.max():g}] µm",
                file=info.path, field="roi",
            )
        out["roi"] = r
        out["indices"] = np.nonzero(sel)[0]  # xsocs' own rule (QSpaceConverter roi)
    if mask is not None:
        m = mask if isinstance(mask, (str, os.PathLike)) else np.asarray(mask)
        if not isinstance(m, np.ndarray):
            m = load_mask(m)
        if m.shape != info.frame_shape:
            raise KmapInputError(
                f"mask must have the frame shape {info.frame_shape} (non-zero = masked pixel), "
                f"got shape {m.shape}", file=info.path, field="mask",
            )
        if np.count_nonzero(m) == m.size:
            raise KmapInputError("mask masks every pixel: nothing would be converted",
                                 file=info.path, field="mask")
        out["mask"] = m
    if normalizer is not None:
        if normalizer not in info.normalizers:
            raise KmapInputError(
                f"normalizer {normalizer!r} is not a 1-D counter with one value per frame in "
                f"measurement; available: {info.normalizers}", file=info.path,
                entry=info.entries[0], field="normalizer",
            )
        out["normalizer"] = str(normalizer)
        out["normalizer_bad"] = check_normalizer(info, str(normalizer))
    if medfilt is not None:
        try:
            mf = [int(v) for v in medfilt]
        except (TypeError, ValueError):
            mf = []
        if len(mf) != 2 or min(mf) < 1:
            raise KmapInputError(f"medfilt must be two integers >= 1 (kernel rows, cols), got "
                                 f"{medfilt!r}", file=info.path, field="medfilt")
        out["medfilt"] = mf
    if int(n_proc) < 1:
        raise KmapInputError(f"n_proc must be >= 1, got {n_proc}", field="n_proc")
    return out


def convert(
    master: str | Path,
    output: str | Path,
    *,
    grid: Sequence[int] = (40, 40, 40),
    roi: Sequence[float] | None = None,
    mask: Any = None,
    normalizer: str | None = None,
    medfilt: Sequence[int] | None = None,
    n_proc: int = 1,
    overwrite: bool = False,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """Convert a KMAP scan to q space with xsocs; return the QSpace HDF5 path.

    Parameters
    ----------
    master
        xsocs master HDF5 (checked with :func:`dass.kmap.inputs.check_master` first).
    output
        QSpace HDF5 to write.
    grid
        Number of bins along (qx, qy, qz).
    roi
        (x_min, x_max, y_min, y_max) in sample coordinates (µm): convert only those positions.
    mask
        2-D array of the frame shape, non-zero = pixel left out.
    normalizer
        Name of a measurement counter to divide each frame by (for example a monitor).
    medfilt
        (rows, cols) median-filter kernel applied to each frame after the mask.
    n_proc
        Worker processes.
    overwrite
        Replace an existing ``output``.
    progress
        Called with the fraction done (0..1) while xsocs converts.

    Returns
    -------
    Path of the QSpace HDF5 (xsocs' ``QSpaceH5`` layout).

    Examples
    --------
    >>> convert("scan/kmap_master.h5", "scan/qspace.h5", grid=(40, 40, 40))  # doctest: +SKIP
    """
    info = check_master(master)
    params = check_parameters(info, grid=grid, roi=roi, mask=mask, normalizer=normalizer,
                              medfilt=medfilt, n_proc=n_proc)
    out = Path(output)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)

    from xsocs.process.qspace import QSpaceConverter

    converter = QSpaceConverter(
        str(info.path), qspace_dims=params["grid"], medfilt_dims=params["medfilt"],
        output_f=str(out), roi=params["roi"],
    )
    converter.normalizer = params["normalizer"]
    converter.mask = params["mask"]
    converter.n_proc = int(n_proc)
    log.info("kmap %s: converting %d positions to q space, grid %s, %d process(es)",
             info.path, info.n_positions, params["grid"], n_proc)
    try:
        if progress is None:
            converter.convert(overwrite=overwrite)
        else:
            converter.convert(overwrite=overwrite, blocking=False)
            last = -1
            while converter.is_running():
                done = int(converter.progress())
                if done != last:
                    progress(done / 100.0)
                    last = done
                time.sleep(POLL_S)
            converter.wait()
            progress(1.0)
    except ValueError as exc:  # xsocs' own parameter / consistency checks
        raise KmapInputError(f"xsocs refused the input: {exc}", file=info.path) from None
    if converter.status != QSpaceConverter.DONE:
        raise KmapProcessingError(
            f"xsocs q-space conversion ended with status {converter.status}: "
            f"{converter.status_msg}", file=info.path,
        )
    return Path(os.fspath(out))

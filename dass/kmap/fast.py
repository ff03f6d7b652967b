"""The "dass" engine: q-space conversion and peak fit in one pass, with xsocs' exact numbers.

xsocs (:class:`~xsocs.process.qspace.QSpaceConverter` then
:class:`~xsocs.process.fit.PeakFitter`) spends most of its time around the arithmetic: it
opens and reads every frame on its own, writes every position's cube through a lock, moves
each index through a manager queue, and the fit re-reads every cube from the file. This
engine does the same arithmetic in the same order and changes only the plumbing:

* the pixel-to-bin table (silx ``histogramnd_get_lut``, as xsocs calls it) is built once per
  entry, from the q of every pixel (xsocs' own ``qspace_conversion``) and the same bin ranges;
* frames are read in blocks of positions, per entry;
* each position is histogrammed in one pass over all its entries' pixels, in xsocs' order
  (entry by entry, pixel by pixel) with float64 sums, so every bin gets the same float64
  value as xsocs' repeated ``histogramnd_from_lut`` calls;
* each cube is fitted as soon as it exists, from the float32 values the q-space file holds
  (xsocs' ``project``, ``background_estimation``, ``centroid``; the Gaussian fit runs xsocs'
  ``gaussian_fit`` arithmetic with MINPACK ``lmdif`` called as ``leastsq`` calls it, without
  ``leastsq``'s unused covariance: :func:`_gaussian_fit`);
* the process that made a block's cubes also deflates their chunks (the q-space file's own
  gzip filter and level) and the parent writes them as raw chunks; with ``n_proc`` > 1,
  forked worker processes take blocks of positions, so compression runs in parallel and
  writes need no lock. ``n_proc=1`` is one process and one thread doing everything;
* ``qspace_output=None`` (``write_qspace=False`` in :func:`dass.kmap.service.process_scan`)
  skips the 4-D q-space file when only the maps are wanted.

The q-space file (when written) holds the same datasets and values as xsocs'; the fit file is
written by xsocs' own ``FitResult.to_fit_h5``. Tests compare both with xsocs (max abs
difference 0) on several geometries, masks, normalizers and NaN positions.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KmapInputError, KmapProcessingError
from .fit import BACKGROUNDS, METHODS, FitResult, from_xsocs
from .inputs import check_master, frame_reader_error
from .qspace import check_parameters

__all__ = ["convert_fit", "BLOCK_BYTES"]

log = logging.getLogger(__name__)

#: Memory for one block of frames (all entries) in a worker, bytes.
BLOCK_BYTES = 128 * 2**20
#: At most this many positions per block (progress granularity, pickling size).
MAX_BLOCK = 256

# the plan that forked workers inherit (set by convert_fit before the pool starts)
_PLAN: dict[str, Any] | None = None


def _geometry(master: Path, mask: np.ndarray | None) -> dict[str, Any]:
    """Everything xsocs' ``QSpaceConverter`` derives before its pool starts, computed the same way."""
    from silx.math.chistogramnd_lut import histogramnd_get_lut
    from xsocs.io import XsocsH5
    from xsocs.io.QSpaceH5 import QSpaceCoordinates
    from xsocs.process.qspace import qspace_conversion
    with XsocsH5.XsocsH5(str(master), mode="r") as h5:
        entries = list(h5.entries())
        first = entries[0]
        beam_energy = [h5.beam_energy(entry=e) for e in entries]
        chan_per_deg = h5.chan_per_deg(entry=first)
        center_chan = h5.direct_beam(entry=first)
        offset = h5.image_roi_offset(entry=first)
        if offset is None:
            offset = 0, 0
        n_images = h5.n_images(entry=first)
        img_size = h5.image_size(entry=first)
        positions = h5.scan_positions(first)
        sample_x, sample_y = positions.pos_0, positions.pos_1
        files, phi, eta, nu, delta, dtypes = [], [], [], [], [], []
        for e in entries:
            f = h5.entry_filename(e)
            if not os.path.isabs(f):
                f = os.path.abspath(os.path.join(os.path.dirname(str(master)), f))
            files.append(f)
            phi.append(h5.positioner(e, "phi"))
            eta.append(h5.positioner(e, "eta"))
            nu.append(h5.positioner(e, "nu"))
            delta.append(h5.positioner(e, "del"))
            dtypes.append(h5.image_dtype(entry=e))
    if len(set(map(str, dtypes))) != 1:
        raise KmapInputError(f"all entries must hold frames of one data type, found {sorted(set(map(str, dtypes)))}",
                             file=master, field="measurement/image/data")
    if mask is not None:
        row, col = offset
        mask = mask[row: row + img_size[0], col: col + img_size[1]]
        if mask.shape != tuple(img_size):
            raise KmapInputError(f"mask shape {mask.shape} does not match the frames {tuple(img_size)} "
                                 f"after the image ROI offset {tuple(offset)}", file=master, field="mask")
    center = (center_chan[0] - offset[0], center_chan[1] - offset[1])
    q_ar = qspace_conversion(img_size, center, chan_per_deg, beam_energy, phi, eta, nu, delta,
                             coordinates=QSpaceCoordinates.CARTESIAN)
    q_ar.shape = q_ar.shape[0], q_ar.shape[1] * q_ar.shape[2], q_ar.shape[3]
    if mask is not None:
        q_ar[:, mask.reshape(-1) != 0, :] = np.nan
    return {
        "entries": entries, "files": files, "q_ar": q_ar, "img_size": tuple(int(v) for v in img_size),
        "n_images": int(n_images), "dtype": np.dtype(dtypes[0]), "sample_x": sample_x, "sample_y": sample_y,
        "center": center, "chan_per_deg": chan_per_deg, "mask": mask,
        "lut_fn": histogramnd_get_lut,
    }


def _bins(q_ar: np.ndarray, dims: Sequence[int]) -> tuple[list[np.ndarray], list]:
    """Bin centres and ranges, in xsocs' arithmetic (grid from the nan-min/max of q)."""
    from xsocs.util import bin_centers_to_range_step

    centers, ranges = [], []
    for d in range(3):
        lo = np.nanmin(q_ar[:, :, d])
        hi = np.nanmax(q_ar[:, :, d])
        step = (hi - lo) / (dims[d] - 1.0)
        c = lo + step * np.arange(0, dims[d], dtype=np.float64)
        centers.append(c)
        ranges.append(bin_centers_to_range_step(c)[:2])
    return centers, ranges


def _chunk_layout(dims: Sequence[int]) -> tuple[tuple[int, int, int], list[tuple[slice, slice, slice]]]:
    """xsocs' q-space chunk shape and the slices of one cube's chunks, in C order."""
    chunk = tuple(max(int(d) // 4, 1) for d in dims)
    slices = []
    for i in range(0, dims[0], chunk[0]):
        for j in range(0, dims[1], chunk[1]):
            for k in range(0, dims[2], chunk[2]):
                slices.append((slice(i, i + chunk[0]), slice(j, j + chunk[1]), slice(k, k + chunk[2])))
    return chunk, slices  # type: ignore[return-value]


def _chunk_blocks(cube32: np.ndarray, chunk: tuple[int, int, int]) -> np.ndarray:
    """``(n_chunks, c0 * c1 * c2)`` float32: the cube cut into its HDF5 chunks, C order,
    edge chunks padded with zeros (HDF5 stores full chunks)."""
    grid = [-(-d // c) for d, c in zip(cube32.shape, chunk)]
    padded = [g * c for g, c in zip(grid, chunk)]
    if list(cube32.shape) != padded:
        full = np.zeros(padded, dtype=np.float32)
        full[: cube32.shape[0], : cube32.shape[1], : cube32.shape[2]] = cube32
        cube32 = full
    blocks = cube32.reshape(grid[0], chunk[0], grid[1], chunk[1], grid[2], chunk[2])
    return np.ascontiguousarray(blocks.transpose(0, 2, 4, 1, 3, 5)).reshape(grid[0] * grid[1] * grid[2], -1)


def _deflate(blocks: np.ndarray, level: int) -> list[tuple[int, bytes]]:
    """The non-zero chunks as the gzip filter stores them: ``(chunk number, zlib stream)``.

    All-zero chunks are not written at all: HDF5 reads an unwritten chunk as the dataset's
    fill value, 0, so the values are the same. This runs in the process that made the cube:
    ``zlib.compress`` releases the GIL, but a thread that deflates xsocs' small chunks
    (1.4 kB at a 28^3 grid) needs the GIL back after each one and gets it only every
    switch interval (5 ms) while the fits run, so in a thread most of it ran after the fits
    anyway (the wait for it was up to a third of a block's time), with the switching on top.
    """
    size = blocks.shape[1] * blocks.itemsize
    flat = memoryview(np.ascontiguousarray(blocks)).cast("B")  # slices of it are cheap views
    return [(i, zlib.compress(flat[i * size: (i + 1) * size], level))
            for i in np.flatnonzero(blocks.any(axis=1)).tolist()]


def _lmdif() -> Callable[..., tuple] | None:
    """MINPACK's ``lmdif`` as :func:`scipy.optimize.leastsq` calls it, or None.

    ``leastsq(func, x0, args, full_output=True, maxfev=...)`` checks the shapes by calling
    ``func`` once, calls ``_minpack._lmdif`` with its defaults and then, with
    ``full_output``, builds a covariance matrix (a triangular inverse) that xsocs'
    ``gaussian_fit`` never reads. Calling ``_lmdif`` with the same arguments runs the same
    iterations on the same inputs, so it returns the same parameters and status, and saves
    about 40 % of the time of each fit. A scipy without it gets ``leastsq`` itself.
    """
    global _LMDIF
    if _LMDIF is False:
        try:
            from scipy.optimize import _minpack

            _LMDIF = _minpack._lmdif
        except (ImportError, AttributeError):  # pragma: no cover - another scipy layout
            _LMDIF = None
    return _LMDIF


_LMDIF: Any = False  # resolved on first use (scipy.optimize takes a second to import)
# leastsq's defaults: ftol, xtol, gtol; xsocs' maxfev; epsfcn = the eps of the residuals'
# dtype (float64); factor; diag
_LMDIF_ARGS = (1.49012e-8, 1.49012e-8, 0.0, 100000, float(np.finfo(np.float64).eps), 100, None)
# xsocs' constant, numpy.sqrt(2 * numpy.pi) (xsocs.util._SQRT_2_PI), computed the same way
_SQRT_2_PI = np.sqrt(2 * np.pi)


def _gaussian_residual(parameters: np.ndarray, axis: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """xsocs' ``_gaussian_err``: ``gaussian(axis, *parameters) - signal``, the same float64
    operations in the same order (so the same values), with less Python around them."""
    area, center, sigma = parameters.tolist()
    arg = axis - center
    arg /= sigma
    arg *= arg  # ``** 2``: numpy squares as x * x
    arg *= -0.5
    scale = area / (_SQRT_2_PI * sigma)  # a numpy float64: x / 0 gives inf or nan, as in xsocs
    out = np.exp(arg)  # a new array, as in xsocs (same exp loop)
    out *= scale
    out -= signal
    return out


def _gaussian_fit(axis: np.ndarray, signal: np.ndarray) -> tuple[float, float, float, bool]:
    """xsocs' ``peak_fit.gaussian_fit`` with the same starting values, optimiser and status:
    ``(area, center, sigma, ok)``.

    The starting values are computed as xsocs computes them; MINPACK ``lmdif`` is called
    directly (see :func:`_lmdif`) with the arguments ``leastsq`` gives it. Where ``leastsq``
    would refuse the input (fewer points than parameters), where the inputs are not float64
    or ``lmdif`` is not reachable, xsocs' function itself runs, so results and errors are
    xsocs' there too.
    """
    lmdif = _lmdif()
    if lmdif is None or len(axis) < 3 or axis.dtype != np.float64 or signal.dtype != np.float64:
        from xsocs.process.fit.peak_fit import gaussian_fit

        return gaussian_fit(axis, signal)
    area = signal.sum() * (axis[-1] - axis[0]) / len(axis)
    center = axis[signal.argmax()]
    sigma = area / (signal.max() * _SQRT_2_PI)
    x0 = np.asarray((area, center, sigma)).flatten()  # as leastsq makes it
    got = lmdif(_gaussian_residual, x0, (axis, signal), 0, *_LMDIF_ARGS)
    if got[-1] not in (1, 2, 3, 4):
        return float("nan"), float("nan"), float("nan"), False
    area, center, sigma = got[0]
    return float(area), float(center), float(sigma), True


def _hit_sums(hits: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The bin counts summed onto each axis as xsocs' ``project`` sums them, and where they
    are <= 0: computed once instead of once per position."""
    tmp = hits.sum(2)
    sums = tmp.sum(1), tmp.sum(0), hits.sum((0, 1))
    return tuple((s, s <= 0) for s in sums)


def _project(cube: np.ndarray, hit_sums: tuple[tuple[np.ndarray, np.ndarray], ...]) -> list[np.ndarray]:
    """xsocs' ``util.project(cube, hits)``: the same sums of the same array divided by the same
    counts (so the same values), with the counts' sums taken from :func:`_hit_sums`."""
    tmp = cube.sum(2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = [tmp.sum(1) / hit_sums[0][0], tmp.sum(0) / hit_sums[1][0], cube.sum((0, 1)) / hit_sums[2][0]]
    for arr, (_, empty) in zip(out, hit_sums):
        arr[empty] = 0
    return out


def _process_block(bounds: tuple[int, int]) -> dict[str, Any]:
    """Histogram, fit (and deflate) the positions ``indices[a:b]`` of the plan."""
    import h5py
    from silx.math.medianfilter import medfilt2d
    from xsocs.process.fit.peak_fit import background_estimation, centroid

    plan = _PLAN
    assert plan is not None
    a, b = bounds
    idx = plan["indices"][a:b]
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    rows = idx - lo
    dims = plan["dims"]
    nbins = int(np.prod(dims))
    medfilt = plan["medfilt"]
    t0 = time.perf_counter()
    blocks = []
    for e, (fname, entry) in enumerate(zip(plan["files"], plan["entries"])):
        with h5py.File(fname, "r") as h5:
            dset = h5[f"{entry}/measurement/image/data"]
            try:
                raw = dset[lo:hi]
            except (OSError, RuntimeError) as exc:
                raise frame_reader_error(exc, dset, entry, lo, hi) from None
        frames = raw[rows].astype(plan["img_dtype"], copy=False)
        if plan["norm"] is not None:
            if frames is raw:
                frames = frames.copy()
            frames /= plan["norm"][e][idx][:, None, None]
        if medfilt is not None:
            frames = np.stack([medfilt2d(np.ascontiguousarray(f), medfilt, mode="constant", cval=0)
                               for f in frames])
        flat = frames.reshape(len(idx), -1)
        blocks.append(flat[:, plan["valid"][e]].astype(np.float64, copy=False))
    weights = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    del blocks
    t1 = time.perf_counter()
    lut = plan["lut"]
    fit_func = centroid if plan["method"] == "centroid" else _gaussian_fit
    bg = plan["background"]
    qslice = plan["qslice"]
    axes = plan["fit_axes"]
    hit_sums = plan["hit_sums"]
    fits, sums, chunks = [], np.empty(len(idx), dtype=np.float64), []
    cubes32 = []
    for p in range(len(idx)):
        cube = np.bincount(lut, weights=weights[p], minlength=nbins).reshape(dims)
        sums[p] = cube.sum(dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            cubes32.append(cube.astype(np.float32))
        if plan["write"] and not plan["write_raw"]:
            chunks.append(cube)
    t2 = time.perf_counter()
    for cube32 in cubes32:
        q = cube32 if qslice is None else np.ascontiguousarray(cube32[qslice])
        projections = _project(q, hit_sums)
        if bg is not None:
            for arr in projections:
                arr -= background_estimation(bg, arr)
        fits.append([fit_func(ax, sig) for ax, sig in zip(axes, projections)])
    t3 = time.perf_counter()
    if plan["write_raw"]:
        level = plan["gzip_level"]
        table, streams = [], []
        for p, cube32 in enumerate(cubes32):
            for i, stream in _deflate(_chunk_blocks(cube32, plan["chunk"]), level):
                table.append((a + p, i, len(stream)))
                streams.append(stream)
        # one buffer and one table per block: cheap to pickle back to the parent
        chunks = (np.array(table, dtype=np.int64).reshape(-1, 3), b"".join(streams))
    log.debug("kmap block %d:%d (pid %d): read %.3f s, histogram %.3f s, fit %.3f s, deflate %.3f s",
              a, b, os.getpid(), t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
    return {"bounds": bounds, "fits": fits, "sums": sums, "chunks": chunks}


def convert_fit(
    master: str | os.PathLike[str],
    qspace_output: str | os.PathLike[str] | None,
    fit_output: str | os.PathLike[str],
    *,
    grid: Sequence[int] = (40, 40, 40),
    roi: Sequence[float] | None = None,
    mask: Any = None,
    normalizer: str | None = None,
    medfilt: Sequence[int] | None = None,
    method: str = "gaussian",
    background: str = "none",
    fit_roi: Sequence[Sequence[float]] | None = None,
    n_proc: int = 1,
    qspace_compression: str | None = "gzip",
    overwrite: bool = False,
    progress: Callable[[float], None] | None = None,
) -> FitResult:
    """Convert a KMAP scan to q space and fit every position, with xsocs' exact numbers.

    Parameters
    ----------
    master
        xsocs master HDF5 (checked with :func:`dass.kmap.inputs.check_master`).
    qspace_output
        QSpace HDF5 to write (xsocs' layout and values), or None to skip it.
    fit_output
        Fit HDF5 to write (xsocs' ``FitResult.to_fit_h5``).
    grid, roi, mask, normalizer, medfilt
        As :func:`dass.kmap.qspace.convert`.
    method, background, fit_roi
        As :func:`dass.kmap.fit.fit` (``fit_roi`` is its ``roi``).
    n_proc
        Worker processes (1: everything in this process).
    qspace_compression
        Filter of the q-space cubes: ``"gzip"`` (xsocs' default, deflated by the workers),
        ``"lzf"`` or None (lighter and faster; the same values, a larger file).
    overwrite
        Replace existing outputs.
    progress
        Called with the fraction of positions done (0..1).

    Returns
    -------
    FitResult
        Equal, value for value, to :func:`dass.kmap.fit.fit` on the file of
        :func:`dass.kmap.qspace.convert`.
    """
    global _PLAN
    from xsocs.io.FitH5 import BackgroundTypes
    from xsocs.io.QSpaceH5 import QSpaceCoordinates
    from xsocs.process.fit import FitResult as XsocsFitResult
    from xsocs.process.fit import FitTypes

    start = time.perf_counter()
    info = check_master(master)
    params = check_parameters(info, grid=grid, roi=roi, mask=mask, normalizer=normalizer,
                              medfilt=medfilt, n_proc=n_proc)
    if method not in METHODS:
        raise KmapInputError(f"unknown fit method {method!r}: use one of {METHODS}", field="method")
    if qspace_compression not in ("gzip", "lzf", None):
        raise KmapInputError(f"unknown q-space compression {qspace_compression!r}: use 'gzip', 'lzf' or None",
                             field="qspace_compression")
    if background not in BACKGROUNDS:
        raise KmapInputError(f"unknown background {background!r}: use one of {BACKGROUNDS}", field="background")
    fit_path = Path(fit_output)
    q_path = Path(qspace_output) if qspace_output is not None else None
    for path in (q_path, fit_path):
        if path is not None and path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists: pass overwrite=True to replace it")
    dims = [int(v) for v in params["grid"]]
    mask_arr = params["mask"]
    if mask_arr is not None and np.count_nonzero(mask_arr) == mask_arr.size:
        mask_arr = None
    geo = _geometry(info.path, mask_arr)
    q_ar = geo.pop("q_ar")
    centers, ranges = _bins(q_ar, dims)
    histo = np.zeros(dims, dtype=np.int32)
    luts, valid = [], []
    for e in range(q_ar.shape[0]):
        got = geo["lut_fn"](q_ar[e, ...], ranges, dims, last_bin_closed=True)
        lut, counts = got[0], got[1]
        histo += counts
        keep = np.nonzero(lut >= 0)[0]
        valid.append(keep)
        luts.append(lut[keep].astype(np.intp))
    del q_ar
    fit_roi_indices = None
    if fit_roi is not None:
        from .fit import _roi_indices

        fit_roi_indices = _roi_indices(fit_roi, centers, info.path)
    qslice = None
    fit_axes = centers
    fit_hits = histo
    if fit_roi_indices is not None:
        qslice = tuple(slice(lo, hi) for lo, hi in fit_roi_indices)
        fit_axes = [c[s] for c, s in zip(centers, qslice)]
        fit_hits = histo[qslice]
    indices = np.asarray(params["indices"], dtype=np.int64)
    n = int(indices.size)
    img_dtype = geo["dtype"]
    norm = None
    if params["normalizer"]:
        if img_dtype.kind != "f":
            img_dtype = np.dtype(np.float64)
        from xsocs.io import XsocsH5

        with XsocsH5.XsocsH5(str(info.path), mode="r") as h5:
            norm = [h5.measurement(e, params["normalizer"]) for e in geo["entries"]]
    medfilt_dims = None
    if params["medfilt"] is not None and list(params["medfilt"]) != [1, 1]:
        medfilt_dims = np.array(params["medfilt"], ndmin=1)
    bg_code = {"none": None, "constant": BackgroundTypes.CONSTANT, "snip": BackgroundTypes.SNIP}[background]

    write = q_path is not None
    dset_info: dict[str, Any] = {}
    if write:
        from xsocs.process.qspace.QSpaceConverter import _create_result_file

        # the same file xsocs creates (its own writer, chunks and compression)
        q_path.parent.mkdir(parents=True, exist_ok=True)
        _create_result_file(
            str(q_path), tuple(dims),
            np.array(np.array(params["medfilt"], dtype=np.int32) if params["medfilt"] is not None else (1, 1), ndmin=1),
            params["roi"], geo["sample_x"][indices], geo["sample_y"][indices], *centers, histo,
            selected_entries=geo["entries"], discarded_entries=[],
            compression=qspace_compression,
            qspace_chunks=(1, *(max(d // 4, 1) for d in dims)),
            qspace_sum_chunks=(max(n // 10, 1),),
            overwrite=True, beam_energy=None, direct_beam=geo["center"],
            channels_per_degree=geo["chan_per_deg"], normalizer=params["normalizer"], mask=geo["mask"],
            maxipix_correction=False, coordinates=QSpaceCoordinates.CARTESIAN,
        )
        import h5py

        with h5py.File(q_path, "r") as h5:
            ds = h5["Data/qspace"]
            raw_ok = (ds.compression == "gzip" and not ds.shuffle and not ds.fletcher32
                      and ds.scaleoffset is None and ds.dtype == np.float32)
            raw_ok = raw_ok and ds.fillvalue == 0
            dset_info = {"gzip_level": int(ds.compression_opts or 4) if raw_ok else 0, "raw": raw_ok}
    chunk, chunk_slices = _chunk_layout(dims)
    frame_bytes = 8 * int(np.prod(geo["img_size"])) * len(geo["entries"])
    block = int(max(1, min(MAX_BLOCK, BLOCK_BYTES // max(frame_bytes, 1))))
    n_workers = max(1, min(int(n_proc), math.ceil(n / block)))
    if n_workers > 1:  # keep every worker busy: at least ~4 blocks each
        block = max(1, min(block, math.ceil(n / (4 * n_workers))))
    _PLAN = {
        "files": geo["files"], "entries": geo["entries"], "indices": indices, "dims": tuple(dims),
        "img_dtype": img_dtype, "norm": norm, "medfilt": medfilt_dims, "valid": valid,
        "lut": np.concatenate(luts) if len(luts) > 1 else luts[0], "method": method, "background": bg_code,
        "qslice": qslice, "fit_axes": fit_axes, "hit_sums": _hit_sums(fit_hits), "write": write,
        "write_raw": write and dset_info.get("raw", False), "gzip_level": dset_info.get("gzip_level", 4),
        "chunk": chunk, "chunk_slices": chunk_slices,
    }
    bounds = [(a, min(n, a + block)) for a in range(0, n, block)]
    log.debug("kmap %s: set up in %.3f s", info.path, time.perf_counter() - start)
    log.info("kmap %s: dass engine, %d positions in %d block(s), %d process(es), grid %s, q-space file %s",
             info.path, n, len(bounds), n_workers, dims, q_path or "skipped")
    fits: list[Any] = [None] * n
    sums = np.empty(n, dtype=np.float64)
    try:
        import h5py

        qh5 = h5py.File(q_path, "r+") if write else None
        try:
            qds = qh5["Data/qspace"] if qh5 is not None else None
            write_chunk = qds.id.write_direct_chunk if qds is not None else None
            chunk_starts = [tuple(sl.start for sl in cs) for cs in chunk_slices]
            if n_workers > 1:
                ctx = multiprocessing.get_context("fork")
                pool = ctx.Pool(n_workers)
                results = pool.imap(_process_block, bounds)
            else:
                pool = None
                results = map(_process_block, bounds)
            try:
                done = 0
                for res in results:
                    a, b = res["bounds"]
                    fits[a:b] = res["fits"]
                    sums[a:b] = res["sums"]
                    if qds is not None:
                        if _PLAN["write_raw"]:
                            table, data = res["chunks"]
                            view, end = memoryview(data), 0
                            for p, i, size in table.tolist():
                                write_chunk((p, *chunk_starts[i]), view[end: end + size])
                                end += size
                        else:
                            qds[a:b] = np.stack(res["chunks"])
                    done += b - a
                    log.debug("kmap %s: positions %d:%d written at %.3f s", info.path, a, b,
                              time.perf_counter() - start)
                    if progress is not None:
                        progress(done / n)
            finally:
                if pool is not None:
                    pool.close()
                    pool.join()
            if qh5 is not None:
                qh5["Data/qspace_sum"][:] = sums
        finally:
            if qh5 is not None:
                qh5.close()
    except BaseException:
        if q_path is not None:  # no half-written q-space file is left behind
            q_path.unlink(missing_ok=True)
        raise
    finally:
        _PLAN = None

    if method == "gaussian":
        dtype = [("Area", np.float64), ("Center", np.float64), ("Sigma", np.float64), ("Status", np.bool_)]
    else:
        dtype = [("COM", np.float64), ("I_sum", np.float64), ("I_max", np.float64), ("Pos_max", np.float64),
                 ("Status", np.bool_)]
    x_pos = np.asarray(geo["sample_x"], dtype=np.float64)[indices]
    y_pos = np.asarray(geo["sample_y"], dtype=np.float64)[indices]
    result = XsocsFitResult(
        sample_x=x_pos, sample_y=y_pos, q_dim_values=tuple(fit_axes),
        q_dim_names=QSpaceCoordinates.axes_names(QSpaceCoordinates.CARTESIAN),
        roi_indices=np.array(fit_roi_indices) if fit_roi_indices is not None else None,
        fit_mode=FitTypes.GAUSSIAN if method == "gaussian" else FitTypes.CENTROID,
        background_mode={"none": BackgroundTypes.NONE, "constant": BackgroundTypes.CONSTANT,
                         "snip": BackgroundTypes.SNIP}[background],
        fit_results=np.array(fits, dtype=dtype),
    )
    if fit_path.exists():
        fit_path.unlink()
    fit_path.parent.mkdir(parents=True, exist_ok=True)
    result.to_fit_h5(str(fit_path), mode="w")
    log.debug("kmap %s: fit file written at %.3f s", info.path, time.perf_counter() - start)
    if not fit_path.is_file():  # pragma: no cover - to_fit_h5 raises on failure
        raise KmapProcessingError("the fit file was not written", file=fit_path)
    return from_xsocs(result, fit_path)

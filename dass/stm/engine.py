"""The fast engine of FAST processing: pyfastspm's arithmetic, vectorised, with a cache.

pyfastspm spends most of a standard run in two places: building the interpolation matrix of
the sinusoidal scan grid (``pyfastspm.artefact_removal.interpolate.get_interpolation_matrix``:
a Delaunay triangulation, then a Python loop that writes three barycentric weights per grid
point into a ``lil_matrix``) and aligning rows (``align_rows``: ``np.apply_along_axis`` over
every row of every frame). This module does the same arithmetic on whole arrays:

- :func:`interpolation_matrix` triangulates with the same ``scipy.spatial.Delaunay``, finds
  the same simplices, and computes the barycentric weights with the same BLAS products
  (``np.matmul`` over the stack of 2 x 2 transforms, which calls the same ``gemv`` as
  pyfastspm's per-point ``dot``: an element-wise formula differs in the last bit where BLAS
  fuses multiply and add). The weights go into a CSR matrix with the entries, column order and
  NaN rows (grid points outside the triangulation) that pyfastspm's ``lil_matrix`` gives, so
  ``matrix @ frame`` is pyfastspm's product, number for number. scipy's barycentric transforms
  call LAPACK once per triangle: the build runs with one BLAS thread (threadpoolctl), which
  is many times faster than two.
- :func:`interpolation_matrices` caches the pair of matrices per scan geometry: frame shape,
  channels, offset, scale and the creep-corrected grid (the grid follows from the scan's
  points, frequencies and phase through the creep fit). A live preview that changes only later
  steps, or another movie of the same geometry, reuses them.
- :func:`interpolate` applies them to all frames at once, in pyfastspm's order (including its
  handling of ``d``-only channels, whose frames it interpolates twice), then ``nan_to_num``.
- :func:`align_rows` subtracts the row means or medians of all frames at once; the polynomial
  baselines run pyfastspm's own ``align_rows``.

The frames are identical to pyfastspm's (max abs diff 0; the tests compare both engines on the
two real FAST files of the pyfastspm wheel and on a synthetic movie). Every function here acts
on a pyfastspm ``FastMovie`` in place, as the pyfastspm function it replaces.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "ENGINES",
    "align_rows",
    "clear_cache",
    "interpolate",
    "interpolation_matrices",
    "interpolation_matrix",
    "one_blas_thread",
]

#: Processing engines of :func:`dass.stm.process.process`: ``"dass"`` (this module) and
#: ``"pyfastspm"`` (the library's own functions, the reference).
ENGINES: tuple[str, ...] = ("dass", "pyfastspm")

#: How many geometries :func:`interpolation_matrices` keeps (a 196 x 196 movie's pair of
#: matrices takes about 4 MB).
CACHE_SIZE = 8

_cache: collections.OrderedDict[str, tuple[Any, Any]] = collections.OrderedDict()
_cache_lock = threading.Lock()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS/LAPACK to one thread inside the block (threadpoolctl; nothing when it is
    not installed). scipy's Delaunay computes one tiny LAPACK factorisation per triangle, and
    OpenBLAS with two threads or more makes each of them far slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is in the stm extra
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def interpolation_matrix(points: np.ndarray, grid_points: np.ndarray):
    """The sparse matrix that interpolates values measured at ``points`` onto ``grid_points``:
    pyfastspm's ``get_interpolation_matrix``, built on whole arrays.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        ``(y, x)`` of the measured samples.
    grid_points : ndarray, shape (m, 2)
        ``(y, x)`` of the regular grid.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (m, n), float64
        Row ``i`` holds the barycentric weights of grid point ``i`` in its Delaunay triangle
        (zero weights left out); a grid point outside the triangulation gets NaN at the corners
        of the last triangle, as in pyfastspm.
    """
    from scipy.sparse import csr_matrix
    from scipy.spatial import Delaunay

    points = np.asarray(points, dtype=np.float64)
    grid_points = np.asarray(grid_points, dtype=np.float64)
    with one_blas_thread():
        triangulation = Delaunay(points)
        simplex = triangulation.find_simplex(grid_points)
        transform = triangulation.transform[simplex]  # simplex -1 takes the last one, as pyfastspm
    corners = triangulation.simplices[simplex]
    # the same gemv as pyfastspm's transform[s, :2].dot(point - transform[s, 2])
    weights2 = np.matmul(transform[:, :2], (grid_points - transform[:, 2])[:, :, None])[:, :, 0]
    weights = np.empty((len(grid_points), 3))
    weights[:, :2] = weights2
    weights[:, 2] = 1 - (weights2[:, 0] + weights2[:, 1])
    weights[simplex == -1] = np.nan
    rows = np.repeat(np.arange(len(grid_points)), 3)
    cols = corners.ravel()
    vals = weights.ravel()
    keep = vals != 0  # lil_matrix drops an assigned zero; NaN is kept
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, rows))  # lil keeps each row sorted by column
    indptr = np.zeros(len(grid_points) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(grid_points)), out=indptr[1:])
    matrix = csr_matrix((vals[order], cols[order].astype(np.int32), indptr.astype(np.int32)),
                        shape=(len(grid_points), len(points)))
    matrix.has_sorted_indices = True
    return matrix


def _grids(ny: int, nx: int, channels: str, offset: float, grid: Any, dist_x: float, dist_y: float):
    """``(points_up, grid_up, points_down, grid_down)`` as pyfastspm's ``interpolate`` builds
    them for a movie of ``channels`` with frames of ``ny`` x ``nx``."""
    from .library import pyfastspm

    pyfastspm()
    from pyfastspm.artefact_removal.interpolate import _output_x_grid, _output_y_grid

    rows = ny if "i" in channels else 2 * ny
    y, t1 = _output_y_grid(rows, nx)
    x, t2 = _output_x_grid(rows, nx)
    if grid is None:
        y_up, y_down = y, y[:, ::-1]
    else:
        y_up, y_down = (np.asarray(g) for g in grid)
    xnew, ynew = np.meshgrid(t2 * dist_x, t1 * dist_y)
    ynew = ynew + offset

    def pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.column_stack((np.ravel(a), np.ravel(b)))

    if "f" in channels:
        up, down, lines = (0, 1, 0)
    elif "b" in channels:
        up, down, lines = (1, 0, 1)
    else:  # interlaced
        return pairs(y_up, x), pairs(ynew, xnew), pairs(y_down, x), pairs(ynew, xnew)
    new = pairs(ynew[lines::2], xnew[lines::2])
    return pairs(y_up[up::2], x[lines::2]), new, pairs(y_down[down::2], x[lines::2]), new


def _digest(*parts: Any) -> str:
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.shape, part.dtype.str)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()


def interpolation_matrices(
    shape: tuple[int, int],
    channels: str,
    *,
    offset: float = 0.0,
    grid: tuple[np.ndarray, np.ndarray] | None = None,
    dist: tuple[float, float] = (1.0, 1.0),
    cache: bool = True,
) -> tuple[Any, Any]:
    """The up and down interpolation matrices of a scan geometry, cached.

    Parameters
    ----------
    shape : (rows, columns)
        Frame shape of the movie in ``channels``.
    channels : str
        The movie's channels (``"udi"``, ``"udf"``, …).
    offset : float
        y offset of the regular grid (the ``interpolate`` step's ``offset``).
    grid : (ndarray, ndarray), optional
        Creep-corrected y grids of up and down frames (the ``creep`` step); ``None``: the
        uncorrected grid.
    dist : (float, float)
        pyfastspm's ``FastMovie.dist_x``, ``dist_y`` scale factors.
    cache : bool
        Look up and keep the pair in the cache (the key covers every argument, the grids by
        content).

    Returns
    -------
    (csr_matrix, csr_matrix)
        The matrices pyfastspm's ``interpolate`` builds for up and down frames.
    """
    ny, nx = (int(n) for n in shape)
    kind = "i" if "i" in channels else ("f" if "f" in channels else "b")
    grids = (None,) if grid is None else tuple(np.asarray(g, dtype=np.float64) for g in grid)
    key = _digest(ny, nx, kind, float(offset), float(dist[0]), float(dist[1]), *grids)
    if cache:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
    p_up, g_up, p_down, g_down = _grids(ny, nx, channels, offset, grid, dist[0], dist[1])
    pair = (interpolation_matrix(p_up, g_up), interpolation_matrix(p_down, g_down))
    if cache:
        with _cache_lock:
            _cache[key] = pair
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return pair


def clear_cache() -> None:
    """Forget every cached interpolation matrix."""
    with _cache_lock:
        _cache.clear()


def _apply(matrix: Any, frames: np.ndarray) -> np.ndarray:
    """``matrix @ frame`` for every frame (float64 products, as scipy's ``dot`` of pyfastspm's
    float32 frame), returned as float64 frames."""
    n, ny, nx = frames.shape
    stacked = frames.reshape(n, ny * nx).T.astype(np.float64)
    return np.ascontiguousarray((matrix @ stacked).T).reshape(n, -1, nx)


def interpolate(movie: Any, *, offset: float = 0.0, grid: Any = None, image_range: Any = None,
                cache: bool = True) -> None:
    """pyfastspm's ``interpolate(movie, offset, grid, image_range)``, on all frames at once.

    Acts on ``movie.data`` in place (a pyfastspm ``FastMovie`` in movie mode), with the
    matrices of :func:`interpolation_matrices`.
    """
    if movie.mode != "movie":
        raise ValueError("you must first reshape your data in movie mode.")
    channels = movie.channels
    ny, nx = movie.data.shape[1:]
    up, down = interpolation_matrices((ny, nx), channels, offset=offset, grid=grid,
                                      dist=(movie.dist_x, movie.dist_y), cache=cache)
    frames = np.array([f for _, _, f in movie.iter_frames(image_range)], dtype=np.intp)
    # pyfastspm: with "d" in the channels, even frames take the up matrix and odd ones the
    # down matrix; without "d", every frame the up matrix; without "u", then the down matrix
    # once more (so "df", "db", "di" frames are interpolated twice, in float32 between)
    if "d" in channels:
        for parity, matrix in ((0, up), (1, down)):
            chosen = frames[frames % 2 == parity]
            if len(chosen):
                movie.data[chosen] = _apply(matrix, movie.data[chosen])
    else:
        if len(frames):
            movie.data[frames] = _apply(up, movie.data[frames])
    if "u" not in channels and len(frames):
        movie.data[frames] = _apply(down, movie.data[frames])
    movie.data = np.nan_to_num(movie.data, copy=False)


def align_rows(movie: Any, method: str = "median") -> None:
    """pyfastspm's ``align_rows(movie, method)``: subtract each row's baseline.

    ``"mean"`` and ``"median"`` are computed for all rows of all frames at once (numpy's mean
    and median along the row give the numbers of the per-row calls); ``"poly2"`` and
    ``"poly3"`` run pyfastspm's own function.
    """
    if method not in ("mean", "median"):
        from .library import pyfastspm, quiet

        with quiet():
            pyfastspm().align_rows(movie, method)
        return
    data = movie.data
    baseline = (np.mean if method == "mean" else np.median)(data, axis=2, keepdims=True)
    np.subtract(data, baseline.astype(data.dtype, copy=False), out=data)

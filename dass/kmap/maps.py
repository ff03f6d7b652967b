"""Strain and tilt maps from fitted Bragg-peak positions: what X-SOCS leaves to the user.

X-SOCS stops at one fitted q vector per sample position (:func:`dass.kmap.fit.fit`). This
module turns those vectors into maps on the regular (ny, nx) grid of scan positions:

* **strain** ``ε = |q0| / |q| − 1`` (equal to ``d / d0 − 1``), with ``q0`` from a
  :class:`Reference`: a reflection (hkl and a cubic lattice constant, or a d-spacing) or a
  reference region of the map itself;
* **pitch** and **roll**, the direction of ``q`` relative to the reference direction (see
  :func:`tilt_frame` for the exact definition, which reproduces xsocs' own ``spherical``
  q-space coordinates when the reference direction is ``+z``);
* a mask of the positions whose value cannot be trusted (xsocs fit status, NaN, peak height
  or width out of range, |q| or strain out of range, no data), with the reason per position;
* summary statistics per map (:func:`summary`).

All functions are pure: inputs are never modified. The q axes are those of xsocs' cartesian
q-space (``xsocs.process.qspace.QSpaceConverter``, ``xu.HXRD([1, 0, 0], [0, 0, 1])``):
``x`` along the beam (downstream), ``z`` up (the surface normal of a specular reflection),
``y`` completing a right-handed frame; q in Å⁻¹, positions in µm, angles in degrees.

Examples
--------
>>> import numpy as np
>>> from dass.kmap.maps import Reference, strain_tilt_arrays
>>> ref = Reference.from_reflection((0, 0, 4), lattice_a=5.431, energy_kev=8.0)
>>> round(ref.q0_norm, 4)
4.6276
>>> q = np.array([[0.0, 0.0, ref.q0_norm / 1.001]])          # 0.1 % tensile along z
>>> m = strain_tilt_arrays([0.0], [0.0], q, ref)
>>> float(np.round(m.strain[0, 0], 12))
0.001
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import KmapInputError

if TYPE_CHECKING:  # pragma: no cover
    from .fit import FitResult

__all__ = [
    "HC_KEV_ANGSTROM",
    "MAP_NAMES",
    "MAP_UNITS",
    "MASK_REASONS",
    "MASK_REASON_TEXT",
    "Maps",
    "Reference",
    "edge_positions",
    "position_grid",
    "robust_limits",
    "strain_tilt",
    "strain_tilt_arrays",
    "summary",
    "tilt_angles",
    "tilt_frame",
    "validity",
]

log = logging.getLogger(__name__)

#: h·c in keV·Å (λ[Å] = 12.398 / E[keV]), the value xrayutilities uses.
HC_KEV_ANGSTROM = 12.398419843320026

#: The maps of :class:`Maps`, in export order.
MAP_NAMES: tuple[str, ...] = ("strain", "pitch", "roll", "q_norm", "qx", "qy", "qz")
#: Units of each map (NeXus ``units`` attribute); strain is dimensionless.
MAP_UNITS: dict[str, str] = {
    "strain": "",
    "pitch": "deg",
    "roll": "deg",
    "q_norm": "1/angstrom",
    "qx": "1/angstrom",
    "qy": "1/angstrom",
    "qz": "1/angstrom",
}
#: Readable names (NeXus ``long_name``, plot titles).
MAP_LONG_NAMES: dict[str, str] = {
    "strain": "strain ε = |q0|/|q| − 1",
    "pitch": "pitch (tilt about the 2nd axis ⊥ q0) / deg",
    "roll": "roll (tilt about the 1st axis ⊥ q0) / deg",
    "q_norm": "|q| / Å⁻¹",
    "qx": "qx / Å⁻¹",
    "qy": "qy / Å⁻¹",
    "qz": "qz / Å⁻¹",
}

#: Reasons a position is masked, in the order they are checked (the code of a reason in
#: :meth:`Maps.reason_map` is its index + 1; 0 = ok).
MASK_REASONS: tuple[str, ...] = (
    "no_data", "normalizer", "fit_status", "not_finite", "outside_grid", "peak", "height", "width",
    "q_range", "strain_range",
)
#: What each reason means (legend of the reason map, summary and exports).
MASK_REASON_TEXT: dict[str, str] = {
    "no_data": "no scan position at this grid cell",
    "normalizer": "normalizer (monitor) value <= 0 or not finite",
    "fit_status": "the fit reported a failure",
    "not_finite": "fitted q is not finite or zero",
    "outside_grid": "fitted centre outside the q-space grid",
    "peak": "fitted peak height or width not finite or not positive",
    "height": "peak height below min_height",
    "width": "peak width above max_width",
    "q_range": "|q| outside q_range",
    "strain_range": "strain outside strain_range",
}

_PERCENTILES = (1, 5, 25, 75, 95, 99)


# ---------------------------------------------------------------------------------------------
# reference


def _vector3(value: Any, what: str) -> np.ndarray:
    try:
        vec = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise KmapInputError(f"{what} is {value!r}, not three numbers; give e.g. (0, 0, 1)") from None
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        raise KmapInputError(f"{what} is {value!r}, not three finite numbers; give e.g. (0, 0, 1)")
    if not np.any(vec):
        raise KmapInputError(f"{what} is the zero vector; give a direction such as (0, 0, 1)")
    return vec


def _positive(value: Any, what: str, fix: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise KmapInputError(f"{what} is {value!r}, not a number; {fix}") from None
    if not math.isfinite(number) or number <= 0:
        raise KmapInputError(f"{what} is {value!r}, it must be a positive number; {fix}")
    return number


@dataclass(frozen=True)
class Reference:
    """The unstrained, untilted scattering vector ``q0`` that maps are relative to.

    Build it with :meth:`from_reflection` (hkl and a cubic lattice constant, or a d-spacing),
    :meth:`from_region` (median q of a region of the map) or :meth:`from_vector`.

    Attributes
    ----------
    q0 : numpy.ndarray
        ``(3,)`` reference vector (qx, qy, qz) in Å⁻¹, xsocs' cartesian q axes.
    source : str
        ``"reflection"``, ``"region"`` or ``"vector"``.
    params : dict
        JSON-able parameters it was built from (hkl, lattice constant, d-spacing, energy,
        Bragg angle, region and number of points), written to the exports.
    """

    q0: np.ndarray
    source: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def q0_norm(self) -> float:
        """``|q0|`` in Å⁻¹."""
        return float(np.linalg.norm(self.q0))

    @property
    def direction(self) -> np.ndarray:
        """Unit vector along ``q0``."""
        return self.q0 / self.q0_norm

    @property
    def d_spacing(self) -> float:
        """``d0 = 2π / |q0|`` in Å."""
        return 2 * math.pi / self.q0_norm

    @classmethod
    def from_reflection(
        cls,
        hkl: Sequence[int] | None = None,
        lattice_a: float | None = None,
        *,
        d_spacing: float | None = None,
        energy_kev: float | None = None,
        direction: Sequence[float] = (0.0, 0.0, 1.0),
    ) -> Reference:
        """The reference of a reflection: ``|q0| = 2π / d``.

        Parameters
        ----------
        hkl : sequence of 3 ints, optional
            Miller indices; with ``lattice_a`` (cubic lattice), ``d = a / √(h² + k² + l²)``.
        lattice_a : float, optional
            Cubic lattice constant in Å (Si: 5.431).
        d_spacing : float, optional
            The d-spacing in Å, for any lattice (instead of ``hkl`` and ``lattice_a``).
        energy_kev : float, optional
            Beam energy; when given, checks that the reflection is reachable
            (``λ / 2d ≤ 1``) and records the Bragg angle.
        direction : 3 floats
            Direction of ``q0`` in xsocs' q axes; default ``+z`` (specular reflection of a
            sample whose surface normal is z, the xsocs geometry).

        Raises
        ------
        KmapInputError
            When neither or both of (hkl, lattice_a) and d_spacing are given, or a value is
            not positive, or the reflection cannot be reached at this energy.
        """
        params: dict[str, Any] = {}
        if d_spacing is not None:
            if hkl is not None or lattice_a is not None:
                raise KmapInputError("reference: give either hkl and lattice_a, or d_spacing, not both")
            d = _positive(d_spacing, "reference d_spacing", "give the d-spacing in Å")
        else:
            if hkl is None or lattice_a is None:
                raise KmapInputError(
                    "reference: give hkl and lattice_a (cubic, Å), or d_spacing (Å), e.g. "
                    "Reference.from_reflection((0, 0, 4), lattice_a=5.431)"
                )
            try:
                h = [int(v) for v in hkl]
            except (TypeError, ValueError):
                raise KmapInputError(f"reference hkl is {hkl!r}, not three integers; give e.g. (0, 0, 4)") from None
            if len(h) != 3 or not any(h) or any(float(v) != int(float(v)) for v in hkl):
                raise KmapInputError(f"reference hkl is {hkl!r}, not three integers (not all 0); give e.g. (0, 0, 4)")
            a = _positive(lattice_a, "reference lattice_a", "give the cubic lattice constant in Å (Si: 5.431)")
            d = a / math.sqrt(sum(v * v for v in h))
            params.update(hkl=h, lattice_a=a)
        params["d_spacing"] = d
        if energy_kev is not None:
            energy = _positive(energy_kev, "reference energy_kev", "give the beam energy in keV")
            wavelength = HC_KEV_ANGSTROM / energy
            ratio = wavelength / (2 * d)
            if ratio > 1:
                raise KmapInputError(
                    f"reference: the reflection (d = {d:.4g} Å) cannot be reached at {energy:g} keV "
                    f"(λ/2d = {ratio:.3g} > 1); check hkl, lattice_a and energy_kev"
                )
            params.update(energy_kev=energy, wavelength=wavelength, bragg_angle_deg=math.degrees(math.asin(ratio)))
        unit = _vector3(direction, "reference direction")
        unit = unit / np.linalg.norm(unit)
        params["direction"] = unit.tolist()
        q0 = unit * (2 * math.pi / d)
        return cls(q0=q0, source="reflection", params=params)

    @classmethod
    def from_vector(cls, q0: Sequence[float]) -> Reference:
        """A reference given directly as a q vector (Å⁻¹, xsocs' cartesian q axes)."""
        vec = _vector3(q0, "reference q0")
        return cls(q0=vec.copy(), source="vector", params={"q0": vec.tolist()})

    @classmethod
    def from_region(
        cls,
        fit: FitResult,
        region: Any,
        *,
        min_height: float | None = None,
        max_width: float | None = None,
        tol: float | tuple[float, float] | None = None,
    ) -> Reference:
        """The median q vector of a region of the map, so that strain and tilts are ≈ 0 there.

        Parameters
        ----------
        fit : FitResult
            The fit results (:func:`dass.kmap.fit.fit`).
        region : mask or box
            Either a boolean mask over the fit's points (shape ``(n,)``) or over the position
            grid (shape ``(ny, nx)`` of :func:`position_grid`), or a box
            ``(x_min, x_max, y_min, y_max)`` in µm (sample coordinates, bounds included).
        min_height, max_width, tol
            As in :func:`strain_tilt`: points failing them are left out of the median.

        Raises
        ------
        KmapInputError
            When the region is malformed or holds no well-fitted point.
        """
        x, y, centers, ok = _fit_arrays(fit)
        outside, bad_peak = validity(fit, centers)
        ok = ok & _quality_mask(fit, centers, min_height, max_width)[0] & ~outside & ~bad_peak
        selected = _region_mask(region, x, y, tol)
        use = selected & ok
        if not use.any():
            raise KmapInputError(
                f"reference region {_describe_region(region)} holds {int(selected.sum())} position(s) and "
                "none with a good fit; choose a region inside the well-fitted part of the map"
            )
        q0 = np.median(centers[use], axis=0)
        params = {"region": _describe_region(region), "n_points": int(use.sum()), "q0": q0.tolist()}
        return cls(q0=q0, source="region", params=params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (for exports and the summary)."""
        return {
            "source": self.source,
            "q0": [float(v) for v in self.q0],
            "q0_norm": self.q0_norm,
            "d_spacing": self.d_spacing,
            **{k: v for k, v in self.params.items() if k not in ("q0",)},
        }


def _describe_region(region: Any) -> str:
    arr = np.asarray(region)
    if arr.dtype == bool:
        return f"mask of {int(arr.sum())}/{arr.size} positions"
    return f"box {tuple(float(v) for v in arr.reshape(-1))!r} µm" if arr.size == 4 else repr(region)


def _region_mask(region: Any, x: np.ndarray, y: np.ndarray, tol: float | tuple[float, float] | None) -> np.ndarray:
    """Boolean mask over the points for a region given as a point mask, grid mask or box."""
    arr = np.asarray(region)
    if arr.dtype == bool:
        if arr.shape == x.shape:
            return arr.copy()
        xs, ys, iy, ix = position_grid(x, y, tol=tol)
        if arr.shape == (ys.size, xs.size):
            return arr[iy, ix]
        raise KmapInputError(
            f"reference region mask has shape {arr.shape}; it must match the points {x.shape} "
            f"or the position grid {(ys.size, xs.size)} (ny, nx)"
        )
    try:
        box = arr.astype(np.float64).reshape(-1)
    except (TypeError, ValueError):
        box = np.empty(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[0] > box[1] or box[2] > box[3]:
        raise KmapInputError(
            f"reference region is {region!r}: give a boolean mask or a box (x_min, x_max, y_min, y_max) "
            "in µm with x_min <= x_max and y_min <= y_max"
        )
    return (x >= box[0]) & (x <= box[1]) & (y >= box[2]) & (y <= box[3])


# ---------------------------------------------------------------------------------------------
# geometry


def tilt_frame(direction: Sequence[float]) -> np.ndarray:
    """The orthonormal frame ``(e1, e2, r)`` that pitch and roll are measured in.

    ``r`` is the unit reference direction; ``e1`` is the lab x axis (the beam) made
    perpendicular to ``r`` (lab z when ``r`` is along x); ``e2 = r × e1``, so that
    ``(e1, e2, r)`` is right-handed. For ``r = +z`` the frame is the lab frame
    ``(x, y, z)``.

    Returns
    -------
    numpy.ndarray
        ``(3, 3)``, rows ``e1``, ``e2``, ``r``.
    """
    r = _vector3(direction, "reference direction")
    r = r / np.linalg.norm(r)
    e1 = np.array([1.0, 0.0, 0.0]) - r[0] * r
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.array([0.0, 0.0, 1.0]) - r[2] * r
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(r, e1)
    return np.stack([e1, e2, r])


def tilt_angles(q: np.ndarray, direction: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Pitch and roll (degrees) of vectors ``q`` relative to a reference direction.

    With the frame ``(e1, e2, r)`` of :func:`tilt_frame` and ``u = q / |q|``:

    * ``pitch = asin(u · e1)`` — the tilt of q towards ``e1`` (a rotation about ``e2``);
    * ``roll = atan2(u · e2, u · r)`` — the tilt of q towards ``e2`` (a rotation about ``e1``).

    So ``u = sin(pitch)·e1 + cos(pitch)·(sin(roll)·e2 + cos(roll)·r)``. With ``r = +z`` these
    are exactly xsocs' spherical q-space coordinates (``QSpaceCoordinates.SPHERICAL``:
    pitch ``= 90° − acos(qx/|q|)``, roll ``= 90° − atan2(qz, qy)``): pitch a rotation about
    y (towards the beam), roll a rotation about x. Both are 0 for ``q ∥ r``.

    Parameters
    ----------
    q : array_like
        ``(..., 3)`` vectors; NaN rows give NaN angles.
    direction : 3 floats
        The reference direction (need not be normalised).
    """
    frame = tilt_frame(direction)
    q = np.asarray(q, dtype=np.float64)
    comp = q @ frame.T
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.linalg.norm(q, axis=-1)
        pitch = np.degrees(np.arcsin(np.clip(comp[..., 0] / norm, -1.0, 1.0)))
        roll = np.degrees(np.arctan2(comp[..., 1], comp[..., 2]))
    roll = np.where(np.isfinite(pitch), roll, np.nan)
    return pitch, roll


# ---------------------------------------------------------------------------------------------
# position grid


def _max_gap(values: np.ndarray) -> float:
    gaps = np.diff(np.sort(values))
    return float(gaps.max()) if gaps.size else 0.0


def _clusters(values: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Group 1-D coordinates into grid lines: (line centres, line index of each value)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    breaks = np.diff(ordered) > tol
    labels_sorted = np.concatenate([[0], np.cumsum(breaks)])
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    n = int(labels_sorted[-1]) + 1
    centres = np.array([ordered[labels_sorted == i].mean() for i in range(n)])
    return centres, labels


def position_grid(
    x: Sequence[float], y: Sequence[float], *, tol: float | tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The regular grid a set of scan positions lies on, in any scan order.

    Coordinates closer than ``tol`` (µm) are one grid line (absorbs the jitter of read-back
    positions such as xsocs' ``adcX``/``adcY``). By default, per axis, ``tol`` is a quarter of
    the largest gap between its sorted coordinates, but at least 2 % of the largest gap of
    either axis (so that a line scan with jittery read-back of its fixed axis stays one
    line). That is right for a raster with a constant step per axis and step ratios up to
    1:12; otherwise give ``tol`` (one value, or ``(tol_x, tol_y)``). Grid lines are the mean
    of their coordinates, ascending.

    Returns
    -------
    xs, ys : numpy.ndarray
        Grid line positions (nx,), (ny,).
    iy, ix : numpy.ndarray
        Row and column of each point, so that ``grid[iy, ix] = values``.

    Raises
    ------
    KmapInputError
        When x and y differ in length, are empty or not finite, or two points fall into the
        same grid cell (give a smaller ``tol``).
    """
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if xa.shape != ya.shape or xa.size == 0:
        raise KmapInputError(f"sample positions: x has {xa.size} values and y {ya.size}; they must be equal and > 0")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise KmapInputError("sample positions contain NaN or inf; check the scan's positioners")
    if tol is None:
        gx, gy = _max_gap(xa), _max_gap(ya)
        floor = 0.02 * max(gx, gy)
        tol_x, tol_y = max(0.25 * gx, floor), max(0.25 * gy, floor)
    elif np.ndim(tol) == 0:
        tol_x = tol_y = float(tol)  # type: ignore[arg-type]
    else:
        tol_x, tol_y = (float(v) for v in tol)  # type: ignore[union-attr]
    if not (tol_x >= 0 and tol_y >= 0):
        raise KmapInputError(f"position tolerance {tol!r} must be >= 0 (µm)")
    xs, ix = _clusters(xa, tol_x)
    ys, iy = _clusters(ya, tol_y)
    cell = iy * xs.size + ix
    if np.unique(cell).size != cell.size:
        raise KmapInputError(
            f"sample positions: {cell.size - np.unique(cell).size} point(s) share a grid cell of the "
            f"{ys.size} x {xs.size} grid found; the positions are not a raster, or pass a smaller tol (µm)"
        )
    return xs, ys, iy, ix


# ---------------------------------------------------------------------------------------------
# statistics and edges


def summary(values: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float | int]:
    """Summary statistics of the finite values of a map (where ``mask`` is True, if given).

    Returns a JSON-able dict: ``count`` (values used), ``total`` (cells), ``masked``
    (``total − count``), ``mean``, ``median``, ``std`` (population), ``rms``
    (``√mean(v²)``), ``min``, ``max`` and percentiles ``p1 p5 p25 p75 p95 p99``; NaN
    statistics when no value is left.
    """
    arr = np.asarray(values, dtype=np.float64)
    use = np.isfinite(arr)
    if mask is not None:
        use &= np.asarray(mask, dtype=bool)
    data = arr[use]
    out: dict[str, float | int] = {"count": int(data.size), "total": int(arr.size), "masked": int(arr.size - data.size)}
    if data.size:
        out.update(
            mean=float(data.mean()),
            median=float(np.median(data)),
            std=float(data.std()),
            rms=float(np.sqrt(np.mean(data * data))),
            min=float(data.min()),
            max=float(data.max()),
        )
        for p, value in zip(_PERCENTILES, np.percentile(data, _PERCENTILES)):
            out[f"p{p}"] = float(value)
    else:
        for key in ("mean", "median", "std", "rms", "min", "max", *(f"p{p}" for p in _PERCENTILES)):
            out[key] = float("nan")
    return out


def robust_limits(values: np.ndarray, mask: np.ndarray | None = None, *, k: float = 5.0) -> tuple[float, float] | None:
    """Colour limits of a map that a few outliers cannot take over.

    The 2nd and 98th percentiles of the finite values (where ``mask`` is True), narrowed to
    ``median ± k · 1.4826 · MAD`` when that is narrower (for Gaussian values the MAD band
    holds ± k σ, so the real field keeps its full range). None when no value is left.
    """
    arr = np.asarray(values, dtype=np.float64)
    use = np.isfinite(arr)
    if mask is not None:
        use &= np.asarray(mask, dtype=bool)
    data = arr[use]
    if not data.size:
        return None
    lo, hi = (float(v) for v in np.percentile(data, (2, 98)))
    med = float(np.median(data))
    mad = float(np.median(np.abs(data - med))) * 1.4826
    if mad > 0:
        lo, hi = max(lo, med - k * mad), min(hi, med + k * mad)
    if not lo < hi:
        lo, hi = float(data.min()), float(data.max())
    return lo, hi


def edge_positions(
    values: np.ndarray, threshold: float, *, coords: Sequence[float] | None = None, axis: int = -1
) -> np.ndarray | list[np.ndarray]:
    """Where a map crosses ``threshold`` along one axis, by linear interpolation.

    For a strained island on a flat background, ``threshold`` halfway between the two
    levels gives the island's edges.

    Parameters
    ----------
    values : array_like
        A 1-D profile or a 2-D map; NaN cells break a profile (no crossing across them).
    threshold : float
        The level whose crossings are returned.
    coords : sequence of float, optional
        Positions along ``axis`` (e.g. ``Maps.x`` in µm); default the indices.
    axis : int
        For a 2-D map, the axis to look along (``-1``: along x, one profile per row).

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        The crossing positions (ascending) of the profile, or one array per profile of a map.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise KmapInputError(f"edge_positions: values have {arr.ndim} dimensions; give a 1-D profile or a 2-D map")
    n = arr.shape[axis]
    pos = np.arange(n, dtype=np.float64) if coords is None else np.asarray(coords, dtype=np.float64)
    if pos.shape != (n,):
        raise KmapInputError(f"edge_positions: coords has {pos.size} values, the map has {n} along axis {axis}")

    def crossings(profile: np.ndarray) -> np.ndarray:
        d = profile - threshold
        a, b = d[:-1], d[1:]
        hit = np.isfinite(a) & np.isfinite(b) & (np.sign(a) != np.sign(b)) & ((a != 0) | (b != 0))
        idx = np.nonzero(hit)[0]
        frac = a[idx] / (a[idx] - b[idx])
        return np.sort(pos[idx] + frac * (pos[idx + 1] - pos[idx]))

    if arr.ndim == 1:
        return crossings(arr)
    moved = np.moveaxis(arr, axis, -1)
    return [crossings(row) for row in moved]


# ---------------------------------------------------------------------------------------------
# maps


@dataclass
class Maps:
    """Strain and tilt maps on the regular position grid, with masks and statistics.

    Arrays are ``(ny, nx)`` (row = y, column = x, both ascending), NaN where masked or where
    the scan has no point.

    Attributes
    ----------
    x, y : numpy.ndarray
        Grid positions (µm), ``(nx,)`` and ``(ny,)``.
    q : numpy.ndarray
        ``(ny, nx, 3)`` fitted q vectors (qx, qy, qz), Å⁻¹, NaN where masked.
    q_norm, strain, pitch, roll : numpy.ndarray
        ``|q|`` (Å⁻¹), ``ε = |q0|/|q| − 1``, tilts in degrees (:func:`tilt_angles`).
    ok : numpy.ndarray
        ``(ny, nx)`` bool, True where the values can be trusted.
    reasons : dict[str, numpy.ndarray]
        ``(ny, nx)`` bool per reason a cell is masked (:data:`MASK_REASONS`).
    index : numpy.ndarray
        ``(ny, nx)`` index of the fit point of each cell, ``-1`` where none.
    reference : Reference
    settings : dict
        The thresholds used and the fit's method/background/path (provenance).
    stats : dict[str, dict]
        :func:`summary` of each map (masked cells left out).
    """

    x: np.ndarray
    y: np.ndarray
    q: np.ndarray
    q_norm: np.ndarray
    strain: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    ok: np.ndarray
    reasons: dict[str, np.ndarray]
    index: np.ndarray
    reference: Reference
    settings: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, dict[str, float | int]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.strain.shape  # type: ignore[return-value]

    @property
    def step(self) -> tuple[float, float]:
        """Median grid step (dx, dy) in µm (0 for a single line)."""
        dx = float(np.median(np.diff(self.x))) if self.x.size > 1 else 0.0
        dy = float(np.median(np.diff(self.y))) if self.y.size > 1 else 0.0
        return dx, dy

    def map(self, name: str) -> np.ndarray:
        """The map called ``name`` (one of :data:`MAP_NAMES`)."""
        if name in ("qx", "qy", "qz"):
            return self.q[..., "xyz".index(name[1])]
        if name not in MAP_NAMES:
            raise KeyError(f"no map {name!r}; choose one of {', '.join(MAP_NAMES)}")
        return getattr(self, name)

    def nearest(self, x: float, y: float) -> tuple[int, int]:
        """Grid cell ``(iy, ix)`` nearest to a sample position (µm)."""
        return int(np.argmin(np.abs(self.y - y))), int(np.argmin(np.abs(self.x - x)))

    def mask_counts(self) -> dict[str, int]:
        """Number of cells masked for each reason (a cell may have several)."""
        return {k: int(v.sum()) for k, v in self.reasons.items()}

    def reason_map(self) -> np.ndarray:
        """``(ny, nx)`` int8: 0 where ok, else 1 + the index in :data:`MASK_REASONS` of the
        first reason the cell is masked for."""
        out = np.zeros(self.shape, dtype=np.int8)
        for code, name in reversed(list(enumerate(MASK_REASONS, start=1))):
            if name in self.reasons:
                out[self.reasons[name]] = code
        return out


def _fit_arrays(fit: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, centres (n, 3) and the fit-status mask (n,) of a FitResult, checked."""
    try:
        x = np.asarray(fit.x, dtype=np.float64).reshape(-1)
        y = np.asarray(fit.y, dtype=np.float64).reshape(-1)
        centers = np.asarray(fit.center, dtype=np.float64)
    except AttributeError as e:
        raise KmapInputError(f"strain_tilt needs a dass.kmap.fit.FitResult, got {type(fit).__name__} ({e})") from None
    where = getattr(fit, "path", None) or "fit result"
    if centers.ndim != 2 or centers.shape[1] != 3 or centers.shape[0] != x.size or y.size != x.size:
        raise KmapInputError(
            f"{where}: centre has shape {centers.shape} for {x.size} x and {y.size} y positions; "
            "expected (n, 3) q centres (qx, qy, qz) for n positions"
        )
    ok = np.asarray(fit.ok_mask(), dtype=bool)
    if ok.ndim == 2:
        ok = ok.all(axis=1)
    if ok.shape != x.shape:
        raise KmapInputError(f"{where}: ok_mask() has shape {ok.shape}, expected ({x.size},)")
    return x, y, centers, ok


def validity(fit: Any, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point: (centre outside the q grid, peak height or width not finite or not positive).

    These are always applied: xsocs' fit reports "ok" for positions without a peak (an
    all-zero cube gives the grid corner and NaN widths; a flat background gives centres far
    outside the grid). The grid is the fit's q axes (``fit.axes``, bin centres); the width is
    ``|σ|`` (a Gaussian fit may return a negative σ with a negative area: the same curve);
    the centroid has no width, so only its height (``I_max``) is checked.
    """
    n = centers.shape[0]
    outside = np.zeros(n, bool)
    axes = getattr(fit, "axes", None)
    if axes is not None:
        with np.errstate(invalid="ignore"):
            for d, axis in enumerate(axes):
                a = np.asarray(axis, dtype=np.float64)
                if a.size:
                    outside |= (centers[:, d] < a.min()) | (centers[:, d] > a.max())
    bad = np.zeros(n, bool)
    height = getattr(fit, "height", None)
    if height is not None:
        h = np.asarray(height, dtype=np.float64).reshape(n, -1)
        with np.errstate(invalid="ignore"):
            bad |= ~np.all(np.isfinite(h) & (h > 0), axis=1)
    width = getattr(fit, "width", None)
    if width is not None and getattr(fit, "method", "gaussian") != "centroid":
        w = np.abs(np.asarray(width, dtype=np.float64).reshape(n, -1))
        with np.errstate(invalid="ignore"):
            bad |= ~np.all(np.isfinite(w) & (w > 0), axis=1)
    return outside, bad


def _quality_mask(
    fit: Any, centers: np.ndarray, min_height: float | None, max_width: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all good, height too low, width too large) per point, from the fit's heights/widths."""
    n = centers.shape[0]
    low = np.zeros(n, bool)
    wide = np.zeros(n, bool)
    if min_height is not None:
        height = np.asarray(fit.height, dtype=np.float64).reshape(n, -1)
        with np.errstate(invalid="ignore"):
            low = ~np.all(height >= float(min_height), axis=1)
    if max_width is not None:
        width = np.asarray(fit.width, dtype=np.float64).reshape(n, -1)
        with np.errstate(invalid="ignore"):
            wide = ~np.all(np.abs(width) <= float(max_width), axis=1)
    return ~(low | wide), low, wide


def strain_tilt(
    fit: FitResult,
    reference: Reference,
    *,
    min_height: float | None = None,
    max_width: float | None = None,
    q_range: tuple[float, float] | None = None,
    strain_range: tuple[float, float] | None = None,
    normalizer_bad: np.ndarray | None = None,
    tol: float | tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Maps:
    """Strain and tilt maps from a fit, relative to a reference.

    Whatever the options, a position is masked (with its reason, :data:`MASK_REASONS`) when
    the fit failed, its q is not finite, its centre lies outside the q grid, its peak height
    or width is not finite or not positive (:func:`validity`), or its normalizer value was
    <= 0 or not finite (``normalizer_bad``). Statistics use the remaining positions only.

    Parameters
    ----------
    fit : FitResult
        From :func:`dass.kmap.fit.fit` / :func:`dass.kmap.fit.read_fit`: per position ``x``,
        ``y`` (µm), ``center`` (n, 3) q centres, ``height``/``width`` (n, 3) and the xsocs
        status (``ok_mask()``).
    reference : Reference
        ``q0`` and its direction.
    min_height : float, optional
        Mask positions whose fitted peak height (on any axis) is below this.
    max_width : float, optional
        Mask positions whose fitted width (on any axis, Å⁻¹) is above this.
    q_range : (float, float), optional
        Mask positions whose ``|q|`` lies outside ``[min, max]`` (Å⁻¹).
    strain_range : (float, float), optional
        Mask positions whose strain lies outside ``[min, max]``.
    normalizer_bad : array of bool, optional
        ``(n,)``: True where the position's normalizer value was <= 0 or not finite
        (:func:`dass.kmap.inputs.check_normalizer`, restricted to the fitted positions).
    tol : float or (float, float), optional
        Position tolerance (µm) of :func:`position_grid`.
    progress : callable, optional
        Called as ``progress(done, total)`` (steps of this function).

    Returns
    -------
    Maps

    Raises
    ------
    KmapInputError
        When the fit's arrays are inconsistent or the positions are not a raster.
    """
    x, y, centers, status_ok = _fit_arrays(fit)
    quality_ok, low, wide = _quality_mask(fit, centers, min_height, max_width)
    outside, bad_peak = validity(fit, centers)
    settings = {
        "min_height": min_height,
        "max_width": max_width,
        "q_range": list(q_range) if q_range is not None else None,
        "strain_range": list(strain_range) if strain_range is not None else None,
        "fit_path": str(getattr(fit, "path", "") or ""),
        "fit_method": getattr(fit, "method", None),
        "fit_background": getattr(fit, "background", None),
    }
    return strain_tilt_arrays(
        x, y, centers, reference,
        status_ok=status_ok, low_height=low, wide=wide, outside_grid=outside,
        bad_peak=bad_peak, normalizer_bad=normalizer_bad, q_range=q_range, strain_range=strain_range, tol=tol, settings=settings, progress=progress,
    )


def strain_tilt_arrays(
    x: Sequence[float],
    y: Sequence[float],
    centers: np.ndarray,
    reference: Reference,
    *,
    status_ok: np.ndarray | None = None,
    low_height: np.ndarray | None = None,
    wide: np.ndarray | None = None,
    outside_grid: np.ndarray | None = None,
    bad_peak: np.ndarray | None = None,
    normalizer_bad: np.ndarray | None = None,
    q_range: tuple[float, float] | None = None,
    strain_range: tuple[float, float] | None = None,
    tol: float | tuple[float, float] | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Maps:
    """:func:`strain_tilt` on plain arrays: positions (n,), q centres (n, 3).

    ``status_ok``, ``low_height``, ``wide``, ``outside_grid``, ``bad_peak`` and
    ``normalizer_bad`` are per-point booleans (the fit status is good; the peak is too low;
    too wide; its centre is outside the q grid; its height or width is not finite or not
    positive; its normalizer value is bad); the others are as in :func:`strain_tilt`.
    """
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    q = np.asarray(centers, dtype=np.float64)
    if q.shape != (xa.size, 3):
        raise KmapInputError(f"q centres have shape {q.shape}; expected ({xa.size}, 3) for {xa.size} positions")
    if not isinstance(reference, Reference):
        raise KmapInputError(
            f"reference is {type(reference).__name__}; build one with Reference.from_reflection(...) "
            "or Reference.from_region(...)"
        )
    n = xa.size
    total = 3
    xs, ys, iy, ix = position_grid(xa, ya, tol=tol)
    if progress:
        progress(1, total)

    def flag(values: np.ndarray | None, what: str) -> np.ndarray:
        if values is None:
            return np.zeros(n, bool)
        arr = np.asarray(values, dtype=bool).reshape(-1)
        if arr.shape != (n,):
            raise KmapInputError(f"{what} has {arr.size} values for {n} positions")
        return arr

    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.linalg.norm(q, axis=1)
        strain = reference.q0_norm / norm - 1.0
    pitch, roll = tilt_angles(q, reference.direction)
    if progress:
        progress(2, total)

    point_reasons = {
        "normalizer": flag(normalizer_bad, "normalizer_bad"),
        "fit_status": ~flag(status_ok if status_ok is not None else np.ones(n, bool), "status_ok"),
        "not_finite": ~(np.all(np.isfinite(q), axis=1) & (norm > 0)),
        "outside_grid": flag(outside_grid, "outside_grid"),
        "peak": flag(bad_peak, "bad_peak"),
        "height": flag(low_height, "low_height"),
        "width": flag(wide, "wide"),
        "q_range": np.zeros(n, bool),
        "strain_range": np.zeros(n, bool),
    }
    with np.errstate(invalid="ignore"):
        if q_range is not None:
            lo, hi = _range(q_range, "q_range")
            point_reasons["q_range"] = (norm < lo) | (norm > hi)
        if strain_range is not None:
            lo, hi = _range(strain_range, "strain_range")
            point_reasons["strain_range"] = (strain < lo) | (strain > hi)
    bad = np.zeros(n, bool)
    for v in point_reasons.values():
        bad |= v

    shape = (ys.size, xs.size)

    def grid(values: np.ndarray, fill: Any = np.nan) -> np.ndarray:
        out = np.full(shape + values.shape[1:], fill, dtype=values.dtype)
        out[iy, ix] = values
        return out

    index = grid(np.arange(n), -1)
    reasons = {"no_data": index < 0}
    for key, v in point_reasons.items():
        reasons[key] = grid(v, False)
    ok = ~grid(bad, True)  # cells without data are not ok
    keep = ok[..., None]
    maps = Maps(
        x=xs,
        y=ys,
        q=np.where(keep, grid(q), np.nan),
        q_norm=np.where(ok, grid(norm), np.nan),
        strain=np.where(ok, grid(strain), np.nan),
        pitch=np.where(ok, grid(pitch), np.nan),
        roll=np.where(ok, grid(roll), np.nan),
        ok=ok,
        reasons=reasons,
        index=index,
        reference=reference,
        settings=dict(settings or {}),
    )
    maps.stats = {name: summary(maps.map(name), ok) for name in MAP_NAMES}
    if progress:
        progress(3, total)
    log.info(
        "kmap maps %s: %d x %d grid, %d/%d positions ok, strain median %.3g",
        maps.settings.get("fit_path") or "(arrays)", shape[0], shape[1], int(ok.sum()), n,
        maps.stats["strain"]["median"],
    )
    return maps


def _range(value: Any, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise KmapInputError(f"{what} is {value!r}; give (min, max)") from None
    if not lo <= hi:
        raise KmapInputError(f"{what} is {value!r}; min must not exceed max")
    return lo, hi


"""Synthetic KMAP scans in the exact xsocs input layout, with a known strain and tilt field.

:func:`generate` writes what ``xsocs.process.merge.merge_scan_data`` writes for a real
measurement: one HDF5 file per rocking angle (entry ``"<k>.1"`` with ``instrument/detector``
calibration, ``instrument/positioners`` eta/phi/nu/del, ``measurement/image/data`` frames,
``measurement/imgnr``, ``measurement/adcX``/``adcY`` sample positions and ``scan`` parameters),
written through xsocs' own :class:`~xsocs.io.XsocsH5.XsocsH5Writer`, and a master file that
links one entry per angle with external links (:class:`~xsocs.io.XsocsH5.XsocsH5MasterWriter`).

Forward model: the peak of each scan position is a 3-D Gaussian in reciprocal space centred
on the q vector of the (strained, tilted) reflection. The q vector seen by every detector pixel
at every rocking angle comes from xrayutilities with the geometry xsocs uses
(``QConversion(["y-", "z-"], ["z-", "y-"], [1, 0, 0])``, ``HXRD([1, 0, 0], [0, 0, 1])``,
``Ang2Q.init_area("z-", "y+", ...)``), so a peak lands exactly where xsocs' conversion maps it.

Conventions of the truth (the same as xsocs' spherical coordinates):

* ``strain`` ε = |q0| / |q| − 1, so |q| = |q0| / (1 + ε);
* ``pitch_deg`` = asin(qx / |q|) (tilt towards the beam, in the scattering plane);
* ``roll_deg`` = atan2(qy, qz) (tilt out of the scattering plane);
* q = |q| (sin p, cos p sin r, cos p cos r) in the sample frame, Å⁻¹.

Everything written is labelled synthetic (HDF5 attribute ``synthetic = True``, titles).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KmapInputError

HC_KEV_A = 12.398419843320026  # h c in keV Å (CODATA), lambda[Å] = HC_KEV_A / E[keV]

DEFAULT_PIXEL_SIZE_M = 55e-6
DEFAULT_DISTANCE_M = 0.3
MONITOR_MEAN = 1.0e4

__all__ = ["KmapTruth", "generate", "pixel_q", "bragg_q0", "peak_q", "write_spec_edf",
           "write_bliss"]


@dataclass
class KmapTruth:
    """Ground truth of a synthetic KMAP scan (what :func:`generate` put into the frames).

    Maps are indexed ``[iy, ix]``; the scan is row-major with x the fast axis, so position
    ``i`` of the xsocs files is ``(i // nx, i % nx)`` and ``map.ravel()[i]`` is its value.
    """

    shape: tuple[int, int]
    """(ny, nx) scan shape."""
    x: np.ndarray
    """(nx,) sample x positions, µm (``adcX``, motor ``piy``, fast axis)."""
    y: np.ndarray
    """(ny,) sample y positions, µm (``adcY``, motor ``pix``)."""
    strain: np.ndarray
    """(ny, nx) strain ε = |q0|/|q| − 1."""
    pitch_deg: np.ndarray
    """(ny, nx) pitch, degrees: asin(qx/|q|)."""
    roll_deg: np.ndarray
    """(ny, nx) roll, degrees: atan2(qy, qz)."""
    q: np.ndarray
    """(ny, nx, 3) peak q vector (qx, qy, qz), Å⁻¹, sample frame."""
    hkl: tuple[int, int, int]
    lattice_a: float
    """Cubic lattice constant of the unstrained crystal, Å."""
    energy_kev: float
    q0: float
    """|q| of the unstrained reflection, Å⁻¹ (2π |hkl| / a)."""
    island: dict[str, Any] | None
    """``{"center": [x, y], "radius": r, "strain": extra ε, "edge_x": [x_left, x_right]}``
    (µm), or None: a disc of extra strain with a sharp edge; ``edge_x`` are the edge positions
    on the line ``y = center[1]``."""
    step: float
    """Scan step, µm (the same along x and y)."""
    eta_deg: list[float] = field(default_factory=list)
    """Rocking angles, one per entry, degrees."""
    delta_deg: float = 0.0
    peak_sigma: float = 0.0
    """Isotropic width (σ) of the 3-D Gaussian peak, Å⁻¹."""
    nu_deg: float = 0.0
    center_chan: tuple[float, float] = (0.0, 0.0)
    """Direct beam (row, col), pixels."""
    chan_per_deg: tuple[float, float] = (0.0, 0.0)
    no_peak: list[int] = field(default_factory=list)
    """Positions (flat, x fast) without a Bragg peak (background only or all-zero frames)."""
    zero_monitor: list[int] = field(default_factory=list)
    """Positions whose monitor value is 0."""
    dead_pixels: np.ndarray | None = None
    """(rows, cols) bool: pixels that always read 0."""
    synthetic: bool = True

    @property
    def q_norm(self) -> np.ndarray:
        """(ny, nx) |q| of the peak, Å⁻¹."""
        return np.linalg.norm(self.q, axis=-1)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (arrays as nested lists)."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
        out["shape"] = list(self.shape)
        out["hkl"] = list(self.hkl)
        return out


def bragg_q0(hkl: Sequence[int], lattice_a: float) -> float:
    """|q| of a cubic reflection, Å⁻¹: 2π |hkl| / a."""
    return 2.0 * math.pi * math.sqrt(sum(int(i) ** 2 for i in hkl)) / float(lattice_a)


def _theta_deg(q: float, energy_kev: float) -> float:
    wavelength = HC_KEV_A / energy_kev
    s = q * wavelength / (4.0 * math.pi)
    if not 0.0 < s < 1.0:
        raise KmapInputError(
            f"reflection with |q| = {q:.4f} 1/Å is not reachable at {energy_kev} keV "
            "(sin θ must be in (0, 1)): raise the energy or choose a lower-order hkl",
            field="energy_kev",
        )
    return math.degrees(math.asin(s))


def peak_q(strain: np.ndarray, pitch_deg: np.ndarray, roll_deg: np.ndarray, q0: float) -> np.ndarray:
    """Peak q vectors (..., 3) from strain and tilts (inverse of the truth conventions)."""
    qn = q0 / (1.0 + np.asarray(strain, dtype=np.float64))
    p = np.radians(pitch_deg)
    r = np.radians(roll_deg)
    return np.stack(
        [qn * np.sin(p), qn * np.cos(p) * np.sin(r), qn * np.cos(p) * np.cos(r)], axis=-1
    )


def pixel_q(
    frame_shape: tuple[int, int],
    center_chan: tuple[float, float],
    chan_per_deg: tuple[float, float],
    energy_ev: float,
    eta: float,
    delta: float,
    phi: float = 0.0,
    nu: float = 0.0,
) -> np.ndarray:
    """q vector (rows, cols, 3) of every detector pixel at one rocking angle (xrayutilities).

    Same geometry as xsocs (``xsocs.process.qspace.qspace_conversion``): sample circles eta
    (y-) and phi (z-), detector circles nu (z-) and delta (y-), beam along +x.
    """
    import xrayutilities as xu

    qconv = xu.experiment.QConversion(["y-", "z-"], ["z-", "y-"], [1, 0, 0])
    hxrd = xu.HXRD([1, 0, 0], [0, 0, 1], qconv=qconv)
    hxrd.Ang2Q.init_area(
        "z-", "y+",
        cch1=center_chan[0], cch2=center_chan[1],
        Nch1=frame_shape[0], Nch2=frame_shape[1],
        chpdeg1=chan_per_deg[0], chpdeg2=chan_per_deg[1],
    )
    qx, qy, qz = hxrd.Ang2Q.area(eta, phi, nu, delta, en=energy_ev)
    return np.stack([qx, qy, qz], axis=-1)


def _field(spec: Any, xx: np.ndarray, yy: np.ndarray, name: str) -> np.ndarray:
    """A (ny, nx) map from an array or ``(offset, ramp over x range, ramp over y range)``."""
    arr = np.asarray(spec, dtype=np.float64)
    if arr.shape == xx.shape:
        return arr.copy()
    if arr.shape == (3,):
        def unit(v: np.ndarray) -> np.ndarray:
            span = np.ptp(v)
            return (v - v.min()) / span - 0.5 if span > 0 else np.zeros_like(v)
        return arr[0] + arr[1] * unit(xx) + arr[2] * unit(yy)
    raise KmapInputError(
        f"must be a (ny, nx) = {xx.shape} array or (offset, ramp_x, ramp_y); got shape "
        f"{arr.shape}", field=name,
    )


def generate(
    out_dir: str | Path,
    *,
    shape: tuple[int, int] = (20, 20),
    n_angles: int = 11,
    eta_step: float = 0.025,
    frame_shape: tuple[int, int] = (32, 32),
    energy_kev: float = 8.0,
    hkl: tuple[int, int, int] = (0, 0, 4),
    lattice_a: float = 5.431,
    strain: Any = (0.0, 5e-4, 0.0),
    tilt: tuple[Any, Any] = ((0.0, 0.02, 0.0), (0.0, 0.0, 0.02)),
    island: dict[str, Any] | None = None,
    noise: bool = True,
    peak_counts: float = 5000.0,
    background: float = 1.0,
    peak_sigma: float = 0.0025,
    step: float = 0.5,
    distance_m: float = DEFAULT_DISTANCE_M,
    pixel_size_m: float | tuple[float, float] = DEFAULT_PIXEL_SIZE_M,
    center_chan: tuple[float, float] | None = None,
    no_peak: Sequence[int] = (),
    empty: Sequence[int] = (),
    zero_monitor: Sequence[int] = (),
    dead_pixels: Any = None,
    compression: str | None = None,
    seed: int = 0,
    name: str = "kmap",
    chunk: int = 2048,
    start_time: str = "2026-01-01T00:00:00",
    progress: Callable[[float], None] | None = None,
) -> tuple[Path, KmapTruth]:
    """Write a synthetic KMAP scan in the xsocs input layout; return the master file and truth.

    Parameters
    ----------
    out_dir
        Folder to write into (created). Files: ``<name>_master.h5`` and ``<name>_<k>.1.h5``.
    shape
        (ny, nx) scan positions; x is the fast axis.
    n_angles, eta_step
        Number of rocking angles (entries) and their spacing in degrees, centred on the Bragg
        angle of the median |q| of the field.
    frame_shape
        (rows, cols) detector frame.
    energy_kev, hkl, lattice_a
        Beam energy and the cubic reflection; the unstrained |q0| = 2π|hkl|/a.
    strain
        (ny, nx) array, or ``(offset, ramp_x, ramp_y)``: offset plus a linear ramp of the given
        total change across the x and y ranges.
    tilt
        ``(pitch, roll)`` in degrees, each an array or ``(offset, ramp_x, ramp_y)``.
    island
        ``{"center": (x, y) µm, "radius": µm, "strain": extra ε}`` or None (no island). A
        sharp-edged disc whose strain is added to ``strain``.
    noise
        True: Poisson counts stored as uint16 (a photon-counting detector); False: the exact
        expected intensity stored as float32.
    peak_counts, background
        Peak amplitude and flat background, counts per pixel.
    peak_sigma
        Isotropic σ of the 3-D Gaussian peak, Å⁻¹.
    step
        Scan step in µm (positions start at 0).
    distance_m, pixel_size_m
        Detector distance and pixel size (one value, or (rows, cols) for anisotropic
        channels per degree); channels per degree = tan(1°)·distance/pixel.
    center_chan
        Direct beam (row, col) in pixels; default the frame centre. The rocking angles are
        chosen so that the peak falls near the centre of the frame whatever the direct beam.
    no_peak
        Positions (flat indices, x fast) whose frames hold the background only.
    empty
        Positions whose frames are all zero (the detector saw nothing).
    zero_monitor
        Positions whose monitor (``mon``) value is 0 (their frames are unchanged).
    dead_pixels
        Pixels that always read 0: a (rows, cols) bool array, or an int (that many pixels
        chosen at random with ``seed``). Written to the truth (``dead_pixels``).
    compression
        h5py compression of the frames (``"gzip"``, ``"lzf"``; None: uncompressed, chunked).
    seed
        Seed of the noise.
    name
        File name prefix.
    chunk
        Positions computed at once (memory: chunk × rows × cols × 8 bytes × a few).
    start_time
        Written as each entry's ``start_time`` (fixed, so the same arguments give the same
        bytes).
    progress
        Called with the fraction done (0..1) after each block.

    Returns
    -------
    (master path, :class:`KmapTruth`)

    Examples
    --------
    >>> import tempfile
    >>> master, truth = generate(tempfile.mkdtemp(), shape=(4, 5), n_angles=5)
    >>> master.name, truth.strain.shape
    ('kmap_master.h5', (4, 5))
    """
    import h5py
    from xsocs.io.XsocsH5 import XsocsH5MasterWriter, XsocsH5Writer

    ny, nx = (int(v) for v in shape)
    rows, cols = (int(v) for v in frame_shape)
    if ny < 1 or nx < 1 or rows < 2 or cols < 2 or n_angles < 2:
        raise KmapInputError(
            f"shape {shape}, frame_shape {frame_shape} and n_angles {n_angles} must be "
            "positive (frames at least 2 x 2, at least 2 angles)", field="shape",
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    x = np.arange(nx, dtype=np.float64) * step
    y = np.arange(ny, dtype=np.float64) * step
    xx, yy = np.meshgrid(x, y)
    eps = _field(strain, xx, yy, "strain")
    island_info = None
    if island is not None:
        try:
            cx, cy = (float(v) for v in island["center"])
            radius = float(island["radius"])
            extra = float(island["strain"])
        except (KeyError, TypeError, ValueError) as exc:
            raise KmapInputError(
                "island must be a dict with 'center' (x, y) µm, 'radius' µm and 'strain'; "
                f"got {island!r} ({exc})", field="island",
            ) from None
        inside = np.hypot(xx - cx, yy - cy) <= radius
        eps = eps + extra * inside
        island_info = {
            "center": [cx, cy], "radius": radius, "strain": extra,
            "edge_x": [cx - radius, cx + radius],
        }
    n_all = nx * ny
    for what, positions in (("no_peak", no_peak), ("empty", empty), ("zero_monitor", zero_monitor)):
        bad = [int(i) for i in positions if not 0 <= int(i) < n_all]
        if bad:
            raise KmapInputError(f"{what} positions {bad} are outside 0..{n_all - 1}", field=what)
    dead = np.zeros((rows, cols), dtype=bool)
    if dead_pixels is not None:
        if np.ndim(dead_pixels) == 0:
            flat = rng.choice(rows * cols, size=int(dead_pixels), replace=False)
            dead.reshape(-1)[flat] = True
        else:
            dead = np.asarray(dead_pixels, dtype=bool)
            if dead.shape != (rows, cols):
                raise KmapInputError(f"dead_pixels must have the frame shape {(rows, cols)}, got {dead.shape}",
                                     field="dead_pixels")
    pitch = _field(tilt[0], xx, yy, "tilt[0] (pitch)")
    roll = _field(tilt[1], xx, yy, "tilt[1] (roll)")
    q0 = bragg_q0(hkl, lattice_a)
    q_peak = peak_q(eps, pitch, roll, q0)  # (ny, nx, 3)

    energy_ev = energy_kev * 1000.0
    theta = _theta_deg(float(np.median(np.linalg.norm(q_peak, axis=-1))), energy_kev)
    pix = (pixel_size_m, pixel_size_m) if np.ndim(pixel_size_m) == 0 else tuple(pixel_size_m)
    chan_per_deg = tuple(math.tan(math.radians(1.0)) * distance_m / float(v) for v in pix)
    mid = ((rows - 1) / 2.0, (cols - 1) / 2.0)
    center_chan = mid if center_chan is None else (float(center_chan[0]), float(center_chan[1]))
    # detector circles: the frame centre sees 2θ when the direct beam is off-centre
    # (delta moves rows: "z-" is dim 0; nu moves columns: "y+" is dim 1)
    # (nu turns the arm about the vertical: a column offset needs nu / cos(delta))
    delta = 2.0 * theta - (center_chan[0] - mid[0]) / chan_per_deg[0]
    nu = -(center_chan[1] - mid[1]) / chan_per_deg[1] / math.cos(math.radians(delta)) + 0.0
    etas = theta + eta_step * (np.arange(n_angles) - (n_angles - 1) / 2.0)

    n = nx * ny
    qp = q_peak.reshape(n, 3)
    qp2 = np.einsum("ij,ij->i", qp, qp)
    adc_x = np.tile(x, ny)
    adc_y = np.repeat(y, nx)
    # incident-beam monitor: frames scale with it, so normalising by "mon" is meaningful
    monitor = MONITOR_MEAN * (1.0 + 0.05 * np.sin(np.arange(n) * 0.37))
    scale = (monitor / MONITOR_MEAN)[:, None]
    monitor[list(zero_monitor)] = 0.0
    peak_scale = np.ones((n, 1))
    peak_scale[list(no_peak)] = 0.0
    peak_scale[list(empty)] = 0.0
    frame_scale = scale.copy()
    frame_scale[list(empty)] = 0.0
    title = f"kmap piy {x[0]:g} {x[-1]:g} {nx} pix {y[0]:g} {y[-1]:g} {ny} 0.01 (SYNTHETIC)"
    dtype = np.uint16 if noise else np.float32
    inv2s2 = 1.0 / (2.0 * peak_sigma**2)

    master = out / f"{name}_master.h5"
    with XsocsH5MasterWriter(str(master), mode="w"):
        pass
    total = n_angles * n
    done = 0
    for k, eta in enumerate(etas, start=1):
        entry = f"{k}.1"
        fname = f"{name}_{entry}.h5"
        qpix = pixel_q((rows, cols), center_chan, chan_per_deg, energy_ev, float(eta), delta, nu=nu)
        qpix = qpix.reshape(-1, 3)
        qpix2 = np.einsum("ij,ij->i", qpix, qpix)
        with XsocsH5Writer(str(out / fname), mode="w") as writer:
            writer.create_entry(entry)
            writer.set_scan_params(
                entry, "piy", x[0], x[-1], nx, "pix", y[0], y[-1], ny, 0.01
            )
            writer.set_beam_energy(energy_ev, entry)
            writer.set_chan_per_deg(chan_per_deg, entry)
            writer.set_direct_beam(center_chan, entry)
            writer.set_image_roi_offset((0, 0), entry)
            with writer.image_dset_ctx(
                entry=entry, create=True, shape=(n, rows, cols), dtype=dtype,
                chunks=(1, rows, cols), compression=compression,
            ) as dset:
                for start in range(0, n, chunk):
                    stop = min(n, start + chunk)
                    # |qpix - qp|^2 = |qpix|^2 - 2 qpix.qp + |qp|^2, vectorised over positions
                    d2 = qpix2[None, :] - 2.0 * (qp[start:stop] @ qpix.T) + qp2[start:stop, None]
                    expected = frame_scale[start:stop] * (
                        peak_scale[start:stop] * peak_counts * np.exp(-np.maximum(d2, 0.0) * inv2s2)
                        + background
                    )
                    expected[:, dead.reshape(-1)] = 0.0
                    if noise:
                        frames = np.minimum(rng.poisson(expected), 65535).astype(np.uint16)
                    else:
                        frames = expected.astype(np.float32)
                    dset[start:stop] = frames.reshape(stop - start, rows, cols)
                    done += stop - start
                    if progress is not None:
                        progress(done / total)
        with h5py.File(out / fname, "r+") as h5:
            grp = h5[entry]
            grp.attrs["synthetic"] = True
            grp["title"] = title
            grp["start_time"] = start_time
            pos = grp["instrument/positioners"]
            pos["eta"] = float(eta)
            pos["phi"] = 0.0
            pos["nu"] = float(nu)
            pos["del"] = float(delta)  # the name xsocs reads
            pos["delta"] = h5py.SoftLink(f"/{entry}/instrument/positioners/del")
            meas = grp["measurement"]
            meas["imgnr"] = np.arange(n, dtype=np.int32)
            meas["adcX"] = adc_x
            meas["adcY"] = adc_y
            meas["mon"] = monitor
        with XsocsH5MasterWriter(str(master), mode="a") as mw:
            mw.add_entry_file(entry, fname)

    truth = KmapTruth(
        shape=(ny, nx), x=x, y=y, strain=eps, pitch_deg=pitch, roll_deg=roll, q=q_peak,
        hkl=tuple(int(i) for i in hkl), lattice_a=float(lattice_a),
        energy_kev=float(energy_kev), q0=q0, island=island_info, step=float(step),
        eta_deg=[float(e) for e in etas], delta_deg=float(delta),
        peak_sigma=float(peak_sigma), nu_deg=float(nu), center_chan=tuple(center_chan),
        chan_per_deg=tuple(chan_per_deg), no_peak=sorted({int(i) for i in (*no_peak, *empty)}),
        zero_monitor=sorted(int(i) for i in zero_monitor), dead_pixels=dead,
    )
    with h5py.File(master, "r+") as h5:
        h5.attrs["synthetic"] = True
        h5.attrs["title"] = f"SYNTHETIC KMAP scan {name} ({ny} x {nx} positions, {n_angles} angles)"
        h5.attrs["dass_truth"] = json.dumps(
            {k: v for k, v in truth.to_json().items()
             if k not in ("strain", "pitch_deg", "roll_deg", "q", "dead_pixels")}
        )
    return master, truth


def _read_entries(master: str | Path) -> list[dict[str, Any]]:
    """Everything of each xsocs entry that the SPEC and BLISS writers need (frames included)."""
    import h5py

    from .inputs import _entry_sort_key

    out = []
    with h5py.File(master, "r") as h5:
        for name in sorted(h5.keys(), key=_entry_sort_key):
            grp = h5[name]
            det = grp["instrument/detector"]
            pos = grp["instrument/positioners"]
            scan = grp["scan"]
            out.append({
                "entry": name,
                "frames": grp["measurement/image/data"][()],
                "counters": {k: v[()] for k, v in grp["measurement"].items()
                             if isinstance(v, h5py.Dataset)},
                "angles": {k: float(pos[k][()]) for k in ("eta", "del", "nu", "phi")},
                "energy_ev": float(det["beam_energy"][()]),
                "center_chan": (float(det["center_chan_dim0"][()]),
                                float(det["center_chan_dim1"][()])),
                "chan_per_deg": (float(det["chan_per_deg_dim0"][()]),
                                 float(det["chan_per_deg_dim1"][()])),
                "scan": {k: (v[()].decode() if isinstance(v[()], bytes) else v[()])
                         for k, v in scan.items()},
            })
    return out


def _command(scan: dict[str, Any]) -> str:
    return (f"kmap {scan['motor_0']} {scan['motor_0_start']:g} {scan['motor_0_end']:g} "
            f"{int(scan['motor_0_steps'])} {scan['motor_1']} {scan['motor_1_start']:g} "
            f"{scan['motor_1_end']:g} {int(scan['motor_1_steps'])} {scan['delay']:g}")


def write_spec_edf(master: str | Path, out_dir: str | Path, *, name: str = "kmap") -> tuple[Path, Path]:
    """Re-write a (synthetic) xsocs scan as the raw SPEC + EDF files of a SPEC-era ID01 KMAP.

    One SPEC scan per rocking angle (``#S k kmap piy ... pix ...``, positioners eta/del/nu/phi
    in ``#O``/``#P``, the counters as columns, a ``#C imageFile dir[..] prefix[..] idxFmt[..]
    nextNr[..] suffix[..]`` line) and one multi-frame EDF file per scan (fabio). Returns
    ``(spec file, image folder)``, the input of :func:`dass.kmap.inputs.from_spec`.
    """
    import fabio.edfimage

    out = Path(out_dir)
    img_dir = out / "edf"
    img_dir.mkdir(parents=True, exist_ok=True)
    entries = _read_entries(master)
    spec = out / f"{name}.spec"
    lines = [f"#F {spec.name}", "#E 1700000000", "#D Sun Nov 22 00:00:00 2026",
             "#C SYNTHETIC KMAP scan written by dass.kmap.synthetic", "#O0 eta  del  nu  phi", ""]
    for k, ent in enumerate(entries, start=1):
        frames = ent["frames"]
        prefix = f"{name}_scan{k}_"
        edf = fabio.edfimage.EdfImage(data=frames[0], header={"synthetic": "true"})
        for frame in frames[1:]:
            edf.append_frame(data=frame)
        edf.write(str(img_dir / f"{prefix}{0:05d}.edf"))
        counters = {c: v for c, v in ent["counters"].items() if np.ndim(v) == 1}
        names = sorted(counters)
        a = ent["angles"]
        energy_kev = ent["energy_ev"] / 1000.0
        lines += [
            f"#S {k} {_command(ent['scan'])}",
            "#D Sun Nov 22 00:00:00 2026",
            f"#C imageFile dir[{img_dir}] prefix[{prefix}] idxFmt[%05d] nextNr[0] suffix[.edf]",
            f"#UMONO mononrj={energy_kev:.6f}keV",
            f"#P0 {a['eta']!r} {a['del']!r} {a['nu']!r} {a['phi']!r}",
            f"#N {len(names)}",
            "#L " + "  ".join(names),
        ]
        columns = np.stack([np.asarray(counters[c], dtype=np.float64) for c in names], axis=1)
        lines += [" ".join(repr(float(v)) for v in row) for row in columns]
        lines.append("")
    spec.write_text("\n".join(lines) + "\n")
    return spec, img_dir


def write_bliss(
    master: str | Path, path: str | Path, *, detector: str = "mpx1x4",
    distance_m: float = DEFAULT_DISTANCE_M,
) -> Path:
    """Re-write a (synthetic) xsocs scan as a BLISS dataset HDF5, as ID01 writes it today.

    One scan ``<k>.1`` per rocking angle with ``title`` (the sxdm/kmap command),
    ``start_time``, ``instrument/<detector>`` (an NXdetector with ``beam_center_x/y``,
    ``distance``, ``x/y_pixel_size``), ``instrument/monochromator/WaveLength`` (m),
    ``instrument/positioners`` (eta, delta, nu, phi), the piezo positioners ``instrument/piy``
    and ``pix`` (NXpositioner with ``value``), ``measurement/<detector>`` frames and
    ``technique``: the input of :func:`dass.kmap.inputs.from_bliss`.
    The pixel size is chosen so that tan(1°)·distance/pixel equals the entry's channels per
    degree.
    """
    import h5py

    entries = _read_entries(master)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(p, "w") as h5:
        h5.attrs["synthetic"] = True
        for k, ent in enumerate(entries, start=1):
            scan = h5.create_group(f"{k}.1")
            scan.attrs["NX_class"] = "NXentry"
            scan["title"] = _command(ent["scan"]).encode()
            scan["start_time"] = b"2026-11-22T00:00:00"
            instr = scan.create_group("instrument")
            instr.attrs["NX_class"] = "NXinstrument"
            det = instr.create_group(detector)
            det.attrs["NX_class"] = "NXdetector"
            det["beam_center_y"] = ent["center_chan"][0]
            det["beam_center_x"] = ent["center_chan"][1]
            det["distance"] = distance_m
            det["y_pixel_size"] = math.tan(math.radians(1.0)) * distance_m / ent["chan_per_deg"][0]
            det["x_pixel_size"] = math.tan(math.radians(1.0)) * distance_m / ent["chan_per_deg"][1]
            mono = instr.create_group("monochromator")
            mono["WaveLength"] = HC_KEV_A / (ent["energy_ev"] / 1000.0) * 1e-10
            pos = instr.create_group("positioners")
            a = ent["angles"]
            for key, value in (("eta", a["eta"]), ("delta", a["del"]), ("nu", a["nu"]),
                               ("phi", a["phi"])):
                pos[key] = value
            meas = scan.create_group("measurement")
            meas[detector] = ent["frames"]
            for motor, counter in (("piy", "adcX"), ("pix", "adcY")):
                grp = instr.create_group(motor)
                grp.attrs["NX_class"] = "NXpositioner"
                grp["value"] = ent["counters"][counter]
            mon = instr.create_group("mon")
            mon.attrs["NX_class"] = "NXdetector"
            meas["mon"] = ent["counters"]["mon"]
            tech = scan.create_group("technique")
            tech["synthetic"] = True
    return p

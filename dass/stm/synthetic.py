"""A small SYNTHETIC FAST movie in the exact FAST file layout, for the demo and the tests.

The file is what the FAST module writes: one 1-D ``int16`` dataset ``/data`` (the time series
of the tip signal) whose attributes carry the metadata with dotted names. Both attribute
spellings can be written: ``"new"`` (``Acquisition.X_Phase``, ``Acquisition.LogAmp``, file
format 2.3) and ``"old"`` (``Acquisiton.X_Phase``, ``Acquisition.LogAmp.``, empty file format
version), as in the two real files shipped with pyfastspm.

The surface is a hexagonal lattice (Au(111)-like, 0.288 nm) plus a tilted plane and noise,
moving at a known, constant drift velocity (``drift_nm_s``). The tip follows the FAST scan:
sinusoidal in x (a forward and a backward line per x period), linear up then down in y. With
phases ``x_phase`` and ``y_phase`` the stream is stored rolled back by
``x_phase + 2 * X_Points * y_phase`` samples, so that pyfastspm (which rolls it forward by the
file's phases) finds the unshifted movie.

Everything written is labelled synthetic: ``ExperimentInfo.Synthetic = 1``, a sample name and a
comment that say so.

Examples
--------
>>> from dass.stm.synthetic import write_synthetic_fast
>>> path = write_synthetic_fast(tmp_path / "synthetic.h5", points=32, num_images=3)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SyntheticFast",
    "synthetic_fast_attributes",
    "synthetic_fast_bytes",
    "synthetic_fast_stream",
    "write_synthetic_fast",
]

SPELLINGS = ("new", "old")
AU_LATTICE_NM = 0.288


@dataclass(frozen=True)
class SyntheticFast:
    """Parameters of a synthetic FAST movie (all the numbers the file is made from).

    Attributes
    ----------
    points : int
        ``Scanner.X_Points`` = ``Scanner.Y_Points``.
    num_images : int
        Images in ``/data`` (each: an up and a down sweep, 4 x points x points samples).
    y_frequency : float
        Hz; one up and one down sweep per period, so an image takes ``1 / y_frequency`` s.
    scan_nm : float
        Illustrative scan size (the file itself is uncalibrated: calibrations 0).
    drift_nm_s : (float, float)
        Velocity of the surface (x, y) in nm/s: the known motion of the pattern.
    noise : float
        Standard deviation of the Gaussian noise, in lattice-corrugation units.
    x_phase, y_phase : int
        Phases written to the file (the stream is rolled back by them).
    spelling : {"new", "old"}
        Attribute spelling (see the module text).
    seed : int
        Seed of the noise.
    """

    points: int = 64
    num_images: int = 4
    y_frequency: float = 10.0
    scan_nm: float = 3.0
    drift_nm_s: tuple[float, float] = (1.2, 0.5)
    noise: float = 0.25
    x_phase: int = 0
    y_phase: int = 0
    spelling: str = "new"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("points", "num_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"synthetic FAST {name} must be a whole number >= 2, got {value!r}")
        if self.spelling not in SPELLINGS:
            raise ValueError(
                f"synthetic FAST spelling must be one of {', '.join(SPELLINGS)}, got {self.spelling!r}"
            )
        if not (self.y_frequency > 0 and self.scan_nm > 0 and self.noise >= 0):
            raise ValueError("synthetic FAST y_frequency and scan_nm must be > 0, noise >= 0")

    @property
    def x_frequency(self) -> float:
        """Hz: a forward plus a backward line per x period, 2·Y lines per y period."""
        return 2.0 * self.points * self.y_frequency

    @property
    def sampling_rate(self) -> float:
        """Samples per second: one sample per pixel of every line."""
        return 2.0 * self.points * self.x_frequency

    @property
    def image_period(self) -> float:
        """Seconds per image (an up and a down sweep)."""
        return 1.0 / self.y_frequency

    @property
    def pixels_per_nm(self) -> float:
        return self.points / self.scan_nm

    def expected_shift_px(self, images: float = 1.0) -> tuple[float, float]:
        """Movement (x, y) of the pattern in pixels of a regular grid after ``images`` images
        (x: after pyfastspm's interpolation of the sinusoidal grid)."""
        return (
            self.drift_nm_s[0] * self.image_period * images * self.pixels_per_nm,
            self.drift_nm_s[1] * self.image_period * images * self.pixels_per_nm,
        )


def synthetic_fast_stream(params: SyntheticFast = SyntheticFast()) -> np.ndarray:
    """The ``/data`` stream (1-D ``int16``) of a synthetic FAST movie, rolled back by the phases.

    Layout with phases 0: the stream reshapes to ``(num_images, 4 * Y, X)``; rows
    ``0 .. 2Y-1`` are the up sweep, the rest the down sweep; even rows forward lines, odd rows
    backward lines (x reversed). The tip moves sinusoidally in x, linearly in y.
    """
    nx = ny = int(params.points)
    n = int(params.num_images) * 4 * nx * ny
    rng = np.random.default_rng(params.seed)
    idx = np.arange(n)
    t = idx / params.sampling_rate
    # x: one period spans a forward row (x from -1 to 1) and a backward row (1 to -1)
    x = -np.cos(math.pi * ((idx % (2 * nx)) + 0.5) / nx)
    # y: triangle over 4Y rows per image, -1 -> 1 during the up sweep, 1 -> -1 going down
    s = (idx % (4 * nx * ny)) / (2 * nx * ny)  # 0 .. 2 over one image
    y = np.where(s < 1.0, -1.0 + 2.0 * s, 3.0 - 2.0 * s)
    xn = x * params.scan_nm / 2.0 - params.drift_nm_s[0] * t
    yn = y * params.scan_nm / 2.0 - params.drift_nm_s[1] * t
    k = 4.0 * math.pi / (math.sqrt(3.0) * AU_LATTICE_NM)
    z = np.zeros(n)
    for j in range(3):
        ang = math.radians(10.0 + 60.0 * j)
        z += np.cos(k * (xn * math.cos(ang) + yn * math.sin(ang)))
    z = z + 0.8 * x + 0.4 * y  # residual plane tilt
    if params.noise:
        z = z + rng.normal(0.0, params.noise, n)
    stream = np.round(z * 2500.0).astype(np.int16)
    shift = int(params.x_phase) + 2 * nx * int(params.y_phase)
    return np.roll(stream, -shift)


def synthetic_fast_attributes(params: SyntheticFast = SyntheticFast()) -> dict[str, Any]:
    """The attributes of ``/data``, with the numpy types the FAST module writes."""
    old = params.spelling == "old"
    phase = "Acquisiton" if old else "Acquisition"
    return {
        "Acquisition.ADC_SamplingRate": np.float64(params.sampling_rate),
        "Acquisition.ADC_SamplingRate.Unit": "Hz",
        ("Acquisition.LogAmp." if old else "Acquisition.LogAmp"): np.uint8(0),
        "Acquisition.NumFrames": np.uint64(4 * params.num_images),
        "Acquisition.NumImages": np.uint64(params.num_images),
        "Acquisition.SamplesPerPixel": np.int16(1),
        f"{phase}.X_Phase": np.int32(params.x_phase),
        f"{phase}.X_Phase.Unit": "pixels",
        f"{phase}.Y_Phase": np.int32(params.y_phase),
        f"{phase}.Y_Phase.Unit": "pixels",
        "ExperimentInfo.Comment": (
            "SYNTHETIC FAST movie generated by dass.stm.synthetic: a hexagonal lattice drifting "
            f"at ({params.drift_nm_s[0]}, {params.drift_nm_s[1]}) nm/s with noise; not a measurement."
        ),
        "ExperimentInfo.FileFormatVersion": "" if old else "2.3",
        "ExperimentInfo.Sample": "Au(111) (synthetic)",
        "ExperimentInfo.SoftwareVersion": "dass.stm.synthetic",
        "ExperimentInfo.Synthetic": np.uint8(1),
        "ExperimentInfo.Temperature": np.float64(300.0),
        "ExperimentInfo.Temperature.Unit": "K",
        "GapVoltage.Voltage": np.float64(-0.5),
        "GapVoltage.Voltage.Unit": "V",
        "Regulator.Setpoint": np.float64(1.0e-9),
        "Regulator.Setpoint.Unit": "A",
        "Scanner.X_Amplitude": np.float64(0.15),
        "Scanner.X_Amplitude.Unit": "V",
        "Scanner.X_Calibration": np.float64(0.0),
        "Scanner.X_Calibration.Unit": "nm/V",
        "Scanner.X_Frequency": np.float64(params.x_frequency),
        "Scanner.X_Frequency.Unit": "Hz",
        "Scanner.X_Points": np.uint16(params.points),
        "Scanner.Y_Amplitude": np.float64(0.15),
        "Scanner.Y_Amplitude.Unit": "V",
        "Scanner.Y_Calibration": np.float64(0.0),
        "Scanner.Y_Calibration.Unit": "nm/V",
        "Scanner.Y_Frequency": np.float64(params.y_frequency),
        "Scanner.Y_Frequency.Unit": "Hz",
        "Scanner.Y_Points": np.uint16(params.points),
    }


def _write(target: Any, params: SyntheticFast) -> None:
    import h5py

    with h5py.File(target, "w") as h5:
        dset = h5.create_dataset("data", data=synthetic_fast_stream(params))
        for key, value in synthetic_fast_attributes(params).items():
            dset.attrs[key] = value


def synthetic_fast_bytes(params: SyntheticFast = SyntheticFast()) -> bytes:
    """The whole synthetic FAST ``.h5`` file as bytes (for storage back ends and the demo)."""
    buf = io.BytesIO()
    _write(buf, params)
    return buf.getvalue()


def write_synthetic_fast(
    path: str | os.PathLike[str], params: SyntheticFast | Mapping[str, Any] | None = None, **kwargs: Any
) -> Path:
    """Write a synthetic FAST movie to ``path`` and return it.

    Parameters
    ----------
    path : path-like
        Target ``.h5`` file (overwritten; missing folders are created).
    params : SyntheticFast or mapping, optional
        The movie's parameters; keyword arguments override single fields
        (``write_synthetic_fast(p, points=32, spelling="old")``).
    """
    if params is None:
        params = SyntheticFast(**kwargs)
    elif isinstance(params, Mapping):
        params = SyntheticFast(**{**params, **kwargs})
    elif kwargs:
        from dataclasses import replace

        params = replace(params, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, params)
    return path

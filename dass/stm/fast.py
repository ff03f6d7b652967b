"""FAST module movies (CNR-IOM / Elettra / TUM) read through pyfastspm.

A FAST file is an HDF5 file with one 1-D integer dataset ``/data`` (the raw time series of the
tunnelling current) whose attributes, with dotted names (``Scanner.X_Points``,
``Acquisition.X_Phase``, …), hold all the metadata. :func:`open_fast` checks the file first and
raises :class:`FastFileError` with a message that names the file and the problem, then loads it
with :class:`pyfastspm.FastMovie`. :class:`FastFile` keeps that ``FastMovie`` and adds a
JSON-able, unit-carrying ``metadata`` dict for the catalogue.

Nothing here re-implements pyfastspm: the frames come from ``FastMovie.reshape_to_movie``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from .errors import StmFileError
from .values import plain

__all__ = ["CHANNELS", "FastFile", "FastFileError", "is_fast_movie", "open_fast"]

log = logging.getLogger(__name__)

#: Movie channels of :meth:`pyfastspm.FastMovie.reshape_to_movie` (its
#: ``MOVIE_CHANNEL_DESCRIPTORS``): ``u``/``d`` up/down sweep, ``f``/``b`` forward/backward lines,
#: ``i`` interlaced (forward and backward lines together, backward ones mirrored).
CHANNELS: tuple[str, ...] = ("uf", "ub", "df", "db", "udf", "udb", "ui", "di", "udi")

# Attributes pyfastspm needs to load and reshape a movie. A tuple lists accepted spellings, the
# first one being the correct one (old FAST files misspell "Acquisiton." and "LogAmp.").
_REQUIRED: tuple[tuple[str, ...], ...] = (
    ("Scanner.X_Points",),
    ("Scanner.Y_Points",),
    ("Scanner.Y_Frequency",),
    ("Acquisition.X_Phase", "Acquisiton.X_Phase"),
    ("Acquisition.Y_Phase", "Acquisiton.Y_Phase"),
    ("Acquisition.NumImages",),
    ("Acquisition.LogAmp", "Acquisition.LogAmp."),
    ("ExperimentInfo.FileFormatVersion",),
)


class FastFileError(StmFileError):
    """A file is not a FAST movie that pyfastspm can read; ``str(err)`` says which file and why
    (``path`` and ``problem`` as :class:`~dass.stm.errors.StmFileError`)."""


# ---------------------------------------------------------------------------------------------
# locating the file


def _local_path(path_or_url: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """A local path for the file, and a temporary folder to remove later (remote URLs only).

    pyfastspm opens the file by name more than once, so a remote file is copied to a
    temporary folder first (through fsspec).
    """
    if isinstance(path_or_url, os.PathLike):
        return Path(path_or_url), None
    text = str(path_or_url)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)), None
    if len(parsed.scheme) <= 1:  # plain path (a one-letter "scheme" is a Windows drive)
        return Path(text), None
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dass dependency
        raise ImportError(f"opening {text!r} needs fsspec: pip install fsspec") from exc
    tmp = Path(tempfile.mkdtemp(prefix="dass-fast-"))
    local = tmp / (Path(parsed.path).name or "movie.h5")
    try:
        with fsspec.open(text, "rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return local, tmp


# ---------------------------------------------------------------------------------------------
# validation


def _first_present(attrs: Mapping[str, Any], spellings: tuple[str, ...]) -> str | None:
    return next((name for name in spellings if name in attrs), None)


def _check_count(label: str, value: Any, where: str) -> int:
    """An attribute that must be a positive whole number (``Scanner.X_Points``, …)."""
    try:
        number = float(np.asarray(value).item())
    except (TypeError, ValueError):
        raise FastFileError(where, f"attribute {label} is {value!r}, not a number") from None
    if not number.is_integer() or number <= 0:
        raise FastFileError(where, f"attribute {label} is {value!r}, not a positive whole number")
    return int(number)


def _validate(path: Path, shown: str) -> None:
    """Raise :class:`FastFileError` unless pyfastspm can load ``path`` as a FAST movie."""
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"{shown}: no such file")
    if path.is_dir():
        raise FastFileError(shown, "is a folder, not a FAST .h5 file")
    if not h5py.is_hdf5(path):
        raise FastFileError(shown, "not an HDF5 file (no HDF5 signature)")
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise FastFileError(shown, "not a FAST movie: no /data dataset")
            dset = f["data"]
            if not isinstance(dset, h5py.Dataset):
                raise FastFileError(shown, "not a FAST movie: /data is a group, not a dataset")
            if dset.ndim != 1 or dset.dtype.kind not in "iu":
                raise FastFileError(
                    shown,
                    f"not a FAST movie: /data must be a 1-D integer time series, "
                    f"found shape {dset.shape} of {dset.dtype}",
                )
            attrs = dict(dset.attrs)
            length = dset.shape[0]
            missing = [" or ".join(s) for s in _REQUIRED if _first_present(attrs, s) is None]
            if missing:
                raise FastFileError(
                    shown, "not a FAST movie: /data lacks attribute(s) " + ", ".join(missing)
                )
            x_points = _check_count("Scanner.X_Points", attrs["Scanner.X_Points"], shown)
            y_points = _check_count("Scanner.Y_Points", attrs["Scanner.Y_Points"], shown)
            per_image = 4 * x_points * y_points
            if length == 0:
                raise FastFileError(shown, "FAST movie with zero frames (/data is empty)")
            if length % per_image:
                raise FastFileError(
                    shown,
                    f"/data holds {length} samples, not a whole number of images of "
                    f"4 x {x_points} x {y_points} = {per_image} samples "
                    f"({length // per_image} whole images and {length % per_image} samples "
                    "left over): truncated or wrong Scanner.X_Points/Y_Points",
                )
            # read the whole stream once: a truncated file fails here, not inside pyfastspm
            dset[()]
    except FastFileError:
        raise
    except (OSError, KeyError, RuntimeError) as exc:
        raise FastFileError(shown, f"truncated or corrupt HDF5 file ({exc})") from exc

    version = _text(attrs["ExperimentInfo.FileFormatVersion"])
    if version:
        from packaging.version import InvalidVersion, Version

        try:
            Version(version)
        except InvalidVersion:
            raise FastFileError(
                shown, f"ExperimentInfo.FileFormatVersion {version!r} is not a version number"
            ) from None


# ---------------------------------------------------------------------------------------------
# metadata


def _text(value: Any) -> str:
    """An attribute string as text. Old files hold Latin-1 bytes (``°`` is ``\\xb0``), which
    h5py hands over as lone surrogates; they are decoded as Latin-1 here."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("latin-1")
    return text


def _plain(value: Any) -> Any:
    """An attribute value as JSON-able Python, text decoded as FAST files need."""
    return plain(value, _text)


def _quantity(attrs: Mapping[str, Any], name: str, unit: str | None = None) -> dict[str, Any] | None:
    """``{"value": …, "unit": …}`` from attribute ``name`` and its ``name.Unit`` companion."""
    if name not in attrs:
        return None
    stored = _text(attrs[f"{name}.Unit"]).strip() if f"{name}.Unit" in attrs else ""
    return {"value": _plain(attrs[name]), "unit": stored or unit or ""}


def _calibration(attrs: Mapping[str, Any], axis: str) -> str | dict[str, Any] | None:
    name = f"Scanner.{axis}_Calibration"
    if name not in attrs:
        return None
    if float(attrs[name]) == 0.0:
        return "uncalibrated"
    return _quantity(attrs, name, "nm/V")


def fast_metadata(attrs: Mapping[str, Any], data_length: int) -> dict[str, Any]:
    """Normalise the attributes of a FAST ``/data`` dataset into a catalogue record.

    Parameters
    ----------
    attrs : mapping
        The attributes as stored (either phase spelling), e.g. ``dict(h5file["data"].attrs)``.
    data_length : int
        Number of samples in ``/data``; the number of images is computed from it.

    Returns
    -------
    dict
        JSON-able. Physical quantities are ``{"value": float, "unit": str}``; a calibration of
        0 is ``"uncalibrated"``; ``num_images`` comes from the data length, and
        ``num_images_attribute`` (``Acquisition.NumImages``) is added only when it differs.
        ``attributes`` keeps every stored attribute under its stored name.
    """
    x_points = int(attrs["Scanner.X_Points"])
    y_points = int(attrs["Scanner.Y_Points"])
    num_images = data_length // (4 * x_points * y_points)
    old = "Acquisiton.X_Phase" in attrs and "Acquisition.X_Phase" not in attrs
    phase = "Acquisiton" if old else "Acquisition"

    md: dict[str, Any] = {
        "format": "FAST",
        "file_format_version": _text(attrs.get("ExperimentInfo.FileFormatVersion", "")),
        "software_version": _text(attrs.get("ExperimentInfo.SoftwareVersion", "")),
        "points_x": x_points,
        "points_y": y_points,
        "num_images": num_images,
        # pyfastspm's frames: up-forward, up-backward, down-forward, down-backward per image
        "num_frames": 4 * num_images,
        "data_length": int(data_length),
        "frequency_x": _quantity(attrs, "Scanner.X_Frequency", "Hz"),
        "frequency_y": _quantity(attrs, "Scanner.Y_Frequency", "Hz"),
        "amplitude_x": _quantity(attrs, "Scanner.X_Amplitude", "V"),
        "amplitude_y": _quantity(attrs, "Scanner.Y_Amplitude", "V"),
        "amplitude_z": _quantity(attrs, "Scanner.Z_Amplitude"),
        "calibration_x": _calibration(attrs, "X"),
        "calibration_y": _calibration(attrs, "Y"),
        "calibration_z": _calibration(attrs, "Z"),
        "size_x": {"value": x_points, "unit": "px"},
        "size_y": {"value": y_points, "unit": "px"},
        "phase_x": _quantity(attrs, f"{phase}.X_Phase", "pixels"),
        "phase_y": _quantity(attrs, f"{phase}.Y_Phase", "pixels"),
        "phase_attribute_prefix": phase,
        "z_to_x_phase": _quantity(attrs, "Scanner.Z_to_X_Phase", "degrees"),
        "sampling_rate": _quantity(attrs, "Acquisition.ADC_SamplingRate", "Hz"),
        "samples_per_pixel": _plain(attrs.get("Acquisition.SamplesPerPixel")),
        "adc_bits": _quantity(attrs, "Acquisition.ADC_SamplingBits", "bits"),
        "log_amplifier": bool(attrs.get("Acquisition.LogAmp", attrs.get("Acquisition.LogAmp.", 0))),
        "bias": _quantity(attrs, "GapVoltage.Voltage", "V"),
        "setpoint": _quantity(attrs, "Regulator.Setpoint", "A"),
        "preamp_gain": _quantity(attrs, "Regulator.PreampGain"),
        "loop_gain": _quantity(attrs, "Regulator.Loop_Gain"),
        "temperature": _quantity(attrs, "ExperimentInfo.Temperature"),
        "sample": _text(attrs.get("ExperimentInfo.Sample", "")).strip(),
        "comment": _text(attrs.get("ExperimentInfo.Comment", "")).strip(),
        "date": _text(attrs.get("ExperimentInfo.Time", "")),
    }
    if "Acquisition.Filter.Enable" in attrs:
        unit = _text(attrs.get("Acquisition.Filter.Unit", "Hz")) or "Hz"
        md["filter"] = {
            "enabled": bool(attrs["Acquisition.Filter.Enable"]),
            "type": _plain(attrs.get("Acquisition.Filter.Type")),
            "low_cutoff": {"value": _plain(attrs.get("Acquisition.Filter.LowCutoff")), "unit": unit},
            "high_cutoff": {"value": _plain(attrs.get("Acquisition.Filter.HighCutoff")), "unit": unit},
        }
    stored_images = attrs.get("Acquisition.NumImages")
    if stored_images is not None and int(stored_images) != num_images:
        md["num_images_attribute"] = int(stored_images)
    stored_frames = attrs.get("Acquisition.NumFrames")
    if stored_frames is not None and int(stored_frames) != 4 * num_images:
        md["num_frames_attribute"] = int(stored_frames)
    md["attributes"] = {str(k): _plain(v) for k, v in sorted(attrs.items())}
    return {k: v for k, v in md.items() if v is not None}


# ---------------------------------------------------------------------------------------------
# the file


class FastFile:
    """An opened FAST movie: the pyfastspm ``FastMovie`` plus catalogue metadata.

    Made by :func:`open_fast`. ``movie`` is pyfastspm's object, for its processing steps
    (FFT filters, creep and drift correction, export); :meth:`frames` never modifies it.

    Attributes
    ----------
    path : str
        The file or URL as given to :func:`open_fast`.
    movie : pyfastspm.FastMovie
        Loaded with the file's own phases, in time-series mode.
    metadata : dict
        See :func:`fast_metadata`.
    """

    def __init__(self, path: str, movie: Any, metadata: dict[str, Any], tmpdir: Path | None = None):
        self.path = path
        self.movie = movie
        self.metadata = metadata
        self._tmpdir = tmpdir

    def __repr__(self) -> str:
        md = self.metadata
        return (
            f"<FastFile {self.path!r}: {md['num_images']} images of "
            f"{md['points_x']}x{md['points_y']} px>"
        )

    @property
    def num_images(self) -> int:
        """Number of images, from the data length (pyfastspm's ``FastMovie.num_images``)."""
        return int(self.movie.num_images)

    def frames(self, channel: str = "udf") -> np.ndarray:
        """The movie's frames for one channel, reshaped by pyfastspm.

        Parameters
        ----------
        channel : str
            A ``FastMovie.reshape_to_movie`` descriptor, one of :data:`CHANNELS`: ``"uf"``,
            ``"ub"``, ``"df"``, ``"db"`` (up/down sweep, forward/backward lines: one frame per
            image), ``"udf"``, ``"udb"`` (up and down frames alternating: two per image),
            ``"ui"``, ``"di"``, ``"udi"`` (interlaced forward and backward lines: twice the rows).

        Returns
        -------
        ndarray, float32, shape (n_frames, rows, points_x)
            Exactly pyfastspm's numbers; a new array each call (``movie`` stays untouched).

        Examples
        --------
        >>> fast = open_fast("20141003_24.h5")  # doctest: +SKIP
        >>> fast.frames("udf").shape  # doctest: +SKIP
        (136, 105, 105)
        """
        if channel not in CHANNELS:
            raise ValueError(
                f"unknown FAST channel {channel!r}; use one of {', '.join(CHANNELS)}"
            )
        movie = self.movie.clone()
        if movie.mode != "timeseries":
            movie.reload_timeseries(x_phase=self.movie.x_phase, y_phase=self.movie.y_phase)
        movie.reshape_to_movie(channel)
        return movie.data

    def frame_rate(self, channel: str = "udf") -> float:
        """Frames per second of ``channel`` as pyfastspm sets it (2·Y frequency for ``ud*``)."""
        if channel not in CHANNELS:
            raise ValueError(
                f"unknown FAST channel {channel!r}; use one of {', '.join(CHANNELS)}"
            )
        y_freq = float(self.movie.metadata["Scanner.Y_Frequency"])
        return 2.0 * y_freq if "ud" in channel else y_freq

    def close(self) -> None:
        """Release pyfastspm's log handlers and any temporary copy of a remote file."""
        self.movie.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> FastFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_fast_movie(path: str | os.PathLike[str]) -> bool:
    """A quick look, for choosers: is ``path`` an HDF5 file whose ``/data`` carries FAST scan
    attributes? :func:`open_fast` does the full checks (and says what is wrong)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            data = h5.get("data")
            return isinstance(data, h5py.Dataset) and "Scanner.X_Points" in data.attrs
    except (OSError, ValueError):
        return False


def open_fast(path_or_url: str | os.PathLike[str]) -> FastFile:
    """Open a FAST movie (``.h5``) with pyfastspm after checking that it is one.

    Parameters
    ----------
    path_or_url : str or path-like
        A local path, a ``file://`` URL, or any URL fsspec can read (copied to a temporary
        folder first, because pyfastspm reads the file by name).

    Returns
    -------
    FastFile

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FastFileError
        Not HDF5, truncated or corrupt HDF5, no 1-D integer ``/data``, required attributes
        missing (named), a data length that is not a whole number of images, or no data.

    Examples
    --------
    >>> fast = open_fast("F20190424_1.h5")  # doctest: +SKIP
    >>> fast.metadata["points_x"], fast.metadata["num_images"]  # doctest: +SKIP
    (196, 58)
    """
    shown = os.fspath(path_or_url) if isinstance(path_or_url, os.PathLike) else str(path_or_url)
    local, tmpdir = _local_path(path_or_url)
    try:
        _validate(local, shown)
        import h5py

        with h5py.File(local, "r") as f:
            attrs = dict(f["data"].attrs)
            length = int(f["data"].shape[0])
        metadata = fast_metadata(attrs, length)

        from .library import pyfastspm, quiet

        # log_processing=False: pyfastspm would otherwise write a .log next to the data file
        with quiet():
            movie = pyfastspm().FastMovie(str(local), log_processing=False)
    except BaseException:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    log.debug("opened FAST movie %s: %d images", shown, metadata["num_images"])
    return FastFile(shown, movie, metadata, tmpdir)

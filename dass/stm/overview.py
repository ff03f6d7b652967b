"""A first look at FAST movies without processing: the steps of the FAST-overview job
(``stm/service/fast_overview.ipynb``) and of the STM landing notebook.

Everything here reads through :mod:`dass.stm.fast` (pyfastspm): the metadata from
:func:`~dass.stm.fast.fast_metadata`, the frames from :meth:`FastFile.frames
<dass.stm.fast.FastFile.frames>`.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import numpy as np

from .fast import fast_metadata, open_fast

__all__ = [
    "describe_fast_file",
    "FastOverview",
    "fast_overview",
    "frame_png",
]


def _read_data(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int, str]:
    import h5py

    with h5py.File(path, "r") as h5:
        data = h5["data"]
        return dict(data.attrs), int(data.shape[0]), str(data.dtype)


def describe_fast_file(path: str | os.PathLike[str], *, label: str | None = None) -> str:
    """A text first look at a FAST movie: the length of ``/data``, every attribute, and the
    number of images in the stream (from its length, not ``Acquisition.NumImages``)."""
    attrs, length, _ = _read_data(path)
    metadata = fast_metadata(attrs, length)
    per_image = 4 * metadata["points_x"] * metadata["points_y"]
    lines = [f"{label or os.fspath(path)}: /data has {length} samples"]
    lines += [f"    {key} = {attrs[key]}" for key in sorted(attrs)]
    lines.append(f"images in the stream: {metadata['num_images']} of {per_image} samples each")
    return "\n".join(lines)


class FastOverview:
    """One raw frame of a FAST movie and what the overview job records about the movie
    (:func:`fast_overview`).

    Attributes
    ----------
    metadata : dict
        :func:`~dass.stm.fast.fast_metadata` of the movie.
    dtype : str
        The type of the ``/data`` samples.
    index : int
        The image the frame is from.
    forward_up : ndarray, float32, shape (points_y, points_x)
        The forward lines of the up sweep of image ``index``, rows in acquisition order (the
        first line at the top), as pyfastspm reshapes them (channel ``"uf"``); the x motion is
        sinusoidal and nothing is interpolated or corrected.
    """

    def __init__(self, metadata: dict[str, Any], dtype: str, index: int, forward_up: np.ndarray) -> None:
        self.metadata = metadata
        self.dtype = dtype
        self.index = index
        self.forward_up = forward_up

    @property
    def x_phase(self) -> int:
        return int(self.metadata["phase_x"]["value"]) if "phase_x" in self.metadata else 0

    @property
    def y_phase(self) -> int:
        return int(self.metadata["phase_y"]["value"]) if "phase_y" in self.metadata else 0

    def record(self, png: str) -> dict[str, Any]:
        """The movie's part of ``metadata.json``: attributes, stream length and type, scan
        points and phases, images, and the frame written as ``png`` with its scaling."""
        md = self.metadata
        return {
            "attributes": md["attributes"],
            "samples": int(md["data_length"]),
            "dtype": self.dtype,
            "x_points": int(md["points_x"]),
            "y_points": int(md["points_y"]),
            "x_phase": self.x_phase,
            "y_phase": self.y_phase,
            "images": int(md["num_images"]),
            "frame": {
                "index": self.index,
                "png": png,
                "lines": "forward lines of the up sweep, first line at the top",
                "shape": list(self.forward_up.shape),
                "min": float(self.forward_up.min()),
                "max": float(self.forward_up.max()),
                "scaling": "minimum to maximum as 0..255",
                "x_interpolated": False,
            },
        }


@contextlib.contextmanager
def _quiet():
    """pyfastspm logs every step to the console; a notebook shows only what it prints."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def fast_overview(path: str | os.PathLike[str], frame: int = 0) -> FastOverview:
    """Read a FAST movie with :func:`~dass.stm.fast.open_fast` (checked first, phases from
    the file) and take the raw forward up lines of image ``frame``.

    Raises
    ------
    FastFileError
        When the file is not a FAST movie pyfastspm can read (says why).
    ValueError
        When ``frame`` is not an image of the movie (names the range).
    """
    with _quiet(), open_fast(path) as fast:
        n_images = fast.num_images
        if not 0 <= frame < n_images:
            raise ValueError(f"frame must be between 0 and {n_images - 1}, got {frame}")
        # pyfastspm puts the first line of a frame at the bottom (an image's y axis points
        # up); the overview keeps acquisition order, the first line at the top
        forward_up = fast.frames("uf")[frame][::-1].copy()
        metadata = fast.metadata
    _, _, dtype = _read_data(path)
    return FastOverview(metadata, dtype, frame, forward_up)


def frame_png(frame: np.ndarray, path: str | os.PathLike[str]) -> Any:
    """Write ``frame`` as an 8-bit grey PNG scaled from its minimum (0) to its maximum (255)
    (all black when flat); return the PIL image."""
    from PIL import Image

    values = np.asarray(frame, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    image = Image.fromarray(np.round(scaled).astype(np.uint8))
    image.save(path)
    return image

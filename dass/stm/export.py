"""Exports of processed FAST movies: PNG frames, Gwyddion ``.gsf``, MP4 (GIF fallback), HDF5.

The pictures are drawn by pyfastspm's own frame artists (``gray_to_rgb`` with a matplotlib
colour map, ``label_image`` for the image id and time stamp), so a dass export looks like a
pyfastspm export; ``.gsf`` files are written by pyfastspm's ``gsf_writer``. The MP4 is encoded
by the ffmpeg binary that ``imageio-ffmpeg`` ships (no system ffmpeg needed, which pyfastspm's
own ``export_movie`` requires); when no ffmpeg can be found the movie is written as an animated
GIF instead and the returned path says so.

Every target may be a local path or an fsspec URL (``memory://``, ``s3://…``); files are
written locally first where a library needs a file name, then copied.

The processed HDF5 is a copy of the raw FAST file, byte for byte, plus a group ``/processed``
(frames, recipe, metadata): the raw ``/data`` and its attributes are never altered.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ..errors import DassError
from .process import ProcessedMovie

__all__ = [
    "ExportError",
    "contrast_limits",
    "export_frames",
    "export_gsf",
    "export_hdf5",
    "export_movie",
    "ffmpeg_exe",
    "read_gsf",
    "render_frame",
]

log = logging.getLogger(__name__)

#: Default contrast: cut 1 % of the histogram of the whole movie at each end (pyfastspm's
#: example notebook).
DEFAULT_CONTRAST: tuple[float, float] = (0.01, 0.99)
PROCESSED_GROUP = "processed"


class ExportError(DassError, ValueError, status=422):
    """An export that cannot be written; names the target and what to fix."""

    def __init__(self, target: str, problem: str) -> None:
        self.target = str(target)
        self.problem = problem
        super().__init__(f"{self.target}: {problem}")


# ---------------------------------------------------------------------------------------------
# targets: local paths or fsspec URLs


def _is_url(target: str | os.PathLike[str]) -> bool:
    if isinstance(target, os.PathLike):
        return False
    scheme = urlparse(str(target)).scheme
    return len(scheme) > 1 and scheme != "file"


def _join(folder: str | os.PathLike[str], name: str) -> str:
    if _is_url(folder):
        return str(folder).rstrip("/") + "/" + name
    return str(Path(folder) / name)


def _local(target: str | os.PathLike[str]) -> str:
    text = os.fspath(target)
    if text.startswith("file://"):
        return urlparse(text).path
    return text


def _makedirs(folder: str | os.PathLike[str]) -> None:
    if _is_url(folder):
        import fsspec

        fs, path = fsspec.core.url_to_fs(str(folder))
        fs.makedirs(path, exist_ok=True)
    else:
        Path(_local(folder)).mkdir(parents=True, exist_ok=True)


def _put(local: str, target: str | os.PathLike[str]) -> None:
    """Copy a finished local file to ``target`` (path or URL)."""
    if _is_url(target):
        import fsspec

        with open(local, "rb") as src, fsspec.open(str(target), "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        dest = Path(_local(target))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)


def _write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    if _is_url(target):
        import fsspec

        with fsspec.open(str(target), "wb") as f:
            f.write(data)
    else:
        dest = Path(_local(target))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


# ---------------------------------------------------------------------------------------------
# pictures


def _pick(movie: ProcessedMovie, frames: Sequence[int] | None) -> list[int]:
    n = len(movie)
    if frames is None:
        return list(range(n))
    picked = []
    for f in frames:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not -n <= f < n:
            raise IndexError(f"frame {f!r} is not in this movie of {n} frames (0 .. {n - 1})")
        picked.append(int(f) % n)
    return picked


def contrast_limits(
    movie: ProcessedMovie | np.ndarray, contrast: Any = DEFAULT_CONTRAST
) -> tuple[int, int]:
    """The colour-scale limits over the whole movie (pyfastspm's ``get_contrast_limits``):
    ``(lo_fraction, hi_fraction)`` of the histogram, a kept fraction, or ``(int, int)`` values.
    Never an empty range (pyfastspm rounds to whole numbers)."""
    from pyfastspm.tools.frame_artists import get_contrast_limits

    data = movie.frames if isinstance(movie, ProcessedMovie) else np.asarray(movie)
    lo, hi = get_contrast_limits(data, contrast=contrast)
    if hi <= lo:
        hi = lo + 1
    return int(lo), int(hi)


def _scaling(movie: ProcessedMovie, scaling: float) -> tuple[float, float]:
    """pyfastspm's export scaling: interlaced frames have twice the rows, so half the y zoom."""
    return (scaling / 2.0, scaling) if "i" in movie.channels else (scaling, scaling)


def render_frame(
    movie: ProcessedMovie,
    index: int,
    *,
    color_map: str = "hot",
    limits: tuple[int, int] | None = None,
    scaling: float | tuple[float, float] = 1.0,
    label: bool = True,
) -> np.ndarray:
    """One frame as an RGB ``uint8`` picture, drawn by pyfastspm's ``gray_to_rgb`` and
    labelled (image id top left, time top right) by its ``label_image``.

    ``scaling`` is a zoom factor (for interlaced channels y is zoomed half as much, as in
    pyfastspm) or an exact ``(y, x)`` pair.
    """
    from pyfastspm.tools.frame_artists import gray_to_rgb, label_image

    (index,) = _pick(movie, [index])
    if limits is None:
        limits = contrast_limits(movie)
    zoom = tuple(scaling) if isinstance(scaling, (tuple, list)) else _scaling(movie, float(scaling))
    rgb = gray_to_rgb(movie.frames[index], color_map=color_map,
                      contrast=np.asarray(limits, dtype=np.int64), scaling=zoom)
    if label:
        text = {movie.labels[index]: "top-left", f"{movie.times[index]:.3f}s": "top-right"}
        rgb = label_image(rgb, text=text, font_size=0.05, border=0.01)
    return np.ascontiguousarray(rgb)


def _stem(movie: ProcessedMovie) -> str:
    return Path(urlparse(movie.source).path if _is_url(movie.source) else movie.source).stem or "movie"


def export_frames(
    movie: ProcessedMovie,
    folder: str | os.PathLike[str],
    *,
    frames: Sequence[int] | None = None,
    color_map: str = "hot",
    contrast: Any = DEFAULT_CONTRAST,
    scaling: float = 2.0,
    label: bool = False,
) -> list[str]:
    """Write frames as PNG pictures ``<file stem>_<image><channel>.png`` (pyfastspm's names).

    Parameters
    ----------
    movie : ProcessedMovie
    folder : path or URL
        Created if needed.
    frames : sequence of int, optional
        Frame indexes (default: all).
    color_map, contrast, scaling, label
        As :func:`render_frame`; the contrast is taken over the whole movie.

    Returns
    -------
    list of str
        The written files.
    """
    from PIL import Image

    picked = _pick(movie, frames)
    limits = contrast_limits(movie, contrast)
    _makedirs(folder)
    written = []
    for i in picked:
        rgb = render_frame(movie, i, color_map=color_map, limits=limits, scaling=scaling, label=label)
        import io

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        target = _join(folder, f"{_stem(movie)}_{movie.labels[i]}.png")
        _write_bytes(target, buf.getvalue())
        written.append(target)
    return written


def export_gsf(
    movie: ProcessedMovie,
    folder: str | os.PathLike[str],
    *,
    frames: Sequence[int] | None = None,
) -> list[str]:
    """Write frames as Gwyddion Simple Field files through pyfastspm's ``gsf_writer``.

    Each file holds the frame as float32 with the FAST attributes as metadata (as pyfastspm
    writes them), plus ``Title``, ``Synthetic`` and the dass recipe (``DassRecipe``, JSON).
    Sizes stay in pixels (FAST files are usually uncalibrated). Read back with :func:`read_gsf`.
    """
    from pyfastspm.tools.exporter import gsf_writer

    picked = _pick(movie, frames)
    _makedirs(folder)
    # gsf_writer pads the header by its length in characters, not in UTF-8 bytes: keep it
    # ASCII ("\xb0 C", not "° C") so the data start where Gwyddion looks for them
    attributes = {_ascii(k): (_ascii(v) if isinstance(v, str) else v)
                  for k, v in movie.metadata.get("attributes", {}).items()
                  if not isinstance(v, (list, dict)) and "\n" not in str(v)}
    written = []
    with tempfile.TemporaryDirectory(prefix="dass-gsf-") as tmp:
        for i in picked:
            name = f"{_stem(movie)}_{movie.labels[i]}"
            meta = dict(attributes)
            meta["Title"] = _ascii(name)
            meta["Synthetic"] = int(movie.synthetic)
            meta["DassRecipe"] = movie.recipe.to_json()
            local = os.path.join(tmp, name + ".gsf")
            gsf_writer(movie.frames[i], local, metadata=meta)
            target = _join(folder, name + ".gsf")
            _put(local, target)
            written.append(target)
    return written


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


def read_gsf(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, str]]:
    """Read a Gwyddion Simple Field file: ``(data, header)``.

    The header is the text up to the NUL padding (``key = value`` lines after the magic line
    ``Gwyddion Simple Field 1.0``); the data are ``YRes x XRes`` little-endian float32.

    Raises
    ------
    ExportError
        Not a GSF file, a bad header, or data shorter than ``XRes * YRes``.
    """
    if _is_url(path):
        import fsspec

        with fsspec.open(str(path), "rb") as f:
            raw = f.read()
    else:
        raw = Path(_local(path)).read_bytes()
    magic = b"Gwyddion Simple Field 1.0\n"
    if not raw.startswith(magic):
        raise ExportError(str(path), "not a Gwyddion Simple Field file (no 'Gwyddion Simple Field 1.0' line)")
    end = raw.find(b"\x00")
    if end < 0:
        raise ExportError(str(path), "GSF header has no NUL padding: truncated file")
    header: dict[str, str] = {}
    for line in raw[len(magic):end].decode("utf-8", "replace").splitlines():
        if line.strip():
            key, sep, value = line.partition("=")
            if not sep:
                raise ExportError(str(path), f"GSF header line {line!r} is not 'key = value'")
            header[key.strip()] = value.strip()
    try:
        xres, yres = int(header["XRes"]), int(header["YRes"])
    except (KeyError, ValueError):
        raise ExportError(str(path), "GSF header lacks whole-number XRes and YRes") from None
    start = end + (4 - end % 4)  # header + 1..4 NULs is a multiple of 4
    body = raw[start:]
    if len(body) < 4 * xres * yres:
        raise ExportError(str(path), f"GSF data holds {len(body)} bytes, {4 * xres * yres} expected: truncated")
    data = np.frombuffer(body[: 4 * xres * yres], dtype="<f4").reshape(yres, xres)
    return data, header


# ---------------------------------------------------------------------------------------------
# movies


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary of imageio-ffmpeg (or ``$IMAGEIO_FFMPEG_EXE``) if it exists, or ``None``."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None
    # imageio-ffmpeg trusts $IMAGEIO_FFMPEG_EXE without looking: check that it is there
    return exe if (shutil.which(exe) or os.path.isfile(exe)) else None


def export_movie(
    movie: ProcessedMovie,
    target: str | os.PathLike[str],
    *,
    fps: float | None = None,
    color_map: str = "hot",
    contrast: Any = DEFAULT_CONTRAST,
    scaling: float = 2.0,
    label: bool = True,
    frames: Sequence[int] | None = None,
    format: str = "auto",
    progress: Any = None,
) -> str:
    """Write the movie as MP4 (H.264, as pyfastspm's ``export_movie``) or animated GIF.

    Parameters
    ----------
    movie : ProcessedMovie
    target : path or URL
        The file; its suffix is replaced by ``.mp4`` or ``.gif`` to match what is written.
    fps : float, optional
        Playback frames per second; default: real time (``movie.fps``).
    color_map, contrast, scaling, label
        As :func:`render_frame`; the contrast is taken over the whole movie. Frame sizes are
        rounded to even numbers (H.264 needs them).
    frames : sequence of int, optional
        Frame indexes (default: all).
    format : {"auto", "mp4", "gif"}
        ``"auto"``: MP4 when ffmpeg is available (imageio-ffmpeg's binary), else GIF.
    progress : callable(done, total), optional

    Returns
    -------
    str
        The written file (``.mp4`` or ``.gif``).
    """
    if format not in ("auto", "mp4", "gif"):
        raise ExportError(str(target), f"format {format!r} is not one of 'auto', 'mp4', 'gif'")
    picked = _pick(movie, frames)
    if not picked:
        raise ExportError(str(target), "no frames to write")
    rate = float(fps) if fps is not None else float(movie.fps)
    if not rate > 0:
        raise ExportError(str(target), f"fps must be > 0, got {rate}")
    exe = ffmpeg_exe() if format in ("auto", "mp4") else None
    if format == "mp4" and exe is None:
        raise ExportError(str(target), "no ffmpeg for MP4: pip install imageio-ffmpeg, or use format='gif'")
    kind = "mp4" if exe else "gif"
    if exe is None:
        log.warning("no ffmpeg found (imageio-ffmpeg): writing %s as GIF instead of MP4", target)

    limits = contrast_limits(movie, contrast)
    rows, cols = movie.frames.shape[1:]
    sy, sx = _scaling(movie, scaling)
    size_x = max(2, int(np.round(cols * sx / 2.0)) * 2)
    size_y = max(2, int(np.round(rows * sy / 2.0)) * 2)
    zoom = (size_y / rows, size_x / cols)

    name = Path(urlparse(str(target)).path if _is_url(target) else _local(target)).with_suffix("." + kind).name
    final = (str(target).rsplit("/", 1)[0] + "/" + name) if _is_url(target) else str(Path(_local(target)).with_name(name))
    with tempfile.TemporaryDirectory(prefix="dass-movie-") as tmp:
        local = os.path.join(tmp, name)
        pictures = (render_frame(movie, i, color_map=color_map, limits=limits, scaling=zoom, label=label)
                    for i in picked)
        if kind == "mp4":
            import imageio_ffmpeg

            writer = imageio_ffmpeg.write_frames(
                local, (size_x, size_y), fps=rate, codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", bitrate="5000k", macro_block_size=2,
                ffmpeg_log_level="error", output_params=["-preset", "medium"],
            )
            writer.send(None)
            for n, rgb in enumerate(pictures, 1):
                writer.send(rgb)
                if progress is not None:
                    progress(n, len(picked))
            writer.close()
        else:
            from PIL import Image

            images = []
            for n, rgb in enumerate(pictures, 1):
                images.append(Image.fromarray(rgb))
                if progress is not None:
                    progress(n, len(picked))
            images[0].save(local, format="GIF", save_all=True, append_images=images[1:],
                           duration=max(20, int(round(1000.0 / rate))), loop=0)
        _put(local, final)
    log.info("%s: wrote %d frames at %.3g fps to %s", movie.source, len(picked), rate, final)
    return final


# ---------------------------------------------------------------------------------------------
# processed HDF5


def export_hdf5(
    movie: ProcessedMovie,
    target: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
) -> str:
    """Write a processed HDF5: the raw FAST file copied byte for byte, plus ``/processed``.

    ``/processed/frames`` (float32, one chunk per frame, gzip), with datasets ``image_ids``,
    ``frame_channels``, ``times`` and attributes ``recipe`` (JSON), ``metadata`` (JSON, the
    catalogue record), ``processing`` (JSON), ``channels``, ``fps``, ``synthetic``.
    The raw ``/data`` and its attributes are left exactly as they were.

    Parameters
    ----------
    movie : ProcessedMovie
    target : path or URL
    source : path or URL, optional
        The raw FAST file; default ``movie.source``.

    Raises
    ------
    ExportError
        The target already holds a ``/processed`` group (write to a new file), or the source
        is not the movie's raw file (its ``/data`` length differs).
    """
    import h5py

    src = str(source if source is not None else movie.source)
    with tempfile.TemporaryDirectory(prefix="dass-h5-") as tmp:
        local = os.path.join(tmp, "processed.h5")
        if _is_url(src):
            import fsspec

            with fsspec.open(src, "rb") as f_in, open(local, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
        else:
            shutil.copyfile(_local(src), local)
        with h5py.File(local, "r+") as h5:
            if PROCESSED_GROUP in h5:
                raise ExportError(str(target), f"{src} already holds a /{PROCESSED_GROUP} group; "
                                  "give the raw FAST file as source")
            length = h5["data"].shape[0] if "data" in h5 else None
            if length != movie.metadata.get("data_length"):
                raise ExportError(str(target), f"{src} is not the raw file of this movie "
                                  f"(/data length {length}, expected {movie.metadata.get('data_length')})")
            grp = h5.create_group(PROCESSED_GROUP)
            rows, cols = movie.frames.shape[1:]
            grp.create_dataset("frames", data=movie.frames, chunks=(1, rows, cols), compression="gzip")
            grp.create_dataset("image_ids", data=np.asarray(movie.image_ids, dtype=np.int32))
            grp.create_dataset("frame_channels", data=np.asarray(movie.frame_channels, dtype="S3"))
            grp.create_dataset("times", data=movie.times)
            grp.attrs["recipe"] = movie.recipe.to_json()
            grp.attrs["metadata"] = json.dumps(movie.metadata, default=str)
            grp.attrs["processing"] = json.dumps(movie.processing, default=str)
            grp.attrs["channels"] = movie.channels
            grp.attrs["fps"] = movie.fps
            grp.attrs["synthetic"] = movie.synthetic
            grp.attrs["source"] = src
        _put(local, target)
    return str(target)

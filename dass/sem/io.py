"""Read SEM images (Zeiss / FEI TIFF, PNG, JPEG) with normalized metadata.

:func:`read_sem` returns a :class:`SemImage`: a 2-D float32 grayscale image in
[0, 1] plus vendor metadata normalized to a common vocabulary. Quantities are
``{"value": float, "unit": str}`` dicts in fixed units; text fields are ``str``:

=======================  =====  ==============================================
key                      unit   source
=======================  =====  ==============================================
accelerating_voltage     kV     Zeiss ``ap_actualkv``; FEI ``<beam> HV``
working_distance         mm     Zeiss ``ap_wd``; FEI ``<beam> WD``
magnification            x      Zeiss ``ap_mag``; FEI ``Image MagCanvasRealWidth
                                / <beam> HFW`` (older files without it:
                                ``System DisplayWidth / HFW``)
field_width              µm     FEI ``<beam> HFW`` (horizontal field width)
pixel_size               nm     Zeiss ``md[''][3] * 1024 / width``;
                                FEI ``<scan> PixelWidth``, else HFW / ResolutionX
probe_current            nA     Zeiss ``ap_iprobe``; FEI ``<beam> BeamCurrent``
chamber_pressure         Pa     Zeiss ``ap_chamber_pressure``; FEI ``ChPressure``
gun_pressure             Pa     Zeiss ``ap_column_vac``
detector                 (str)  Zeiss ``dp_detector_type`` or ``Signal A``;
                                FEI ``Detectors Name``
datetime                 (str)  ISO 8601, local time as recorded
instrument_serial        (str)  Zeiss ``sv_serial_number``; FEI ``Dnumber``
instrument               (str)  FEI ``SystemType``
=======================  =====  ==============================================

FEI files name the beam and scan sections they were taken with in ``[Beam] Beam`` and
``[Beam] Scan`` (``EBeam``/``EScan`` for electrons, ``IBeam``/``IScan`` for ions); ``<beam>``
and ``<scan>`` above are those sections. FEI's magnification refers to the width of the
"magnification canvas" recorded with the image (``MagCanvasRealWidth``, what the data bar
prints), not to ``DisplayWidth`` (the monitor). The data bar of an FEI image is the rows
below ``Image ResolutionY``; :attr:`SemImage.data_bar_row` holds that row.

Bit depth: 16-bit TIFFs (and PNGs) often hold 10-, 12- or 14-bit detector data. The
significant bits come from the TIFF's ``MaxSampleValue`` / ``SMaxSampleValue`` tags when
present, else from the data's range (largest value below 2**b and at least 2**(b-1)); the
image is then scaled by 2**b - 1 instead of 65535, and :attr:`SemImage.notes` says so.

Zeiss pixel size: the ``ap_pixel_size`` entry is wrong for images that are not
1024 pixels wide; the unnamed value ``md[''][3]`` (metres, for a 1024-wide
scan) scaled by ``1024 / width`` is right.
"""

from __future__ import annotations

import io as _io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

from ..errors import DassError
from .vendor import fei_metadata, zeiss_metadata

log = logging.getLogger(__name__)

__all__ = ["SemImage", "SemReadError", "decode_bytes", "read_sem", "to_grayscale"]

DEFAULT_MAX_PIXELS = 100_000_000
#: Working memory (bytes per pixel) that reading an image and preprocessing it for the
#: classifier take beyond the decoded samples themselves: the float32 grayscale image, the
#: data-bar statistics and the resize (measured on 16-megapixel 8-bit, 16-bit and RGB images:
#: 8 to 17 bytes per pixel over the samples).
WORK_BYTES_PER_PIXEL = 17

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# ITU-R BT.601 luma, the weights PIL uses for ``convert("L")``.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class SemReadError(DassError, ValueError, status=422):
    """A file could not be read as an SEM image; the message names the file."""


@dataclass
class SemImage:
    """An SEM image with its metadata.

    Attributes
    ----------
    image : ndarray of float32, shape (H, W)
        Grayscale intensities in [0, 1]. Palettes are applied, colour is
        converted with BT.601 luminance.
    metadata : dict
        Normalized metadata (see module docstring); missing entries are absent.
    raw_metadata : dict
        The vendor metadata as tifffile parsed it (empty when none).
    vendor : {"zeiss", "fei", None}
    source : str
        Name of the file read (path, URL or ``"<bytes>"``).
    bit_depth : int or None
        Significant bits of integer data (8 for 8-bit, 12 for 12-bit data in a 16-bit
        file, ...); None for float data.
    data_bar_row : int or None
        First row of the data bar when the file itself says where it is (FEI: the rows
        below ``Image ResolutionY``); None when only detection can tell.
    notes : list of str
        What a person should know about how the file was read (for example that 12-bit
        data in a 16-bit file was scaled by 4095).
    """

    image: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    raw_metadata: dict[str, Any] = field(default_factory=dict)
    vendor: str | None = None
    source: str = "<bytes>"
    bit_depth: int | None = None
    data_bar_row: int | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- input


def _load_bytes(source: Source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if isinstance(name, bytes):
            name = name.decode()
        try:
            if "://" in name:
                import fsspec

                with fsspec.open(name, "rb") as fh:
                    return fh.read(), name
            return Path(name).read_bytes(), name
        except IsADirectoryError:
            raise SemReadError(f"not an image: {name} is a directory") from None
        except FileNotFoundError:
            raise SemReadError(f"cannot read {name}: file not found") from None
        except OSError as exc:
            raise SemReadError(f"cannot read {name}: {exc}") from exc
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file>"))
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(
                f"{name}: file-like source returned {type(data).__name__}; open it in binary mode ('rb')"
            )
        return bytes(data), name
    raise TypeError(
        "source must be a path, an fsspec URL, bytes or a binary file-like object, "
        f"not {type(source).__name__}"
    )


def decode_bytes(height: int, width: int, sample_bytes: int) -> int:
    """The memory (bytes) reading one image and preprocessing it takes, estimated from its
    header: ``height * width * (sample_bytes + WORK_BYTES_PER_PIXEL)``.

    Parameters
    ----------
    height, width : int
        The image's size in pixels.
    sample_bytes : int
        Bytes of one decoded pixel, all channels (1 for 8-bit gray, 3 for RGB, 2 for 16-bit).

    Examples
    --------
    >>> decode_bytes(1024, 768, 1) // 2**20  # a common 8-bit SEM image: 13 MiB
    13
    """
    return int(height) * int(width) * (int(sample_bytes) + WORK_BYTES_PER_PIXEL)


def read_sem(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_decode_bytes: int | None = None) -> SemImage:
    """Read an SEM image and its vendor metadata.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file-like
        A local path, an fsspec URL (``"memory://x.tif"``, ``"s3://..."``),
        the file's bytes, or an object with ``read()`` returning bytes.
    max_pixels : int, optional
        Refuse images with more pixels than this (default 100 megapixels);
        checked from the header, before decoding.
    max_decode_bytes : int, optional
        Refuse images whose reading and preprocessing would take more memory than this
        (bytes, :func:`decode_bytes` of the header's size and sample type); checked from the
        header, before decoding. Default: no limit beyond ``max_pixels``.

    Returns
    -------
    SemImage

    Raises
    ------
    SemReadError
        If the data is empty, not an image, corrupt or truncated, or too large.
        The message starts with what went wrong and names the file.

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.fromarray(np.full((4, 6), 255, np.uint8)).save(buf, format="PNG")
    >>> sem = read_sem(buf.getvalue())
    >>> sem.image.shape, sem.image.dtype, float(sem.image.max()), sem.vendor
    ((4, 6), dtype('float32'), 1.0, None)
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if max_decode_bytes is not None and max_decode_bytes <= 0:
        raise ValueError(f"max_decode_bytes must be positive, got {max_decode_bytes}")
    limits = (max_pixels, max_decode_bytes)
    data, name = _load_bytes(source)
    if not data:
        raise SemReadError(f"empty file: {name} has no data")
    if data[:4] in _TIFF_MAGIC:
        sem = _read_tiff(data, name, limits)
    else:
        sem = _read_pil(data, name, limits)
    log.debug("read SEM image %s: shape %s vendor %s", name, sem.image.shape, sem.vendor)
    return sem


def _check_size(shape: tuple[int, ...], name: str, limits: tuple[int, int | None], sample_bytes: int) -> None:
    """Refuse an image by its header: not 2-D, empty, over ``max_pixels`` or, decoded, over
    ``max_decode_bytes`` (``limits``)."""
    max_pixels, max_decode_bytes = limits
    if len(shape) < 2:
        raise SemReadError(f"not an image: {name} has shape {shape}")
    npix = int(shape[0]) * int(shape[1])
    if npix == 0:
        raise SemReadError(f"empty image: {name} has shape {shape}")
    if npix > max_pixels:
        raise SemReadError(
            f"image too large: {name} is {shape[1]}x{shape[0]} = {npix} pixels, "
            f"above max_pixels={max_pixels}; pass a larger max_pixels to read it"
        )
    need = decode_bytes(shape[0], shape[1], sample_bytes)
    if max_decode_bytes is not None and need > max_decode_bytes:
        raise SemReadError(
            f"image too large to decode: {name} is {shape[1]}x{shape[0]} pixels of {sample_bytes} byte(s), "
            f"which takes about {need // 2**20} MiB to read, above max_decode_bytes={max_decode_bytes} "
            f"({max_decode_bytes // 2**20} MiB); pass a larger max_decode_bytes to read it"
        )


def _read_tiff(data: bytes, name: str, limits: tuple[int, int | None]) -> SemImage:
    import tifffile

    try:
        with tifffile.TiffFile(_io.BytesIO(data)) as tif:
            if not tif.pages:
                raise SemReadError(f"corrupt TIFF: {name} has no image pages")
            page = tif.pages.first
            itemsize = page.dtype.itemsize if page.dtype is not None else 8
            # a palette image is looked up into float64 luminance
            sample_bytes = page.samplesperpixel * itemsize + (8 if page.photometric == 3 else 0)
            _check_size((page.imagelength, page.imagewidth), name, limits, sample_bytes * max(page.imagedepth, 1))
            array = page.asarray()
            colormap = page.colormap if page.photometric == 3 else None
            photometric = int(page.photometric)
            max_tag = None
            for code in (281, 340):  # MaxSampleValue, SMaxSampleValue
                tag = page.tags.get(code)
                if tag is not None:
                    value = np.max(np.asarray(tag.value))
                    if np.isfinite(value) and value > 0:
                        max_tag = (tag.name, float(value))
                        break
            raw: dict[str, Any] = {}
            vendor = None
            if tif.is_sem and tif.sem_metadata:
                raw, vendor = dict(tif.sem_metadata), "zeiss"
            elif tif.is_fei and tif.fei_metadata:
                raw, vendor = dict(tif.fei_metadata), "fei"
    except SemReadError:
        raise
    except Exception as exc:  # tifffile raises many types on bad data
        raise SemReadError(f"corrupt TIFF: {name}: {exc}") from exc
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar RGB
    notes: list[str] = []
    if colormap is not None:
        image = _apply_palette(array, colormap)
        bits = 8 if array.dtype == np.uint8 else None
    else:
        bits, scale, note = _significant_bits(array, tag=max_tag, container="TIFF")
        if note:
            notes.append(note)
        image = to_grayscale(array, scale=scale)
        if photometric == 0 and image.ndim == 2:  # MINISWHITE
            image = 1.0 - image
    height, width = image.shape
    bar_row = None
    if vendor == "zeiss":
        metadata = zeiss_metadata(raw, width)
    elif vendor == "fei":
        metadata, bar_row = fei_metadata(raw, height, width)
    else:
        metadata = {}
    for note in notes:
        log.info("SEM image %s: %s", name, note)
    return SemImage(image, metadata, raw, vendor, name, bit_depth=bits, data_bar_row=bar_row, notes=notes)


#: Bytes of one decoded sample of PIL's modes that are not 8 bits per band.
_PIL_SAMPLE_BYTES = {"I": 4, "F": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def _read_pil(data: bytes, name: str, limits: tuple[int, int | None]) -> SemImage:
    from PIL import Image, UnidentifiedImageError

    try:
        pil = Image.open(_io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise SemReadError(
            f"image too large: {name}: {exc} (PIL's limit applies in addition to max_pixels)"
        ) from None
    except UnidentifiedImageError:
        raise SemReadError(f"not an image: {name} is not a TIFF, PNG, JPEG or other image file") from None
    except Exception as exc:
        raise SemReadError(f"corrupt image: {name}: {exc}") from exc
    fmt = pil.format or "image"
    mode = pil.mode
    # palette images become RGB(A) before they are converted to gray
    sample_bytes = Image.getmodebands(mode) * _PIL_SAMPLE_BYTES.get(mode, 1) + (4 if mode in ("P", "PA") else 0)
    _check_size((pil.size[1], pil.size[0]), name, limits, sample_bytes)
    try:
        pil.draft("L", pil.size)  # JPEG: decode the luminance only
        pil.load()
        mode = pil.mode
        if mode in ("P", "PA"):
            pil = pil.convert("RGBA" if mode == "PA" else "RGB")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            pil = pil.convert("RGB")
        elif mode == "LA":
            pil = pil.getchannel("L")
        elif mode == "1":
            pil = pil.convert("L")
        array = np.asarray(pil)
    except Exception as exc:
        raise SemReadError(f"corrupt {fmt}: {name}: {exc}") from exc
    if array.dtype == np.int32 and mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
        array = array.astype(np.uint16)  # PIL opens 16-bit PNGs as 32-bit "I"
    bits, scale, note = _significant_bits(array, container=fmt)
    notes = [note] if note else []
    for n in notes:
        log.info("SEM image %s: %s", name, n)
    return SemImage(to_grayscale(array, scale=scale), {}, {}, None, name, bit_depth=bits, notes=notes)


# --------------------------------------------------------------------- pixels


#: Bit depths recognized inside 16-bit containers, smallest first.
_PACKED_BITS = (8, 10, 12, 14)


def _significant_bits(array: np.ndarray, *, tag: tuple[str, float] | None = None,
                      container: str = "file") -> tuple[int | None, float | None, str | None]:
    """``(bits, scale, note)`` of unsigned integer data: how many bits are used and the
    value that maps to white.

    16-bit data whose largest value is below 2**b and at least 2**(b-1) (b in 8, 10, 12,
    14), or whose ``MaxSampleValue`` tag says 2**b - 1, is b-bit data: scale 2**b - 1 and a
    note. Otherwise the dtype's range (scale None: the default).
    """
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.unsignedinteger):
        return None, None, None
    full = a.dtype.itemsize * 8
    if full <= 8 or a.size == 0:
        return full, None, None
    dtype_max = np.iinfo(a.dtype).max
    if tag is not None and 0 < tag[1] < dtype_max:
        bits = int(np.ceil(np.log2(tag[1] + 1)))
        scale = float(2**bits - 1)
        note = (f"{bits}-bit data in a {full}-bit {container} ({tag[0]} tag {tag[1]:g}): "
                f"intensities scaled by {scale:g} instead of {dtype_max}")
        return bits, scale, note
    top = int(a.max())
    for bits in _PACKED_BITS:
        if 2 ** (bits - 1) <= top < 2**bits:
            scale = float(2**bits - 1)
            note = (f"{bits}-bit data in a {full}-bit {container} (largest value {top}): intensities "
                    f"scaled by {scale:g} instead of {dtype_max}")
            return bits, scale, note
    return full, None, None


def _to_unit(array: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Scale to float32 in [0, 1]: unsigned ints by `scale` (default the dtype range), others by min/max."""
    a = np.asarray(array)
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.unsignedinteger):
        out = a.astype(np.float32)
        out *= np.float32(1.0 / (scale or np.iinfo(a.dtype).max))
        return out
    f = a.astype(np.float32 if a.dtype.itemsize <= 4 and np.issubdtype(a.dtype, np.floating) else np.float64)
    finite = np.isfinite(f)
    if not finite.all():
        f = np.where(finite, f, 0.0)
    lo, hi = float(f.min()), float(f.max())
    if np.issubdtype(a.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return f.astype(np.float32, copy=False)
    if hi == lo:
        return np.zeros(f.shape, np.float32)
    return ((f - lo) / (hi - lo)).astype(np.float32)


def to_grayscale(array: np.ndarray, *, scale: float | None = None) -> np.ndarray:
    """Convert an image array to float32 grayscale in [0, 1].

    Parameters
    ----------
    array : ndarray, shape (H, W), (H, W, 3) or (H, W, 4)
        Unsigned integers are scaled by their dtype range; floats already in
        [0, 1] are kept; anything else is min/max scaled. RGB(A) is converted
        with BT.601 luminance (alpha ignored). The input is not modified.
    scale : float, optional
        For unsigned integers: the value that maps to 1.0 (for example 4095 for
        12-bit data in a 16-bit array); larger values are clipped.

    Returns
    -------
    ndarray of float32, shape (H, W)

    Examples
    --------
    >>> to_grayscale(np.array([[0, 255]], np.uint8)).tolist()
    [[0.0, 1.0]]
    >>> to_grayscale(np.array([[0, 4095]], np.uint16), scale=4095).tolist()
    [[0.0, 1.0]]
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        gray = _to_unit(a[..., :3], scale) @ _LUMA
    elif a.ndim == 2:
        gray = _to_unit(a, scale)
    else:
        raise ValueError(
            f"expected a 2-D grayscale or (H, W, 3|4) colour image, got shape {a.shape}; "
            "select one frame or channel first"
        )
    return np.clip(gray, 0.0, 1.0, out=gray if gray.dtype == np.float32 else None).astype(np.float32, copy=False)


def _apply_palette(indices: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """Look palette indices up in a TIFF colormap (3, N) and return luminance."""
    cmap = np.asarray(colormap, dtype=np.float64)
    scale = 65535.0 if cmap.max() > 255 else 255.0
    rgb = cmap.T / scale  # (N, 3)
    if np.array_equal(rgb[:, 0], rgb[:, 1]) and np.array_equal(rgb[:, 0], rgb[:, 2]):
        lut = rgb[:, 0]
    else:
        lut = rgb @ _LUMA
    idx = np.clip(indices.astype(np.intp), 0, len(lut) - 1)
    return np.clip(lut[idx], 0.0, 1.0).astype(np.float32)

"""A first look at KMAP scans without q-space conversion: the steps of the scan-overview job
(``kmap/service/scan_overview.ipynb``) and of the KMAP landing notebook, plus the small
choices both notebooks make around :func:`dass.kmap.service.process_scan`.

h5py and numpy only (pillow for the summed frame's PNG). Paths are local files: a master file
links one file per entry, which h5py follows only on a file system (the session's mount,
``dataset.path``).

Examples
--------
>>> choose_scan_file(["a.h5", "scan_master.h5", "b.nxs"])
'scan_master.h5'
>>> choose_scan_file(["a.h5", "b.nxs"])
'a.h5'
>>> reference_from_metadata({"domain": {"hkl": [0, 0, 4], "lattice_a": 5.431}})
{'hkl': [0, 0, 4], 'lattice_a': 5.431}
>>> reference_from_metadata({"domain": {"hkl": [0, 0, 4]}}) is None  # the median q of the map
True
>>> reference_from_parameters(hkl=[0, 0, 4], lattice_a=5.431, region=[])
{'hkl': [0, 0, 4], 'lattice_a': 5.431}
>>> reference_from_parameters(hkl=[0, 0, 4], lattice_a=5.431, region=[0, 1, 0, 1])
{'region': [0, 1, 0, 1]}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KmapInputError

__all__ = [
    "HDF5_SUFFIXES",
    "FRAMES_PATH",
    "LOG_SCALING",
    "choose_scan_file",
    "describe_group",
    "scan_entries",
    "entry_lines",
    "SummedFrame",
    "log_scaled",
    "summed_frame",
    "describe_scan_file",
    "check_bounds",
    "reference_from_parameters",
    "reference_from_metadata",
    "map_pngs",
]

#: the files a KMAP scan may be in
HDF5_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5", ".nxs")
#: where the X-SOCS input layout keeps an entry's detector frames
FRAMES_PATH = "measurement/image/data"
#: how :func:`summed_frame` scales its PNG
LOG_SCALING = "log(1 + counts), minimum to maximum as 0..255"


def choose_scan_file(names: Sequence[str]) -> str:
    """The scan file among HDF5 ``names``: the first ``*_master.h5`` (the X-SOCS input layout),
    else the first name.

    Raises
    ------
    ValueError
        When ``names`` is empty.
    """
    if not names:
        raise ValueError("no HDF5 file to choose a scan from")
    masters = [name for name in names if name.endswith("_master.h5")]
    return (masters or list(names))[0]


def describe_group(group: Any) -> dict[str, dict[str, Any]]:
    """``{path: {"shape": [...], "dtype": str}}`` of every HDF5 dataset below ``group``
    (an ``h5py.Group``), paths relative to it."""
    import h5py

    found: dict[str, dict[str, Any]] = {}

    def visit(path: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[path] = {"shape": list(obj.shape), "dtype": str(obj.dtype)}

    group.visititems(visit)
    return found


def scan_entries(path: str | os.PathLike[str], *, label: str | None = None) -> list[dict[str, Any]]:
    """Every entry (top-level HDF5 group) of a scan file.

    Parameters
    ----------
    path : path-like
        The scan file (a master file's links are followed).
    label : str, optional
        How messages name the file (default: ``path``).

    Returns
    -------
    list of dict
        Per entry ``name``, ``datasets`` (:func:`describe_group`) and ``positioners``: the
        scalar numeric datasets of ``instrument/positioners`` as floats (empty when absent).

    Raises
    ------
    ValueError
        When the file holds no entry.
    """
    import h5py

    entries = []
    with h5py.File(path, "r") as h5:
        for entry_name in h5:
            entry = h5[entry_name]
            if not isinstance(entry, h5py.Group):
                continue
            positioners = {}
            if "instrument/positioners" in entry:
                for motor, item in entry["instrument/positioners"].items():
                    if isinstance(item, h5py.Dataset) and item.shape == () and item.dtype.kind in "iuf":
                        positioners[motor] = float(item[()])
            entries.append({"name": entry_name, "datasets": describe_group(entry), "positioners": positioners})
    if not entries:
        raise ValueError(f"{label or os.fspath(path)} holds no entry (HDF5 group)")
    return entries


def entry_lines(entries: Iterable[Mapping[str, Any]]) -> str:
    """Per entry of :func:`scan_entries` a line with its dataset count and positioners, then
    its datasets of two or more dimensions (the detector frames among them)."""
    lines = []
    for entry in entries:
        lines.append(f"{entry['name']}: {len(entry['datasets'])} datasets, positioners {entry['positioners']}")
        for path, info in entry["datasets"].items():
            if len(info["shape"]) >= 2:
                lines.append(f"    {path}  shape={tuple(info['shape'])} dtype={info['dtype']}")
    return "\n".join(lines)


@dataclass
class SummedFrame:
    """The detector frames of one entry summed over all scan positions (:func:`summed_frame`).

    Attributes
    ----------
    record : dict
        JSON-able: ``entry``, ``dataset``, ``frames``, ``shape``, ``min``, ``max``, ``total``,
        ``png``, ``png_scaling``.
    total : ndarray of float64
        The sum, one value per detector pixel.
    image : PIL.Image.Image
        The 8-bit picture written as ``png`` (:data:`LOG_SCALING`), one pixel per detector pixel.
    peak : tuple of int
        (row, column) of the brightest pixel.
    """

    record: dict[str, Any]
    total: np.ndarray
    image: Any
    peak: tuple[int, int]


def _frames_dataset(entry: Mapping[str, Any]) -> str | None:
    if len(entry["datasets"].get(FRAMES_PATH, {}).get("shape", [])) == 3:
        return FRAMES_PATH
    return next((path for path, info in entry["datasets"].items() if len(info["shape"]) == 3), None)


def log_scaled(total: np.ndarray) -> np.ndarray:
    """``log(1 + counts)`` (negative counts as 0) scaled from minimum to maximum as 0..255,
    uint8; all zeros when flat. ``total`` is not modified.

    >>> log_scaled(np.array([[0.0, np.e - 1], [np.e ** 2 - 1, -5.0]])).tolist()
    [[0, 128], [255, 0]]
    """
    shown = np.log1p(np.clip(np.asarray(total, dtype=np.float64), 0, None))
    low, high = float(shown.min()), float(shown.max())
    scaled = (shown - low) * (255.0 / (high - low)) if high > low else np.zeros_like(shown)
    return np.round(scaled).astype(np.uint8)


def summed_frame(
    path: str | os.PathLike[str],
    entry: Mapping[str, Any],
    png: str | os.PathLike[str],
    *,
    block: int = 64,
) -> SummedFrame | None:
    """Sum the detector frames of ``entry`` over all scan positions and write the sum as a PNG.

    Parameters
    ----------
    path : path-like
        The scan file.
    entry : mapping
        One item of :func:`scan_entries`; its frames are :data:`FRAMES_PATH` when that is 3-D,
        else its first 3-D dataset.
    png : path-like
        Where to write the picture (:data:`LOG_SCALING`); its name goes into the record.
    block : int
        Frames read at a time.

    Returns
    -------
    SummedFrame or None
        None when the entry has no 3-D dataset (nothing is written).
    """
    import h5py
    from PIL import Image

    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    frames_path = _frames_dataset(entry)
    if frames_path is None:
        return None
    with h5py.File(path, "r") as h5:
        frames = h5[entry["name"]][frames_path]
        total = np.zeros(frames.shape[1:], dtype=np.float64)
        for start in range(0, frames.shape[0], block):
            total += frames[start : start + block].sum(axis=0, dtype=np.float64)
        n_frames = int(frames.shape[0])
    image = Image.fromarray(log_scaled(total))
    image.save(png)
    record = {
        "entry": entry["name"],
        "dataset": frames_path,
        "frames": n_frames,
        "shape": list(total.shape),
        "min": float(total.min()),
        "max": float(total.max()),
        "total": float(total.sum()),
        "png": Path(png).name,
        "png_scaling": LOG_SCALING,
    }
    peak = tuple(int(i) for i in np.unravel_index(np.argmax(total), total.shape))
    return SummedFrame(record=record, total=total, image=image, peak=peak)


def describe_scan_file(path: str | os.PathLike[str], *, label: str | None = None) -> str:
    """A text first look at a scan file: its entries, the HDF5 tree of the first one (groups
    with ``/``, datasets with shape and dtype, indented by depth), and the ``eta`` rocking
    angle per entry when the first entry has ``instrument/positioners/eta``."""
    import h5py

    lines = []
    with h5py.File(path, "r") as h5:
        entries = list(h5)
        lines.append(f"{label or os.fspath(path)}: {len(entries)} entries {entries}")
        if not entries:
            return lines[0]
        first = h5[entries[0]]
        lines.append(f"{entries[0]}/")

        def show(name: str, obj: Any) -> None:
            indent = "    " * (name.count("/") + 1)
            leaf = name.rsplit("/", 1)[-1]
            if isinstance(obj, h5py.Dataset):
                lines.append(f"{indent}{leaf}  shape={obj.shape} dtype={obj.dtype}")
            else:
                lines.append(f"{indent}{leaf}/")

        if isinstance(first, h5py.Group):
            first.visititems(show)
            if "instrument/positioners/eta" in first:
                etas = [float(h5[e]["instrument/positioners/eta"][()]) for e in entries]
                lines.append(f"eta per entry (deg): {etas}")
    return "\n".join(lines)


def check_bounds(bounds: Sequence[float], label: str) -> None:
    """Raise ``KmapInputError`` naming ``label`` unless ``bounds`` is empty or
    ``[x_min, x_max, y_min, y_max]`` (µm)."""
    if bounds and len(bounds) != 4:
        raise KmapInputError(f"{label} must be [x_min, x_max, y_min, y_max] in µm or empty, got {list(bounds)}")


def reference_from_parameters(
    *, hkl: Sequence[int], lattice_a: float, region: Sequence[float] = ()
) -> dict[str, Any]:
    """The ``reference`` of :func:`dass.kmap.service.process_scan` from a job's parameters:
    the median q of ``region`` when one is given, else the reflection ``hkl`` of a cubic
    lattice ``lattice_a`` (Å)."""
    check_bounds(region, "reference_region")
    if region:
        return {"region": list(region)}
    return {"hkl": list(hkl), "lattice_a": lattice_a}


def reference_from_metadata(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The reflection a dataset's metadata names (``domain.hkl`` and ``domain.lattice_a``),
    or None (then :func:`~dass.kmap.service.process_scan` takes the median q of the map)."""
    domain = metadata.get("domain") or {}
    if "hkl" in domain and "lattice_a" in domain:
        return {"hkl": domain["hkl"], "lattice_a": domain["lattice_a"]}
    return None


def map_pngs(summary: Mapping[str, Any], names: Sequence[str] | None = None) -> list[str]:
    """The PNG files of a :func:`~dass.kmap.service.process_scan` summary (relative to its
    output folder): of the maps ``names`` in that order (those drawn), or every PNG in name
    order when ``names`` is None."""
    files = summary["files"]
    if names is None:
        return sorted(str(p) for p in files.values() if str(p).endswith(".png"))
    return [files[f"png_{name}"] for name in names if f"png_{name}" in files]

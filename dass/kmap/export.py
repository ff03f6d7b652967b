"""Exports of strain and tilt maps: NeXus-style HDF5, PNG pictures, CSV table.

* :func:`write_hdf5` — one ``NXentry`` holding one ``NXdata`` group per map (``signal``,
  ``axes = ["y", "x"]``, axis datasets in µm with ``units`` and ``long_name``), the good-fit
  mask, an ``NXprocess`` with the provenance (program, version, date, inputs, settings) and
  the reference (``NXparameters``), and the statistics per map. :func:`read_hdf5` reads it back.
* :func:`write_png` / :func:`write_pngs` — one picture per map (matplotlib, Agg backend) with
  a colour bar, axes labelled in µm and a scale bar.
* :func:`write_csv` — one row per scan position: ``x, y, qx, qy, qz, q_norm, strain, pitch,
  roll, ok``.

Examples
--------
>>> paths = export_all(maps, "results", stem="scan12")        # doctest: +SKIP
>>> sorted(paths)                                              # doctest: +SKIP
['csv', 'hdf5', 'png_pitch', 'png_roll', 'png_strain']
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .errors import KmapInputError
from .maps import MAP_LONG_NAMES, MAP_NAMES, MAP_UNITS, MASK_REASON_TEXT, MASK_REASONS, Maps, Reference, robust_limits

__all__ = ["CSV_COLUMNS", "PNG_MAPS", "export_all", "read_hdf5", "write_csv", "write_hdf5", "write_png", "write_pngs"]

log = logging.getLogger(__name__)

#: Columns of :func:`write_csv`.
CSV_COLUMNS: tuple[str, ...] = ("x", "y", "qx", "qy", "qz", "q_norm", "strain", "pitch", "roll", "ok", "reason")
#: Maps drawn by :func:`write_pngs` by default.
PNG_MAPS: tuple[str, ...] = ("strain", "pitch", "roll")

_POSITION_UNITS = "um"


def _target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _check_maps(maps: Any) -> Maps:
    if not isinstance(maps, Maps):
        raise KmapInputError(f"export needs dass.kmap.maps.Maps (from strain_tilt), got {type(maps).__name__}")
    return maps


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# HDF5


def write_hdf5(
    maps: Maps,
    path: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any] | None = None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the maps as a NeXus-style HDF5 file.

    Layout::

        /                      NXroot, default="entry"
        entry/                 NXentry, default="strain", title, start_time, synthetic?
          strain/ pitch/ roll/ q_norm/ qx/ qy/ qz/   NXdata: signal=<name>, axes=["y","x"]
            <name>             (ny, nx) float64, units, long_name (NaN where masked)
            x, y               (nx,), (ny,) µm, units="um", long_name
          mask/                NXdata: signal="ok" (uint8, 1 = good), one dataset per reason,
                               reason (int8 reason map, 0 = ok; attribute legend)
          reference/           NXparameters: q0 (1/angstrom), q0_norm, d_spacing, source, …
          statistics/          NXcollection: one group per map, one scalar per statistic
          process/             NXprocess: program, version, date, settings (NXnote JSON),
                               provenance (NXnote JSON: input files, fit, conversion)

    Parameters
    ----------
    maps : Maps
    path : path-like
        The file to write.
    provenance : mapping, optional
        JSON-able description of how the maps were made (input file, q-space and fit
        parameters, ...). ``{"synthetic": True}`` marks the entry synthetic.
    title : str, optional
        Entry title (default: built from the reference and grid).
    overwrite : bool
        Replace an existing file.
    """
    import h5py

    maps = _check_maps(maps)
    out = _target(path, overwrite)
    prov = dict(provenance or {})
    synthetic = bool(prov.get("synthetic", False))
    ny, nx = maps.shape
    if title is None:
        title = f"KMAP strain and tilt maps ({ny} x {nx} positions)"
        if synthetic:
            title = "SYNTHETIC " + title
    with h5py.File(out, "w") as h5:
        h5.attrs["NX_class"] = "NXroot"
        h5.attrs["default"] = "entry"
        h5.attrs["creator"] = f"dass {__version__} (dass.kmap.export)"
        h5.attrs["file_time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        entry = h5.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "strain"
        entry["title"] = title
        entry["start_time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if synthetic:
            entry.attrs["synthetic"] = True
        for name in MAP_NAMES:
            _nxdata(entry, name, maps.map(name), maps, MAP_UNITS[name], MAP_LONG_NAMES[name])
        mask = _nxdata(entry, "mask", maps.ok.astype(np.uint8), maps, "", "good fit (1) / masked (0)", signal="ok")
        for reason, values in maps.reasons.items():
            ds = mask.create_dataset(reason, data=values.astype(np.uint8))
            ds.attrs["long_name"] = f"masked: {reason}"
        mask.create_dataset("index", data=maps.index).attrs["long_name"] = "index of the fit point of each cell (-1: none)"
        codes = mask.create_dataset("reason", data=maps.reason_map())
        codes.attrs["long_name"] = "first reason masked (0: ok, k: reason k of 'legend')"
        codes.attrs["legend"] = _dumps({str(i): f"{n}: {MASK_REASON_TEXT[n]}" for i, n in enumerate(MASK_REASONS, start=1)})

        ref = entry.create_group("reference")
        ref.attrs["NX_class"] = "NXparameters"
        rdict = maps.reference.to_dict()
        ref.create_dataset("q0", data=maps.reference.q0).attrs["units"] = "1/angstrom"
        ref.create_dataset("q0_norm", data=maps.reference.q0_norm).attrs["units"] = "1/angstrom"
        ref.create_dataset("d_spacing", data=maps.reference.d_spacing).attrs["units"] = "angstrom"
        ref["source"] = maps.reference.source
        ref["parameters"] = _dumps(rdict)
        for key, units in (("energy_kev", "keV"), ("lattice_a", "angstrom"), ("bragg_angle_deg", "deg")):
            if key in rdict:
                ref.create_dataset(key, data=float(rdict[key])).attrs["units"] = units
        if "hkl" in rdict:
            ref["hkl"] = np.asarray(rdict["hkl"], dtype=np.int64)

        stats = entry.create_group("statistics")
        stats.attrs["NX_class"] = "NXcollection"
        for name, values in maps.stats.items():
            grp = stats.create_group(name)
            grp.attrs["NX_class"] = "NXcollection"
            for key, value in values.items():
                ds = grp.create_dataset(key, data=value)
                if key not in ("count", "total", "masked") and MAP_UNITS[name]:
                    ds.attrs["units"] = MAP_UNITS[name]

        proc = entry.create_group("process")
        proc.attrs["NX_class"] = "NXprocess"
        proc["program"] = "dass.kmap"
        proc["version"] = __version__
        proc["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        proc["sequence_index"] = 1
        for key, value in (("settings", maps.settings), ("provenance", prov)):
            note = proc.create_group(key)
            note.attrs["NX_class"] = "NXnote"
            note["type"] = "application/json"
            note["data"] = _dumps(value)
    log.info("kmap export: wrote %s (%d x %d maps)", out, ny, nx)
    return out


def _nxdata(parent: Any, name: str, data: np.ndarray, maps: Maps, units: str, long_name: str, *, signal: str | None = None) -> Any:
    grp = parent.create_group(name)
    grp.attrs["NX_class"] = "NXdata"
    signal = signal or name
    grp.attrs["signal"] = signal
    grp.attrs["axes"] = np.array(["y", "x"], dtype=object)
    grp.attrs["y_indices"] = 0
    grp.attrs["x_indices"] = 1
    ds = grp.create_dataset(signal, data=data)
    if units:
        ds.attrs["units"] = units
    ds.attrs["long_name"] = long_name
    for axis, values in (("x", maps.x), ("y", maps.y)):
        a = grp.create_dataset(axis, data=values)
        a.attrs["units"] = _POSITION_UNITS
        a.attrs["long_name"] = f"sample {axis} / µm"
    return grp


def read_hdf5(path: str | os.PathLike[str]) -> Maps:
    """Read maps written by :func:`write_hdf5` back into :class:`Maps`.

    Raises
    ------
    KmapInputError
        When the file is missing or is not a dass KMAP maps file.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise KmapInputError("maps file not found; write it with dass.kmap.export.write_hdf5", file=p)
    if not h5py.is_hdf5(p):
        raise KmapInputError("not an HDF5 file; pass a file written by dass.kmap.export.write_hdf5", file=p)
    with h5py.File(p, "r") as h5:
        try:
            entry = h5["entry"]
            arrays = {name: entry[name][name][()] for name in MAP_NAMES}
            x = entry["strain/x"][()]
            y = entry["strain/y"][()]
            mask = entry["mask"]
            ok = mask["ok"][()].astype(bool)
            reasons = {r: mask[r][()].astype(bool) for r in mask if r in MASK_REASONS}
            index = mask["index"][()]
            ref = entry["reference"]
            params = json.loads(_text(ref["parameters"][()]))
            reference = Reference(q0=ref["q0"][()], source=_text(ref["source"][()]), params=params)
            settings = json.loads(_text(entry["process/settings/data"][()]))
            stats = {
                name: {k: v[()].item() for k, v in grp.items()} for name, grp in entry["statistics"].items()
            }
        except KeyError as e:
            raise KmapInputError(
                f"not a dass KMAP maps file (missing {e.args[0] if e.args else e}); write it with "
                "dass.kmap.export.write_hdf5", file=p,
            ) from None
    q = np.stack([arrays["qx"], arrays["qy"], arrays["qz"]], axis=-1)
    return Maps(
        x=x, y=y, q=q, q_norm=arrays["q_norm"], strain=arrays["strain"], pitch=arrays["pitch"],
        roll=arrays["roll"], ok=ok, reasons=reasons, index=index, reference=reference,
        settings=settings, stats=stats,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# PNG


def _nice_length(span: float) -> float:
    """A round scale-bar length (1, 2 or 5 × 10^k) of about a fifth of ``span``."""
    if span <= 0:
        return 1.0
    target = span / 5
    k = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**k <= target:
            return m * 10**k
    return 10**k  # pragma: no cover


def write_png(
    maps: Maps,
    path: str | os.PathLike[str],
    name: str = "strain",
    *,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    size_px: tuple[int, int] = (640, 480),
    dpi: int = 100,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw one map into a PNG: colour bar, axes in µm, a scale bar; masked cells grey.

    Parameters
    ----------
    maps : Maps
    path : path-like
    name : str
        One of :data:`dass.kmap.maps.MAP_NAMES`.
    cmap : str, optional
        Matplotlib colour map (default ``"RdBu_r"`` for strain and tilts, else ``"viridis"``).
    vmin, vmax : float, optional
        Colour range; default :func:`dass.kmap.maps.robust_limits` of the good values
        (outliers cannot take the scale over).
    size_px : (int, int)
        Picture width and height in pixels (exact).
    dpi : int
    title : str, optional
        Default: the map's long name (``SYNTHETIC`` prefixed when ``maps.settings`` says so).
    overwrite : bool
    """
    maps = _check_maps(maps)
    if name not in MAP_NAMES:
        raise KmapInputError(f"no map {name!r} to draw; choose one of {', '.join(MAP_NAMES)}", field="name")
    out = _target(path, overwrite)
    fig = figure(maps, name, cmap=cmap, vmin=vmin, vmax=vmax, size_px=size_px, dpi=dpi, title=title)
    fig.savefig(out, dpi=dpi, format="png")  # a bare Figure (no pyplot): nothing to close
    return out


def figure(
    maps: Maps,
    name: str = "strain",
    *,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    size_px: tuple[int, int] = (640, 480),
    dpi: int = 100,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """A matplotlib figure of one map (as :func:`write_png` draws it); uses ``ax`` if given."""
    import matplotlib

    if ax is None:
        from matplotlib.figure import Figure  # no pyplot: works headless, leaks no figures

        fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    values = maps.map(name)
    limits = robust_limits(values, maps.ok)
    if vmin is None and limits is not None:
        vmin = limits[0]
    if vmax is None and limits is not None:
        vmax = limits[1]
    if vmin is not None and vmax is not None and vmin == vmax:
        vmin, vmax = vmin - 0.5 * (abs(vmin) or 1e-12), vmax + 0.5 * (abs(vmax) or 1e-12)
    cmap_name = cmap or ("RdBu_r" if name in ("strain", "pitch", "roll") else "viridis")
    colours = matplotlib.colormaps[cmap_name].with_extremes(bad="0.75")
    dx, dy = maps.step
    dx = dx or 1.0
    dy = dy or 1.0
    extent = (maps.x[0] - dx / 2, maps.x[-1] + dx / 2, maps.y[0] - dy / 2, maps.y[-1] + dy / 2)
    image = ax.imshow(
        np.ma.masked_invalid(values), origin="lower", extent=extent, cmap=colours, vmin=vmin, vmax=vmax,
        interpolation="nearest", aspect="equal",
    )
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(MAP_LONG_NAMES[name])
    ax.set_xlabel("x / µm")
    ax.set_ylabel("y / µm")
    if title is None:
        title = MAP_LONG_NAMES[name]
        if maps.settings.get("synthetic"):
            title = "SYNTHETIC data: " + title
    ax.set_title(title, fontsize=10)
    length = _nice_length(extent[1] - extent[0])
    ax.add_artist(
        AnchoredSizeBar(ax.transData, length, f"{length:g} µm", "lower right", pad=0.4, color="black",
                        frameon=True, size_vertical=(extent[3] - extent[2]) / 100)
    )
    return fig


def write_pngs(
    maps: Maps,
    out_dir: str | os.PathLike[str],
    *,
    names: Sequence[str] = PNG_MAPS,
    stem: str = "kmap",
    overwrite: bool = False,
    **kwargs: Any,
) -> dict[str, Path]:
    """:func:`write_png` for several maps: ``{name: <out_dir>/<stem>_<name>.png}``."""
    return {name: write_png(maps, Path(out_dir) / f"{stem}_{name}.png", name, overwrite=overwrite, **kwargs) for name in names}


# ---------------------------------------------------------------------------------------------
# CSV


def write_csv(maps: Maps, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """One row per scan position (in the fit's point order): :data:`CSV_COLUMNS`.

    Masked values are written as ``nan``; ``ok`` is 1 for a good fit, 0 for a masked one;
    ``reason`` is empty where ok, else the first reason the position is masked for
    (:data:`dass.kmap.maps.MASK_REASONS`).
    Positions are the grid positions (µm), q in Å⁻¹, tilts in degrees.
    """
    maps = _check_maps(maps)
    out = _target(path, overwrite)
    iy, ix = np.nonzero(maps.index >= 0)
    order = np.argsort(maps.index[iy, ix], kind="stable")
    iy, ix = iy[order], ix[order]
    codes = maps.reason_map()
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r, c in zip(iy, ix):
            q = maps.q[r, c]
            writer.writerow(
                [repr(float(v)) for v in (maps.x[c], maps.y[r], q[0], q[1], q[2], maps.q_norm[r, c],
                                          maps.strain[r, c], maps.pitch[r, c], maps.roll[r, c])]
                + [int(maps.ok[r, c]), MASK_REASONS[codes[r, c] - 1] if codes[r, c] else ""]
            )
    return out


# ---------------------------------------------------------------------------------------------
# all of them


def export_all(
    maps: Maps,
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "kmap",
    provenance: Mapping[str, Any] | None = None,
    png_names: Sequence[str] = PNG_MAPS,
    overwrite: bool = False,
) -> dict[str, Path]:
    """HDF5, CSV and PNGs into ``out_dir``: ``{"hdf5": …, "csv": …, "png_<name>": …}``."""
    out = Path(out_dir)
    paths: dict[str, Path] = {
        "hdf5": write_hdf5(maps, out / f"{stem}_maps.h5", provenance=provenance, overwrite=overwrite),
        "csv": write_csv(maps, out / f"{stem}_maps.csv", overwrite=overwrite),
    }
    for name, p in write_pngs(maps, out, names=png_names, stem=stem, overwrite=overwrite).items():
        paths[f"png_{name}"] = p
    return paths

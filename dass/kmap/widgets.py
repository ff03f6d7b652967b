"""The interactive KMAP notebook app (ipywidgets): scan → parameters → run → maps → point → export.

:class:`KmapApp` lays out:

* a scan chooser: the xsocs master files (``*_master.h5``) found in the session's mounted
  datasets (:func:`dass.data.datasets`), or a path typed in;
* the parameters: q-space grid, sample ROI (µm), fit method and background, the reference
  (reflection hkl + lattice constant, or the median of the map), processes;
* **Run** with an ``IntProgress`` bar and a status line;
* the strain, pitch and roll maps;
* a position chooser — two sliders (x and y, in µm) rather than clicking on the map: click
  events on a matplotlib figure need the ``ipympl`` widget backend, which is not part of
  this stack — showing the position's q-space projections (its 3-D q histogram summed over
  the two other axes, normalised by the bin hits, as xsocs' fit sees them) with the fitted
  Gaussian (or the centroid) over them;
* export buttons (HDF5, PNG, CSV) writing into the output folder.

All logic is in methods (:meth:`KmapApp.scan_choices`, :meth:`KmapApp.parameters`,
:meth:`KmapApp.run`, :meth:`KmapApp.select`, :meth:`KmapApp.export`) that tests call without a
browser; the buttons only call them. Pictures are rendered to PNG (matplotlib, no pyplot) and
shown in ``ipywidgets.Image``.

    from dass.kmap.widgets import KmapApp
    app = KmapApp()
    app.widget          # display it
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KmapInputError

__all__ = ["KmapApp", "find_masters", "qspace_projections", "fit_curves"]

log = logging.getLogger(__name__)

MASTER_GLOB = "*_master.h5"


def find_masters(root: str | os.PathLike[str], *, limit: int = 200) -> list[Path]:
    """xsocs master files (``*_master.h5``) under a folder, sorted, at most ``limit``."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = []
    for path in sorted(base.rglob(MASTER_GLOB)):
        found.append(path)
        if len(found) >= limit:
            break
    return found


def qspace_projections(qspace_h5: str | os.PathLike[str], index: int, *, background: str = "none") -> dict[str, Any]:
    """One position's q-space histogram projected on each axis, as xsocs' PeakFitter sees it.

    The 3-D histogram is summed over the two other axes and divided by the summed bin hits
    (``xsocs.util.project``); with ``background`` ``"constant"`` or ``"snip"`` xsocs'
    background estimate is subtracted, as the fit does.

    Returns
    -------
    dict
        ``names`` (qx, qy, qz), ``axes`` (three 1-D arrays, Å⁻¹), ``projections`` (three
        1-D arrays), ``sums`` (the 2-D sums over one axis each, divided by the summed hits like the
        projections: (qy, qz), (qx, qz), (qx, qy)),
        ``x``, ``y`` (the position, µm).

    Raises
    ------
    KmapInputError
        When the file is not a q-space file or ``index`` is out of range.
    """
    import h5py
    from xsocs.io.QSpaceH5 import QSpaceH5
    from xsocs.util import project

    path = Path(qspace_h5)
    if not path.is_file() or not h5py.is_hdf5(path):
        raise KmapInputError("q-space file not found or not HDF5: run the conversion first", file=path)
    try:
        with QSpaceH5(str(path)) as qh5:
            axes = [np.asarray(a) for a in qh5.qspace_dimension_values]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in qh5.qspace_dimension_names]
            with qh5.qspace_dset_ctx() as dset:
                n = int(dset.shape[0])
                if not 0 <= int(index) < n:
                    raise KmapInputError(f"position index {index} is out of range (0..{n - 1})", file=path,
                                         field="Data/qspace")
                data = np.asarray(dset[int(index)], dtype=np.float64)
            hits = qh5.histo
            x = float(qh5.sample_x[int(index)])
            y = float(qh5.sample_y[int(index)])
    except KeyError as exc:
        raise KmapInputError(f"not an xsocs q-space file ({exc})", file=path) from None
    projections = [np.array(p, dtype=np.float64) for p in project(data, hits)]
    if background != "none":
        from xsocs.io.FitH5 import BackgroundTypes
        from xsocs.process.fit.peak_fit import background_estimation

        mode = {"constant": BackgroundTypes.CONSTANT, "snip": BackgroundTypes.SNIP}.get(background)
        if mode is None:
            raise KmapInputError(f"unknown background {background!r}: use none, constant or snip", field="background")
        for arr in projections:
            arr -= background_estimation(mode, arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        sums = []
        for i in range(3):
            hit_sum = hits.sum(axis=i)
            sums.append(np.where(hit_sum > 0, data.sum(axis=i) / np.where(hit_sum > 0, hit_sum, 1), 0.0))
    return {"names": names, "axes": axes, "projections": projections, "sums": sums, "x": x, "y": y}


def fit_curves(fit: Any, index: int, axes: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """The fitted curve of each axis of one position, on the given q axes.

    A Gaussian fit gives ``xsocs.util.gaussian(axis, Area, Center, Sigma)``; a centroid fit
    has no curve (None; draw its centre instead).
    """
    from xsocs.util import gaussian

    raw = getattr(fit, "raw", None) or {}
    if fit.method != "gaussian" or not {"Area", "Center", "Sigma"} <= set(raw):
        return [None, None, None]
    return [
        gaussian(np.asarray(axis, dtype=np.float64), raw["Area"][index, d], raw["Center"][index, d], raw["Sigma"][index, d])
        for d, axis in enumerate(axes)
    ]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class KmapApp:
    """The KMAP notebook app; ``app.widget`` is the ipywidgets box to display.

    Parameters
    ----------
    datasets : list of dass Dataset, optional
        Where to look for master files; default :func:`dass.data.datasets` (none when this
        session has no manifest).
    path : path-like, optional
        A master file to preselect (added to the choices).
    output_dir : path-like
        Where :meth:`run` and :meth:`export` write (default ``kmap_output``).
    n_proc : int
        Default number of processes.
    """

    def __init__(
        self,
        *,
        datasets: Sequence[Any] | None = None,
        path: str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] = "kmap_output",
        n_proc: int = 1,
    ) -> None:
        import ipywidgets as w

        self.log = log
        self.output_dir = Path(output_dir)
        self._datasets = datasets
        self.summary: dict[str, Any] | None = None
        self.maps: Any = None
        self.fit: Any = None
        self.qspace_path: Path | None = None
        self.selected: dict[str, Any] | None = None

        choices = self.scan_choices()
        if path is not None:
            choices.insert(0, (f"{Path(path).name} (given)", str(Path(path))))
        layout = w.Layout(width="auto")
        style = {"description_width": "initial"}
        self.scan = w.Dropdown(options=choices or [("(no master file found: type a path)", "")],
                               description="Scan", layout=w.Layout(width="60%"), style=style)
        self.path_text = w.Text(value="", placeholder="…/scan_master.h5 (overrides the list)",
                                description="or path", layout=w.Layout(width="60%"), style=style)
        self.grid = [w.BoundedIntText(value=40, min=4, max=1000, description=label, layout=w.Layout(width="140px"), style=style)
                     for label in ("qx bins", "qy bins", "qz bins")]
        self.use_roi = w.Checkbox(value=False, description="sample ROI (µm)", style=style)
        self.roi = [w.FloatText(value=0.0, description=label, layout=w.Layout(width="140px"), style=style)
                    for label in ("x min", "x max", "y min", "y max")]
        self.method = w.Dropdown(options=["gaussian", "centroid"], value="gaussian", description="Fit", style=style)
        self.background = w.Dropdown(options=["none", "constant", "snip"], value="none", description="Background", style=style)
        self.ref_kind = w.Dropdown(options=[("reflection (hkl, a)", "reflection"), ("median of the map", "median")],
                                   value="reflection", description="Reference", style=style)
        self.hkl = w.Text(value="0 0 4", description="hkl", layout=w.Layout(width="160px"), style=style)
        self.lattice_a = w.FloatText(value=5.431, description="a (Å)", layout=w.Layout(width="160px"), style=style)
        self.n_proc = w.BoundedIntText(value=int(n_proc), min=1, max=max(1, os.cpu_count() or 1),
                                       description="processes", layout=w.Layout(width="160px"), style=style)
        self.engine = w.Dropdown(options=[("dass (xsocs' numbers, faster)", "dass"), ("xsocs (reference)", "xsocs"),
                                          ("direct 3-D fit (beyond xsocs)", "direct")],
                                 value="dass", description="Engine", style=style)
        self.mask_path = w.Text(value="", placeholder="detector mask .npy/.edf/.tif/.h5 (non-zero = masked)",
                                description="mask file", layout=w.Layout(width="60%"), style=style)
        self.normalizer = w.Dropdown(options=[("(none)", "")], value="", description="normalizer", style=style)
        small = w.Layout(width="170px")
        self.min_height = w.Text(value="", placeholder="none", description="min height", layout=small, style=style)
        self.max_width = w.Text(value="", placeholder="none", description="max width (1/Å)", layout=small, style=style)
        self.strain_min = w.Text(value="", placeholder="none", description="strain min", layout=small, style=style)
        self.strain_max = w.Text(value="", placeholder="none", description="strain max", layout=small, style=style)
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.progress = w.IntProgress(value=0, min=0, max=100, description="", layout=w.Layout(width="40%"))
        self.status = w.HTML(value="Choose a scan and press Run.")
        self.maps_image = w.Image(format="png", layout=layout)
        self.x_slider = w.SelectionSlider(options=[("-", 0)], description="x (µm)", continuous_update=False, style=style,
                                          layout=w.Layout(width="60%"))
        self.y_slider = w.SelectionSlider(options=[("-", 0)], description="y (µm)", continuous_update=False, style=style,
                                          layout=w.Layout(width="60%"))
        self.point_info = w.HTML()
        self.point_image = w.Image(format="png", layout=layout)
        self.export_buttons = {kind: w.Button(description=f"Export {kind.upper()}", icon="download")
                               for kind in ("hdf5", "png", "csv")}
        self.export_status = w.HTML()

        self.run_button.on_click(lambda _: self._safe(self.run))
        for kind, button in self.export_buttons.items():
            button.on_click(lambda _, k=kind: self._safe(self.export, k))
        self.x_slider.observe(self._on_slider, names="value")
        self.y_slider.observe(self._on_slider, names="value")
        self.scan.observe(lambda _: self._safe(self.update_normalizers), names="value")
        self.path_text.observe(lambda _: self._safe(self.update_normalizers), names="value")
        self._safe(self.update_normalizers)

        self.widget = w.VBox([
            w.HTML("<b>KMAP: strain and tilt maps (X-SOCS through dass)</b>"),
            self.scan, self.path_text,
            w.HBox(self.grid),
            w.HBox([self.use_roi, *self.roi]),
            w.HBox([self.method, self.background]),
            w.HBox([self.ref_kind, self.hkl, self.lattice_a, self.n_proc]),
            w.HBox([self.engine, self.normalizer]), self.mask_path,
            w.HBox([self.min_height, self.max_width, self.strain_min, self.strain_max]),
            w.HBox([self.run_button, self.progress]),
            self.status,
            self.maps_image,
            self.x_slider, self.y_slider, self.point_info, self.point_image,
            w.HBox(list(self.export_buttons.values())), self.export_status,
        ])

    # -- choices and parameters -----------------------------------------------------------

    def scan_choices(self) -> list[tuple[str, str]]:
        """``(label, path)`` of every master file in the session's mounted datasets."""
        sets = self._datasets
        if sets is None:
            from dass.data import DassDataError, datasets

            try:
                sets = datasets()
            except DassDataError as exc:
                self.log.info("kmap app: no session datasets (%s)", exc)
                sets = []
        out = []
        for ds in sets:
            for master in find_masters(ds.path):
                rel = master.relative_to(ds.path) if master.is_relative_to(ds.path) else master.name
                out.append((f"{ds.id}: {rel}", str(master)))
        return out

    def master_path(self) -> Path:
        """The chosen master file (the typed path wins over the list)."""
        chosen = self.path_text.value.strip() or (self.scan.value or "")
        if not chosen:
            raise KmapInputError("no scan chosen: pick a master file from the list or type its path", field="scan")
        return Path(chosen).expanduser()

    def update_normalizers(self) -> list[str]:
        """Offer the chosen scan's counters (one value per frame) as normalizers."""
        from .inputs import check_master

        names: list[str] = []
        try:
            path = self.master_path()
        except KmapInputError:
            path = None
        if path is not None and path.is_file():
            try:
                names = check_master(path).normalizers
            except KmapInputError as exc:
                self.log.info("kmap app: %s", exc)
        keep = self.normalizer.value if self.normalizer.value in names else ""
        self.normalizer.options = [("(none)", ""), *((n, n) for n in names)]
        self.normalizer.value = keep
        return names

    def parameters(self) -> dict[str, Any]:
        """The keyword arguments of :func:`dass.kmap.service.process_scan` the controls give."""
        reference: Any = None
        if self.ref_kind.value == "reflection":
            try:
                hkl = [int(v) for v in self.hkl.value.replace(",", " ").split()]
            except ValueError:
                raise KmapInputError(f"hkl is {self.hkl.value!r}: type three integers such as '0 0 4'", field="hkl") from None
            reference = {"hkl": hkl, "lattice_a": float(self.lattice_a.value)}
        roi = [float(c.value) for c in self.roi] if self.use_roi.value else None
        smin, smax = _optional_float(self.strain_min, "strain min"), _optional_float(self.strain_max, "strain max")
        if (smin is None) != (smax is None):
            raise KmapInputError("give both strain min and strain max, or neither", field="strain_range")
        return {
            "grid": [int(c.value) for c in self.grid],
            "roi": roi,
            "method": self.method.value,
            "background": self.background.value,
            "reference": reference,
            "n_proc": int(self.n_proc.value),
            "engine": self.engine.value,
            "mask": self.mask_path.value.strip() or None,
            "normalizer": self.normalizer.value or None,
            "min_height": _optional_float(self.min_height, "min height"),
            "max_width": _optional_float(self.max_width, "max width"),
            "strain_range": (smin, smax) if smin is not None else None,
        }

    # -- actions --------------------------------------------------------------------------

    def _safe(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except (KmapInputError, FileExistsError, OSError) as exc:
            self.status.value = f"<span style='color:#b00'>{_escape(str(exc))}</span>"
            self.log.warning("kmap app: %s", exc)
            return None

    def _progress(self, fraction: float, stage: str) -> None:
        self.progress.value = int(round(100 * fraction))
        self.status.value = f"{_escape(stage)} … {100 * fraction:.0f} %"

    def run(self) -> dict[str, Any]:
        """Process the chosen scan with the chosen parameters; show the maps; return the summary.

        Outputs go to ``output_dir`` and replace those of an earlier run.
        """
        from .fit import read_fit
        from .service import maps_of, process_scan

        master = self.master_path()
        params = self.parameters()
        self.progress.value = 0
        self.run_button.disabled = True
        try:
            summary = process_scan(master, self.output_dir, overwrite=True, progress=self._progress, **params)
        finally:
            self.run_button.disabled = False
        self.summary = summary
        self.maps = maps_of(summary)
        self.fit = read_fit(self.output_dir / summary["files"]["fit"])
        qfile = summary["files"].get("qspace")
        self.qspace_path = self.output_dir / qfile if qfile else None
        st = summary["statistics"]["strain"]
        self.status.value = (
            f"{summary['ok_positions']}/{summary['scan']['n_positions']} positions ok; strain median "
            f"{_g(st['median'])}, rms {_g(st['rms'])}" + (" — <b>SYNTHETIC data</b>" if summary["synthetic"] else "")
            + "".join(f"<br>⚠ {_escape(text)}" for text in summary.get("warnings", []))
        )
        self.maps_image.value = self.render_maps()
        self._set_sliders()
        return summary

    def render_maps(self, names: Sequence[str] = ("strain", "pitch", "roll")) -> bytes:
        """PNG of the maps side by side (as shown after :meth:`run`)."""
        from matplotlib.figure import Figure

        from .export import figure

        if self.maps is None:
            raise KmapInputError("no maps yet: press Run first")
        fig = Figure(figsize=(5 * len(names), 4), dpi=80, layout="constrained")
        for i, name in enumerate(names):
            figure(self.maps, name, ax=fig.add_subplot(1, len(names), i + 1))
        return _png(fig)

    def _set_sliders(self) -> None:
        self.x_slider.unobserve(self._on_slider, names="value")
        self.y_slider.unobserve(self._on_slider, names="value")
        self.x_slider.options = [(f"{v:g}", i) for i, v in enumerate(self.maps.x)]
        self.y_slider.options = [(f"{v:g}", i) for i, v in enumerate(self.maps.y)]
        self.x_slider.value = 0
        self.y_slider.value = 0
        self.x_slider.observe(self._on_slider, names="value")
        self.y_slider.observe(self._on_slider, names="value")
        self._safe(self.select, 0, 0)

    def _on_slider(self, _change: Any) -> None:
        self._safe(self.select, int(self.x_slider.value), int(self.y_slider.value))

    def select(self, ix: int, iy: int) -> dict[str, Any]:
        """Show the q-space projections and fit of grid cell (iy, ix); return what is shown.

        Returns
        -------
        dict
            ``x``, ``y`` (µm), ``index`` (fit point), the :func:`qspace_projections` entries,
            ``curves`` (:func:`fit_curves`), ``center`` (fitted q), ``strain``, ``pitch``,
            ``roll``, ``ok``, ``image`` (PNG bytes).
        """
        if self.maps is None or self.fit is None:
            raise KmapInputError("no maps yet: press Run first")
        if self.qspace_path is None:
            raise KmapInputError("this run kept no q-space file (engine 'direct' fits the pixels): "
                                 "no projections to show; run with engine 'dass' or 'xsocs'")
        ny, nx = self.maps.shape
        if not (0 <= ix < nx and 0 <= iy < ny):
            raise KmapInputError(f"cell ({iy}, {ix}) is outside the {ny} x {nx} map")
        index = int(self.maps.index[iy, ix])
        if index < 0:
            self.point_info.value = f"no scan point at x = {self.maps.x[ix]:g} µm, y = {self.maps.y[iy]:g} µm"
            self.point_image.value = b""
            self.selected = {"x": float(self.maps.x[ix]), "y": float(self.maps.y[iy]), "index": -1}
            return self.selected
        proj = qspace_projections(self.qspace_path, index, background=self.fit.background)
        curves = fit_curves(self.fit, index, proj["axes"])
        info = {
            **proj,
            "index": index,
            "curves": curves,
            "center": self.fit.center[index].copy(),
            "strain": float(self.maps.strain[iy, ix]),
            "pitch": float(self.maps.pitch[iy, ix]),
            "roll": float(self.maps.roll[iy, ix]),
            "ok": bool(self.maps.ok[iy, ix]),
        }
        info["image"] = self._render_point(info)
        self.point_image.value = info["image"]
        self.point_info.value = (
            f"position {index}: x = {proj['x']:g} µm, y = {proj['y']:g} µm — strain {info['strain']:.3g}, "
            f"pitch {info['pitch']:.4g}°, roll {info['roll']:.4g}°" + ("" if info["ok"] else " <b>(masked)</b>")
        )
        self.selected = info
        return info

    def _render_point(self, info: dict[str, Any]) -> bytes:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(12, 6.5), dpi=70, layout="constrained")
        pairs = ((1, 2), (0, 2), (0, 1))  # axes left after summing axis 0, 1, 2
        for d in range(3):
            ax = fig.add_subplot(2, 3, d + 1)
            ax.plot(info["axes"][d], info["projections"][d], ".", label="projection")
            if info["curves"][d] is not None:
                ax.plot(info["axes"][d], info["curves"][d], "-", label=f"{self.fit.method} fit")
            ax.axvline(info["center"][d], color="k", lw=0.8, ls=":", label="fitted centre")
            ax.set_xlabel(f"{info['names'][d]} / Å⁻¹")
            ax.legend(fontsize=7)
            a, b = pairs[d]
            ax2 = fig.add_subplot(2, 3, d + 4)
            total = info["sums"][d]
            ax2.imshow(np.log1p(np.clip(total, 0, None)).T, origin="lower", aspect="auto",
                       extent=(info["axes"][a][0], info["axes"][a][-1], info["axes"][b][0], info["axes"][b][-1]))
            ax2.plot(info["center"][a], info["center"][b], "r+")
            ax2.set_xlabel(f"{info['names'][a]} / Å⁻¹")
            ax2.set_ylabel(f"{info['names'][b]} / Å⁻¹")
            ax2.set_title(f"sum over {info['names'][d]} / hits (log)", fontsize=9)
        fig.suptitle(f"x = {info['x']:g} µm, y = {info['y']:g} µm")
        return _png(fig)

    def export(self, kind: str) -> list[Path]:
        """Write the maps as ``"hdf5"``, ``"png"`` (strain, pitch, roll) or ``"csv"``; return the files."""
        from . import export

        if self.maps is None or self.summary is None:
            raise KmapInputError("no maps yet: press Run first")
        stem = Path(self.summary["files"]["hdf5"]).name.removesuffix("_maps.h5")
        folder = self.output_dir / "exports"
        if kind == "hdf5":
            paths = [export.write_hdf5(self.maps, folder / f"{stem}_maps.h5", overwrite=True,
                                       provenance={"summary": self.summary["files"]["summary"],
                                                   "synthetic": self.summary["synthetic"]})]
        elif kind == "png":
            paths = list(export.write_pngs(self.maps, folder, stem=stem, overwrite=True).values())
        elif kind == "csv":
            paths = [export.write_csv(self.maps, folder / f"{stem}_maps.csv", overwrite=True)]
        else:
            raise KmapInputError(f"unknown export {kind!r}: use hdf5, png or csv", field="kind")
        self.export_status.value = "wrote " + ", ".join(_escape(str(p)) for p in paths)
        return paths


def _optional_float(control: Any, what: str) -> float | None:
    text = str(control.value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise KmapInputError(f"{what} is {text!r}: type a number or leave it empty", field=what) from None


def _g(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _escape(text: str) -> str:
    import html

    return html.escape(text)

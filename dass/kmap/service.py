"""The whole KMAP path in one call, for the service notebook (dass jobs) and the widget app.

:func:`process_scan` runs check → q-space conversion + peak fit (engine "dass", "xsocs" or
"direct", see :data:`ENGINES`) → strain and tilt maps → exports, writing everything into one
output folder (the derived dataset):

============================  =====================================================
``<stem>_qspace.h5``          xsocs QSpace HDF5 (engines "dass" and "xsocs"; not with
                              ``write_qspace=False`` or the "direct" engine)
``<stem>_fit.h5``             fit HDF5 in xsocs' layout (every engine)
``<stem>_maps.h5``            NeXus-style maps (:func:`dass.kmap.export.write_hdf5`)
``<stem>_maps.csv``           one row per position (:func:`dass.kmap.export.write_csv`)
``<stem>_<map>.png``          strain, pitch and roll pictures
``<stem>_summary.json``       the returned summary
============================  =====================================================

Examples
--------
>>> from dass.kmap.service import process_scan                          # doctest: +SKIP
>>> summary = process_scan("scan/kmap_master.h5", "results",            # doctest: +SKIP
...                        reference={"hkl": [0, 0, 4], "lattice_a": 5.431})
>>> summary["statistics"]["strain"]["median"]                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..jobs.provenance import package_versions
from .errors import KmapInputError
from .maps import MASK_REASON_TEXT, MASK_REASONS, Maps, Reference

__all__ = ["ENGINES", "STAGES", "job_options", "make_reference", "process_scan"]

#: Conversion + fit engines of :func:`process_scan`: ``"dass"`` (:mod:`dass.kmap.fast`, the
#: same numbers as xsocs, faster), ``"xsocs"`` (xsocs' own QSpaceConverter and PeakFitter,
#: the reference) and ``"direct"`` (:mod:`dass.kmap.direct`, a 3-D fit to the pixels, beyond
#: xsocs' method; its numbers differ from xsocs by design).
ENGINES: tuple[str, ...] = ("dass", "xsocs", "direct")
#: What each engine is, as the summary says it.
ENGINE_LABELS: dict[str, str] = {
    "dass": "dass engine: xsocs' binned q-space conversion and 1-D fits, identical numbers, one pass",
    "xsocs": "xsocs QSpaceConverter + PeakFitter (reference)",
    "direct": "direct 3-D Gaussian fit to the pixels (dass; not xsocs' binned method)",
}

log = logging.getLogger(__name__)

#: Stages of :func:`process_scan` and the fraction of the total work each ends at.
STAGES: tuple[tuple[str, float], ...] = (
    ("check", 0.02),
    ("convert", 0.70),
    ("fit", 0.92),
    ("maps", 0.95),
    ("export", 1.0),
)


def _stem(master: Path) -> str:
    name = master.name
    for suffix in ("_master.h5", ".h5", ".hdf5", ".nxs"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or "kmap"
    return master.stem or "kmap"


def make_reference(spec: Any, *, energy_kev: float | None = None, fit: Any = None) -> Reference:
    """A :class:`Reference` from a notebook parameter.

    Parameters
    ----------
    spec : Reference, mapping or None
        * a :class:`Reference`: used as is;
        * ``{"hkl": [h, k, l], "lattice_a": a}`` or ``{"d_spacing": d}`` (optional
          ``"energy_kev"``, ``"direction"``): :meth:`Reference.from_reflection`;
        * ``{"region": [x_min, x_max, y_min, y_max]}`` (µm): :meth:`Reference.from_region`;
        * None: the median q of the whole map (strain and tilt relative to the average).
    energy_kev : float, optional
        The scan's energy, used when the spec does not give one.
    fit : FitResult, optional
        Needed for region references.

    Raises
    ------
    KmapInputError
        For a spec of another type or with unknown keys.
    """
    if isinstance(spec, Reference):
        return spec
    if spec is None:
        if fit is None:
            raise KmapInputError("reference None (median of the map) needs the fit result", field="reference")
        import numpy as np

        return Reference.from_region(fit, np.ones(np.size(fit.x), dtype=bool))
    if not isinstance(spec, Mapping):
        raise KmapInputError(
            f"reference is {spec!r}: give a dict such as {{'hkl': [0, 0, 4], 'lattice_a': 5.431}}, "
            "{'d_spacing': 1.358}, {'region': [x_min, x_max, y_min, y_max]} or None",
            field="reference",
        )
    keys = set(spec)
    if "region" in keys:
        extra = keys - {"region", "min_height", "max_width"}
        if extra:
            raise KmapInputError(f"reference region takes no {sorted(extra)}", field="reference")
        if fit is None:
            raise KmapInputError("a region reference needs the fit result", field="reference")
        return Reference.from_region(fit, spec["region"], min_height=spec.get("min_height"),
                                     max_width=spec.get("max_width"))
    allowed = {"hkl", "lattice_a", "d_spacing", "energy_kev", "direction"}
    extra = keys - allowed
    if extra:
        raise KmapInputError(
            f"reference has unknown key(s) {sorted(extra)}; use {sorted(allowed)} or 'region'", field="reference"
        )
    kwargs = dict(spec)
    if kwargs.get("energy_kev") is None and energy_kev is not None:
        kwargs["energy_kev"] = energy_kev
    return Reference.from_reflection(**kwargs)


#: the packages whose versions a summary records
VERSIONED = ("dass", "xsocs", "xrayutilities", "numpy", "h5py", "matplotlib")


def process_scan(
    master_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    grid: Sequence[int] = (40, 40, 40),
    roi: Sequence[float] | None = None,
    method: str = "gaussian",
    background: str = "none",
    reference: Any = None,
    n_proc: int = 1,
    min_height: float | None = None,
    max_width: float | None = None,
    strain_range: tuple[float, float] | None = None,
    q_range: tuple[float, float] | None = None,
    mask: Any = None,
    normalizer: str | None = None,
    medfilt: Sequence[int] | None = None,
    engine: str = "dass",
    write_qspace: bool = True,
    stem: str | None = None,
    overwrite: bool = False,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Check → convert → fit → maps → exports; returns (and writes) a JSON-able summary.

    Parameters
    ----------
    master_path : path-like
        The xsocs master HDF5 (:func:`dass.kmap.inputs.check_master` runs first).
    output_dir : path-like
        Folder for every output (created).
    grid : 3 ints
        q-space bins (qx, qy, qz).
    roi : (x_min, x_max, y_min, y_max), optional
        Sample region (µm) to convert.
    method, background : str
        Fit: ``"gaussian"``/``"centroid"``; ``"none"``/``"constant"``/``"snip"``.
    reference : Reference, dict or None
        See :func:`make_reference`; a reflection without energy takes the scan's energy.
    n_proc : int
        Processes for conversion and fit.
    min_height, max_width, strain_range, q_range
        Masking thresholds of :func:`dass.kmap.maps.strain_tilt` (on top of the rules it
        always applies: failed fit, centre outside the q grid, height or width not finite or
        not positive, normalizer value <= 0 or not finite).
    mask, normalizer, medfilt
        As :func:`dass.kmap.qspace.convert`; ``mask`` may be an array or the path of a mask
        file (:func:`dass.kmap.inputs.load_mask`).
    engine : str
        ``"dass"`` (default: :func:`dass.kmap.fast.convert_fit`, xsocs' numbers, faster),
        ``"xsocs"`` (xsocs' converter and fitter, the reference) or ``"direct"``
        (:func:`dass.kmap.direct.fit_direct`: a 3-D Gaussian fitted to the pixels; not
        xsocs' method, see that module).
    write_qspace : bool
        Write the 4-D q-space file (engine "dass"; "xsocs" always writes it, "direct" never).
    stem : str, optional
        File name prefix; default the master's name without ``_master.h5``.
    overwrite : bool
        Replace existing outputs.
    progress : callable, optional
        ``progress(fraction, stage)`` with the overall fraction (0..1) and the stage name
        (:data:`STAGES`).

    Returns
    -------
    dict
        ``master``, ``output_dir``, ``scan`` (positions, shape, angles, energy, synthetic),
        ``parameters``, ``reference``, ``statistics`` (per map), ``masked`` (counts per
        reason), ``files`` (name → path relative to ``output_dir``), ``timings_s``,
        ``versions``, ``synthetic``. Statistics that do not exist (no good position) are
        None, so the file is strict JSON.

    Raises
    ------
    KmapInputError
        Before any work, for a bad master file or parameter.
    """
    from . import export, fit as kfit, qspace
    from .inputs import check_master, load_mask
    from .maps import strain_tilt

    master = Path(master_path)
    out = Path(output_dir)
    start = {name: 0.0 for name, _ in STAGES}
    bounds = dict(STAGES)
    previous = {"check": 0.0, "convert": bounds["check"], "fit": bounds["convert"], "maps": bounds["fit"], "export": bounds["maps"]}
    timings: dict[str, float] = {}

    def report(stage: str, frac: float) -> None:
        if progress is not None:
            lo, hi = previous[stage], bounds[stage]
            progress(lo + (hi - lo) * min(max(float(frac), 0.0), 1.0), stage)

    def stage_done(stage: str) -> None:
        timings[stage] = round(time.perf_counter() - start[stage], 3)
        report(stage, 1.0)

    start["check"] = time.perf_counter()
    report("check", 0.0)
    info = check_master(master)
    if engine not in ENGINES:
        raise KmapInputError(f"unknown engine {engine!r}: use one of {ENGINES}", field="engine")
    if mask is not None and not hasattr(mask, "shape"):
        mask = load_mask(mask, info.frame_shape)
    checked = qspace.check_parameters(info, grid=grid, roi=roi, mask=mask, normalizer=normalizer,
                                      medfilt=medfilt, n_proc=n_proc)
    normalizer_bad = checked["normalizer_bad"][checked["indices"]]
    for what, value in (("strain_range", strain_range), ("q_range", q_range)):
        if value is not None:
            from .maps import _range

            _range(value, what)
    if method not in kfit.METHODS:
        raise KmapInputError(f"unknown fit method {method!r}: use one of {kfit.METHODS}", field="method")
    if background not in kfit.BACKGROUNDS:
        raise KmapInputError(f"unknown background {background!r}: use one of {kfit.BACKGROUNDS}", field="background")
    energy_kev = info.beam_energy_ev / 1000.0
    if isinstance(reference, Mapping) and "region" not in reference:
        ref_obj: Reference | None = make_reference(reference, energy_kev=energy_kev)  # fail early
    elif isinstance(reference, Reference):
        ref_obj = reference
    elif reference is None or isinstance(reference, Mapping):
        ref_obj = None  # needs the fit
    else:
        make_reference(reference)  # raises with the message
        ref_obj = None  # pragma: no cover
    stem = stem or _stem(master)
    out.mkdir(parents=True, exist_ok=True)
    qspace_path = out / f"{stem}_qspace.h5"
    fit_path = out / f"{stem}_fit.h5"
    stage_done("check")

    if engine == "xsocs":
        start["convert"] = time.perf_counter()
        qspace.convert(master, qspace_path, grid=grid, roi=roi, mask=mask, normalizer=normalizer,
                       medfilt=medfilt, n_proc=n_proc, overwrite=overwrite,
                       progress=lambda f: report("convert", f))
        stage_done("convert")
        start["fit"] = time.perf_counter()
        result = kfit.fit(qspace_path, fit_path, method=method, background=background, n_proc=n_proc,
                          overwrite=overwrite, progress=lambda f: report("fit", f))
        stage_done("fit")
    else:
        # one pass: conversion and fit together; the time goes to "convert", "fit" is 0
        start["convert"] = time.perf_counter()
        if engine == "dass":
            from .fast import convert_fit

            if not write_qspace:
                qspace_path = None
            result = convert_fit(master, qspace_path, fit_path, grid=grid, roi=roi, mask=mask,
                                 normalizer=normalizer, medfilt=medfilt, method=method,
                                 background=background, n_proc=n_proc, overwrite=overwrite,
                                 progress=lambda f: report("convert", f))
        else:
            from .direct import fit_direct

            qspace_path = None
            result = fit_direct(master, fit_path, roi=roi, mask=mask, normalizer=normalizer,
                                n_proc=n_proc, overwrite=overwrite,
                                progress=lambda f: report("convert", f))
        stage_done("convert")
        start["fit"] = time.perf_counter()
        stage_done("fit")

    start["maps"] = time.perf_counter()
    if ref_obj is None:
        ref_obj = make_reference(reference, energy_kev=energy_kev, fit=result)
    maps = strain_tilt(result, ref_obj, min_height=min_height, max_width=max_width, strain_range=strain_range,
                       q_range=q_range, normalizer_bad=normalizer_bad)
    maps.settings["synthetic"] = bool(info.synthetic)
    warnings = []
    if normalizer_bad.any():
        warnings.append(
            f"normalizer {normalizer!r}: {int(normalizer_bad.sum())} position(s) have a value <= 0 or not "
            "finite in some entry (field measurement/" + str(normalizer) + "); they are masked (reason 'normalizer')"
        )
    n_masked = int(maps.index.size - maps.ok.sum())
    if n_masked:
        counts = {k: v for k, v in maps.mask_counts().items() if v}
        warnings.append(f"{n_masked} of {maps.index.size} map cells are masked: {counts}")
    for text in warnings:
        log.warning("kmap %s: %s", master, text)
    uncertainty = None
    if getattr(result, "q_norm_err", None) is not None:
        from .maps import summary as map_summary

        with np.errstate(invalid="ignore", divide="ignore"):
            strain_err = ref_obj.q0_norm / result.q_norm**2 * result.q_norm_err
        cells = np.full(maps.shape, np.nan)
        cells[maps.index >= 0] = strain_err[maps.index[maps.index >= 0]]
        uncertainty = {"strain_1sigma": map_summary(cells, maps.ok)}
    stage_done("maps")

    start["export"] = time.perf_counter()
    parameters = {
        "grid": [int(v) for v in grid],
        "roi": [float(v) for v in roi] if roi is not None else None,
        "method": method,
        "background": background,
        "n_proc": int(n_proc),
        "min_height": min_height,
        "max_width": max_width,
        "strain_range": list(strain_range) if strain_range is not None else None,
        "q_range": list(q_range) if q_range is not None else None,
        "normalizer": normalizer,
        "medfilt": list(medfilt) if medfilt is not None else None,
        "mask": mask is not None,
        "masked_pixels": int(np.count_nonzero(mask)) if mask is not None else 0,
        "engine": engine,
        "write_qspace": qspace_path is not None,
    }
    scan = {
        "n_positions": int(info.n_positions),
        "scan_shape": list(info.scan_shape),
        "n_angles": int(info.n_angles),
        "eta_deg": [float(v) for v in info.eta],
        "frame_shape": list(info.frame_shape),
        "energy_kev": energy_kev,
        "motors": list(info.motors),
        "synthetic": bool(info.synthetic),
    }
    provenance = {
        "master": str(master),
        "qspace": qspace_path.name if qspace_path is not None else None,
        "fit": fit_path.name,
        "scan": scan,
        "parameters": parameters,
        "versions": package_versions(VERSIONED),
        "synthetic": bool(info.synthetic),
    }
    files = export.export_all(maps, out, stem=stem, provenance=provenance, overwrite=overwrite)
    stage_done("export")

    summary: dict[str, Any] = {
        "title": ("SYNTHETIC " if info.synthetic else "") + f"KMAP strain and tilt maps of {master.name}",
        "master": str(master),
        "output_dir": str(out),
        "synthetic": bool(info.synthetic),
        "scan": scan,
        "parameters": parameters,
        "reference": ref_obj.to_dict(),
        "grid": {"nx": int(maps.x.size), "ny": int(maps.y.size), "step_um": list(maps.step)},
        "statistics": maps.stats,
        "ok_positions": int(maps.ok.sum()),
        "masked": maps.mask_counts(),
        "mask_reasons": {name: MASK_REASON_TEXT[name] for name in MASK_REASONS},
        "engine": ENGINE_LABELS[engine],
        "uncertainty": uncertainty,
        "warnings": warnings,
        "files": {
            **({"qspace": qspace_path.name} if qspace_path is not None else {}),
            "fit": fit_path.name,
            **{k: p.name for k, p in files.items()},
            "summary": f"{stem}_summary.json",
        },
        "timings_s": timings,
        "versions": provenance["versions"],
    }
    summary_path = out / summary["files"]["summary"]
    if summary_path.exists() and not overwrite:
        raise FileExistsError(f"{summary_path} exists: pass overwrite=True to replace it")
    summary = _finite(summary)
    summary_path.write_text(json.dumps(summary, indent=2, default=_jsonable, allow_nan=False) + "\n", encoding="utf-8")
    log.info("kmap %s: %d/%d positions ok, outputs in %s", master, summary["ok_positions"], info.n_positions, out)
    return summary


def job_options(
    *,
    dataset_path: str | os.PathLike[str] | None = None,
    mask_file: str = "",
    normalizer: str = "",
    min_height: float = 0.0,
    max_width: float = 0.0,
    strain_range: Sequence[float] = (),
    engine: str = "dass",
    write_qspace: bool = True,
) -> dict[str, Any]:
    """The :func:`process_scan` keywords from a job notebook's typed parameters.

    Notebook parameters cannot be None, so "not set" is spelled: ``""`` (mask file,
    normalizer), ``0`` (thresholds), ``[]`` (strain range).

    Parameters
    ----------
    dataset_path : path-like, optional
        Folder of the input dataset: a relative ``mask_file`` is looked up there.
    mask_file : str
        Detector mask (:func:`dass.kmap.inputs.load_mask`), absolute or inside the dataset.
    normalizer : str
        Counter to divide each frame by (for example ``"mon"``).
    min_height, max_width : float
        Mask positions whose peak is lower / wider (Å⁻¹); 0: no threshold.
    strain_range : [min, max] or []
        Mask positions whose strain lies outside.
    engine : str
        One of :data:`ENGINES`.
    write_qspace : bool
        Keep the 4-D q-space file (engine "dass").

    Raises
    ------
    KmapInputError
        Naming the parameter and what to give.
    """
    out: dict[str, Any] = {"engine": engine, "write_qspace": bool(write_qspace)}
    if engine not in ENGINES:
        raise KmapInputError(f"unknown engine {engine!r}: use one of {ENGINES}", field="engine")
    out["mask"] = None
    if mask_file:
        path = Path(mask_file).expanduser()
        if not path.is_absolute() and dataset_path is not None:
            path = Path(dataset_path) / path
        out["mask"] = str(path)
    out["normalizer"] = normalizer or None
    for name, value in (("min_height", min_height), ("max_width", max_width)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise KmapInputError(f"{name} is {value!r}: give a number (0: no threshold)", field=name) from None
        if number < 0 or number != number:
            raise KmapInputError(f"{name} is {value!r}: give a number >= 0 (0: no threshold)", field=name)
        out[name] = number or None
    if strain_range:
        try:
            lo, hi = (float(v) for v in strain_range)
        except (TypeError, ValueError):
            raise KmapInputError(f"strain_range is {strain_range!r}: give [min, max] or []",
                                 field="strain_range") from None
        if not lo < hi:
            raise KmapInputError(f"strain_range is {strain_range!r}: min must be below max",
                                 field="strain_range")
        out["strain_range"] = (lo, hi)
    else:
        out["strain_range"] = None
    return out


def _finite(value: Any) -> Any:
    """The summary with NaN/inf floats (statistics of an empty map) as None: strict JSON."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    try:
        return value.item()
    except AttributeError:
        return str(value)


def maps_of(summary: Mapping[str, Any]) -> Maps:
    """The :class:`Maps` a :func:`process_scan` summary points to (read from its HDF5)."""
    from .export import read_hdf5

    return read_hdf5(Path(summary["output_dir"]) / summary["files"]["hdf5"])

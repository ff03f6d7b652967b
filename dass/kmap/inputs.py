"""KMAP inputs: check an xsocs master file before any work; make one from SPEC + EDF or BLISS.

:func:`check_master` reads only metadata and shapes (no frames) and refuses, with the file,
entry and field named, what xsocs' q-space conversion cannot use: a file that is not HDF5, no
entries, a broken external link, a missing field (``measurement/imgnr``, the detector
calibration, the eta/phi/nu/del positioners, the sample positions), frames of a shape or type
different from the other entries, a number of positions that disagrees between entries or with
``imgnr``, and rocking angles that are inconsistent between entries (a repeated eta, or a
detector/phi angle that differs between entries of one KMAP).

:func:`from_spec` and :func:`from_bliss` call xsocs' own converters
(``xsocs.process.merge.merge_scan_data`` and ``xsocs.io.bliss.make_xsocs_links``) and then
check what they wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KmapInputError

__all__ = ["ScanInfo", "check_master", "check_normalizer", "from_spec", "from_bliss",
           "load_mask", "normalizer_values"]

log = logging.getLogger(__name__)

# xsocs.io.XsocsH5.MOTORCOLS: the measurement counter that holds each piezo motor's positions
MOTOR_COUNTERS = {"pix": "adcY", "piy": "adcX", "piz": "adcZ"}
DETECTOR_FIELDS = ("beam_energy", "center_chan_dim0", "center_chan_dim1",
                   "chan_per_deg_dim0", "chan_per_deg_dim1")
POSITIONERS = ("eta", "phi", "nu", "del")
SCAN_FIELDS = ("motor_0", "motor_0_steps", "motor_1", "motor_1_steps")
ANGLE_TOLERANCE_DEG = 1e-6


@dataclass
class ScanInfo:
    """What :func:`check_master` found in a valid master file."""

    path: Path
    entries: list[str]
    """Entry names in xsocs' order (one per rocking angle)."""
    eta: list[float]
    """Rocking angle of each entry, degrees."""
    delta: float
    nu: float
    phi: float
    n_positions: int
    frame_shape: tuple[int, int]
    dtype: str
    beam_energy_ev: float
    center_chan: tuple[float, float]
    chan_per_deg: tuple[float, float]
    motors: tuple[str, str]
    """(fast motor, slow motor), for example ("piy", "pix")."""
    scan_shape: tuple[int, int]
    """(steps of motor_1, steps of motor_0) = (ny, nx)."""
    x: np.ndarray = field(repr=False)
    """(n,) positions of motor_0 (fast axis), µm."""
    y: np.ndarray = field(repr=False)
    """(n,) positions of motor_1, µm."""
    normalizers: list[str] = field(default_factory=list)
    """1-D measurement counters of the first entry with one value per frame."""
    synthetic: bool = False

    @property
    def n_angles(self) -> int:
        return len(self.entries)


def _entry_sort_key(name: str) -> str:
    # xsocs.io.XsocsH5.XsocsH5._update_entries
    return ".".join(f"{int(p):06d}" if p.isdigit() else p for p in name.split("."))


def _scalar(grp: Any, name: str, path: Path, entry: str, what: str) -> float:
    if name not in grp:
        raise KmapInputError(
            f"missing {what}: the q-space conversion needs it; add it to the entry "
            "(merge_scan_data writes it when given beam_energy, chan_per_deg and center_chan)",
            file=path, entry=entry, field=f"{grp.name.split('/', 2)[-1]}/{name}",
        )
    value = np.asarray(grp[name][()])
    if value.size != 1 or value.dtype.kind not in "iuf" or not np.isfinite(value).all():
        raise KmapInputError(
            f"{what} must be one finite number, got {value!r}",
            file=path, entry=entry, field=f"{grp.name.split('/', 2)[-1]}/{name}",
        )
    return float(value.reshape(-1)[0])


def _text(value: Any) -> str:
    value = value[()] if hasattr(value, "shape") else value
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def check_master(path: str | Path) -> ScanInfo:
    """Validate an xsocs master (or single-entry) HDF5 file before any processing.

    Reads metadata and dataset shapes only. Raises :class:`KmapInputError` naming the file,
    entry and field of the first problem found.

    Examples
    --------
    >>> import tempfile
    >>> from dass.kmap.synthetic import generate
    >>> master, _ = generate(tempfile.mkdtemp(), shape=(4, 5), n_angles=3, eta_step=0.5)
    >>> info = check_master(master)
    >>> info.n_positions, info.frame_shape, info.scan_shape
    (20, (32, 32), (4, 5))
    >>> [round(float(eta), 2) for eta in info.eta[:2]]  # the rocking angles, 0.5° apart
    [34.3, 34.8]
    """
    import h5py

    p = Path(path)
    if not p.exists():
        raise KmapInputError("file not found: pass the path of the xsocs master HDF5 file",
                             file=p)
    if not p.is_file() or not h5py.is_hdf5(p):
        raise KmapInputError(
            "not an HDF5 file: pass the xsocs master HDF5 (SPEC + EDF data: use "
            "dass.kmap.inputs.from_spec; BLISS data: from_bliss)", file=p,
        )
    entries_info: list[dict[str, Any]] = []
    with h5py.File(p, "r") as h5:
        synthetic = bool(h5.attrs.get("synthetic", False))
        names = sorted(h5.keys(), key=_entry_sort_key)
        entries = []
        for name in names:
            link = h5.get(name, getlink=True)
            try:
                grp = h5[name]
            except KeyError:
                target = getattr(link, "filename", "?")
                raise KmapInputError(
                    f"the entry links to {target!r}, which cannot be opened (missing file or "
                    "entry): keep the per-angle files next to the master file", file=p, entry=name,
                ) from None
            if isinstance(grp, h5py.Group) and _text(grp.attrs.get("NX_class", b"")) == "NXentry":
                entries.append(name)
        if not entries:
            raise KmapInputError(
                "no NXentry found: an xsocs master file links one NXentry per rocking angle",
                file=p,
            )
        for name in entries:
            entries_info.append(_check_entry(h5[name], p, name))
        normalizers = entries_info[0].pop("normalizers")
        for info in entries_info[1:]:
            info.pop("normalizers")

    first = entries_info[0]
    for name, info in zip(entries[1:], entries_info[1:]):
        for key, fld, what in (
            ("n_positions", "measurement/image/data", "number of frames"),
            ("frame_shape", "measurement/image/data", "frame shape"),
            ("dtype", "measurement/image/data", "frame data type"),
            ("beam_energy", "instrument/detector/beam_energy", "beam energy"),
            ("center_chan", "instrument/detector/center_chan_dim0", "direct beam (center channel)"),
            ("chan_per_deg", "instrument/detector/chan_per_deg_dim0", "channels per degree"),
            ("scan_shape", "scan/motor_0_steps", "scan shape"),
        ):
            if info[key] != first[key]:
                raise KmapInputError(
                    f"{what} {info[key]} differs from entry {entries[0]!r} ({first[key]}): all "
                    "entries of one KMAP must match; remove the entry or fix the field",
                    file=p, entry=name, field=fld,
                )
        for ang in ("delta", "nu", "phi"):
            if abs(info[ang] - first[ang]) > ANGLE_TOLERANCE_DEG:
                fld = "del" if ang == "delta" else ang
                raise KmapInputError(
                    f"angle {fld} = {info[ang]} differs from entry {entries[0]!r} "
                    f"({first[ang]}): a KMAP rocks eta only; remove the entry or fix the angle",
                    file=p, entry=name, field=f"instrument/positioners/{fld}",
                )
    etas = [info["eta"] for info in entries_info]
    order = np.argsort(etas)
    for a, b in zip(order[:-1], order[1:]):
        if abs(etas[b] - etas[a]) <= ANGLE_TOLERANCE_DEG:
            raise KmapInputError(
                f"rocking angle eta = {etas[b]} repeats entry {entries[a]!r}: each entry must "
                "hold a different eta; remove the duplicate entry",
                file=p, entry=entries[b], field="instrument/positioners/eta",
            )
    return ScanInfo(
        path=p, entries=entries, eta=etas, delta=first["delta"], nu=first["nu"],
        phi=first["phi"], n_positions=first["n_positions"], frame_shape=first["frame_shape"],
        dtype=first["dtype"], beam_energy_ev=first["beam_energy"],
        center_chan=first["center_chan"], chan_per_deg=first["chan_per_deg"],
        motors=first["motors"], scan_shape=first["scan_shape"], x=first["x"], y=first["y"],
        normalizers=normalizers, synthetic=synthetic,
    )


def _check_entry(grp: Any, p: Path, name: str) -> dict[str, Any]:
    import h5py

    def need(sub: str, what: str) -> Any:
        if sub not in grp:
            raise KmapInputError(f"missing {what}: xsocs needs it for the q-space conversion",
                                 file=p, entry=name, field=sub)
        return grp[sub]

    data = need("measurement/image/data", "the detector frames")
    if isinstance(data, h5py.Dataset) and data.ndim == 3 and data.shape[0] == 0:
        raise KmapInputError(
            "no frames: the entry's frame dataset is empty (0 frames); the scan was not "
            "recorded or not copied: remove the entry or re-merge the scan",
            file=p, entry=name, field="measurement/image/data",
        )
    if not isinstance(data, h5py.Dataset) or data.ndim != 3 or 0 in data.shape:
        raise KmapInputError(
            f"frames must be a 3-D (n, rows, cols) dataset, got shape "
            f"{getattr(data, 'shape', None)}", file=p, entry=name, field="measurement/image/data",
        )
    if data.dtype.kind not in "iuf":
        raise KmapInputError(f"frames must be numbers, got dtype {data.dtype}",
                             file=p, entry=name, field="measurement/image/data")
    _check_first_chunk(data, p, name)
    n = int(data.shape[0])
    imgnr = need("measurement/imgnr", "measurement/imgnr (the image number of each frame)")
    if not isinstance(imgnr, h5py.Dataset) or imgnr.ndim != 1 or imgnr.shape[0] != n:
        raise KmapInputError(
            f"imgnr must be 1-D with one value per frame ({n}), got shape "
            f"{getattr(imgnr, 'shape', None)}", file=p, entry=name, field="measurement/imgnr",
        )
    det = need("instrument/detector", "the detector calibration group")
    energy = _scalar(det, "beam_energy", p, name, "beam energy (eV)")
    if energy <= 0:
        raise KmapInputError(f"beam energy must be > 0 eV, got {energy}",
                             file=p, entry=name, field="instrument/detector/beam_energy")
    cc = (_scalar(det, "center_chan_dim0", p, name, "direct beam row (center channel)"),
          _scalar(det, "center_chan_dim1", p, name, "direct beam column (center channel)"))
    cpd = (_scalar(det, "chan_per_deg_dim0", p, name, "channels per degree (rows)"),
           _scalar(det, "chan_per_deg_dim1", p, name, "channels per degree (columns)"))
    if min(cpd) <= 0:
        raise KmapInputError(f"channels per degree must be > 0, got {cpd}",
                             file=p, entry=name, field="instrument/detector/chan_per_deg_dim0")
    pos = need("instrument/positioners", "the positioners group")
    angles = {a: _scalar(pos, a, p, name, f"angle {a} (degrees)") for a in POSITIONERS}
    scan = need("scan", "the scan parameters group (written from the kmap command)")
    for f in SCAN_FIELDS:
        if f not in scan:
            raise KmapInputError("missing scan parameter: xsocs reads the sample positions "
                                 "through it", file=p, entry=name, field=f"scan/{f}")
    motors = (_text(scan["motor_0"]), _text(scan["motor_1"]))
    steps = (int(np.asarray(scan["motor_0_steps"][()]).reshape(-1)[0]),
             int(np.asarray(scan["motor_1_steps"][()]).reshape(-1)[0]))
    coords = []
    for motor in motors:
        counter = MOTOR_COUNTERS.get(motor)
        if counter is None:
            raise KmapInputError(
                f"scan motor {motor!r} is not a piezo motor xsocs knows "
                f"({sorted(MOTOR_COUNTERS)})", file=p, entry=name, field="scan/motor_0",
            )
        ds = need(f"measurement/{counter}", f"the {motor} positions ({counter})")
        if ds.ndim != 1 or ds.shape[0] != n:
            raise KmapInputError(
                f"{counter} must be 1-D with one position per frame ({n}), got shape {ds.shape}",
                file=p, entry=name, field=f"measurement/{counter}",
            )
        coords.append(np.asarray(ds[()], dtype=np.float64))
    normalizers = [
        k for k, v in grp["measurement"].items()
        if isinstance(v, h5py.Dataset) and v.dtype.kind in "iuf" and v.ndim == 1
        and v.shape[0] == n
    ]
    return {
        "n_positions": n, "frame_shape": (int(data.shape[1]), int(data.shape[2])),
        "dtype": str(data.dtype), "beam_energy": energy, "center_chan": cc,
        "chan_per_deg": cpd, "eta": angles["eta"], "delta": angles["del"], "nu": angles["nu"],
        "phi": angles["phi"], "motors": motors, "scan_shape": (steps[1], steps[0]),
        "x": coords[0], "y": coords[1], "normalizers": normalizers,
    }


def _check_first_chunk(data: Any, master: Path, entry: str) -> None:
    """Read the first chunk (or frame) of a frame dataset: corrupt compressed data shows here.

    A damaged chunk whose header is intact passes every metadata check and fails only when
    the conversion decompresses it; reading the first one costs one chunk per entry.
    """
    stop = min(int(data.shape[0]), int(data.chunks[0]) if data.chunks else 1)
    try:
        data[0:stop]
    except (OSError, RuntimeError, ValueError) as exc:
        raise KmapInputError(
            f"frames 0..{stop - 1} cannot be read ({exc}): the file is damaged (a corrupt or "
            f"truncated chunk); copy it again from the source (its entry is linked from "
            f"{master.name})", file=data.file.filename, entry=entry,
            field="measurement/image/data",
        ) from None


def frame_reader_error(exc: BaseException, data: Any, entry: str, start: int, stop: int) -> KmapInputError:
    """The error for frames ``start..stop-1`` of an entry that could not be read mid-way."""
    return KmapInputError(
        f"frames {start}..{stop - 1} cannot be read ({exc}): the file is damaged (a corrupt "
        "or truncated chunk); copy it again from the source", file=data.file.filename,
        entry=entry, field="measurement/image/data",
    )


def normalizer_values(info: ScanInfo, normalizer: str) -> np.ndarray:
    """The values of a normalizer counter, ``(n_entries, n_positions)`` float64.

    Raises :class:`KmapInputError` (file, entry, field) when the counter is missing from an
    entry or has another length.
    """
    import h5py

    out = np.empty((info.n_angles, info.n_positions), dtype=np.float64)
    with h5py.File(info.path, "r") as h5:
        for k, entry in enumerate(info.entries):
            fld = f"measurement/{normalizer}"
            ds = h5[entry].get(fld)
            if not isinstance(ds, h5py.Dataset) or ds.shape != (info.n_positions,):
                raise KmapInputError(
                    f"normalizer {normalizer!r} needs one value per frame "
                    f"({info.n_positions}) in every entry, got "
                    f"{'none' if ds is None else getattr(ds, 'shape', None)}; choose another "
                    "normalizer or none", file=info.path, entry=entry, field=fld,
                )
            out[k] = np.asarray(ds[()], dtype=np.float64)
    return out


def check_normalizer(info: ScanInfo, normalizer: str) -> np.ndarray:
    """Positions whose normalizer value is <= 0 or not finite in any entry, ``(n,)`` bool.

    xsocs divides each frame by it: a zero gives inf/NaN cubes that its fit still calls
    "ok". Raises :class:`KmapInputError` when no position is usable; otherwise the bad
    positions are logged (file, entry, field) and returned, to be masked in the maps.
    """
    values = normalizer_values(info, normalizer)
    with np.errstate(invalid="ignore"):
        bad_each = ~(np.isfinite(values) & (values > 0))
    bad = bad_each.any(axis=0)
    for k, entry in enumerate(info.entries):
        if bad_each[k].all():
            raise KmapInputError(
                f"normalizer {normalizer!r} is <= 0 or not finite at every position "
                f"(e.g. {values[k, 0]!r}): the counter is not a monitor; choose another "
                "normalizer or none", file=info.path, entry=entry,
                field=f"measurement/{normalizer}",
            )
    if bad.any():
        entries = [e for e, row in zip(info.entries, bad_each) if row.any()]
        log.warning(
            "kmap %s field measurement/%s: %d position(s) with a value <= 0 or not finite "
            "(positions %s, entries %s); they are masked in the maps",
            info.path, normalizer, int(bad.sum()), np.nonzero(bad)[0][:10].tolist(), entries[:10],
        )
    return bad


def from_spec(
    spec_file: str | Path,
    img_dir: str | Path | None,
    out_dir: str | Path,
    *,
    beam_energy: float | None = None,
    chan_per_deg: Sequence[float] | None = None,
    center_chan: Sequence[float] | None = None,
    scan_ids: Sequence[str] | None = None,
    n_proc: int = 1,
    overwrite: bool = False,
) -> Path:
    """Merge a SPEC file and its EDF frames into an xsocs master file.

    Runs the steps of ``xsocs.process.merge.merge_scan_data`` (``KmapSpecParser`` then
    ``KmapMerger``) with xsocs' classes: that helper itself fails in xsocs 2026.2.

    Parameters
    ----------
    spec_file
        SPEC file whose KMAP scans carry a ``#C imageFile dir[..] prefix[..] nextNr[..]
        suffix[..]`` line.
    img_dir
        Folder of the EDF files (None: the ``dir[...]`` of each scan header).
    out_dir
        Folder for the master and per-scan HDF5 files.
    beam_energy
        eV; None reads ``mononrj`` from the ``#UMONO`` header line of each scan.
    chan_per_deg, center_chan
        Detector calibration (rows, cols); required unless the scans carry them.
    scan_ids
        SPEC scan ids to merge (for example ``["1.1", "2.1"]``); None merges all with images.
    n_proc
        Processes for the merge.
    overwrite
        Replace existing output files.

    Returns
    -------
    The master file, already checked with :func:`check_master`.
    """
    spec = Path(spec_file)
    if not spec.is_file():
        raise KmapInputError("SPEC file not found", file=spec)
    with open(spec, "rb") as fh:
        head = fh.read(4096)
    if b"\0" in head or b"#S " not in head and b"#F " not in head:
        raise KmapInputError(
            "not a SPEC file (no '#F' or '#S' line in its first 4 kB): pass the SPEC text file",
            file=spec,
        )
    if img_dir is not None and not Path(img_dir).is_dir():
        raise KmapInputError("image folder not found: pass the folder holding the EDF files",
                             file=img_dir, field="img_dir")
    if chan_per_deg is not None and len(chan_per_deg) != 2:
        raise KmapInputError("chan_per_deg must be (rows, cols)", field="chan_per_deg")
    if center_chan is not None and len(center_chan) != 2:
        raise KmapInputError("center_chan must be (row, col)", field="center_chan")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # xsocs 2026.2's merge_scan_data calls the *modules* KmapSpecParser / KmapMerger
    # ("'module' object is not callable"); run the same steps with the classes it exports.
    from xsocs import config as xsocs_config
    from xsocs.process.merge import KmapMerger, KmapSpecParser

    spec_h5 = out / f"{spec.name}.h5"
    if spec_h5.exists():
        if not overwrite:
            raise FileExistsError(f"{spec_h5} exists: pass overwrite=True to replace it")
        spec_h5.unlink()
    try:
        parser = KmapSpecParser(str(spec), str(spec_h5),
                                img_dir=str(img_dir) if img_dir is not None else None)
        parser.parse()
        if parser.status != KmapSpecParser.DONE:
            raise ValueError(f"SPEC parsing failed ({parser.status}): {parser.statusMsg}")
        found = parser.results
        if not found.matched:
            raise ValueError(
                "no scan has a '#C imageFile' line matching an existing EDF file "
                f"(scans without image line: {found.no_img_info}; image not found: "
                f"{sorted(found.not_matched)})"
            )
        merger = KmapMerger(found.spec_h5, found, str(out))
        merger.beam_energy = beam_energy
        merger.center_chan = center_chan
        merger.chan_per_deg = chan_per_deg
        merger.n_proc = int(n_proc)
        merger.compression = xsocs_config.DEFAULT_HDF5_COMPRESSION
        merger.select(list(scan_ids) if scan_ids is not None else None, clear=True)
        merger.output_dir = str(out)
        merger.merge(overwrite=overwrite)
        if merger.status != KmapMerger.DONE:
            raise ValueError(f"merge failed ({merger.status}): {merger.statusMsg}")
        master = merger.results
    except (ValueError, RuntimeError, KeyError) as exc:
        raise KmapInputError(
            f"xsocs could not merge the SPEC scans and EDF frames: {exc}. Check the "
            "'#C imageFile' lines, the EDF file names and the calibration arguments", file=spec,
        ) from None
    master = Path(master)
    if not master.is_absolute():
        master = out / master
    check_master(master)
    return Path(master)


def from_bliss(
    bliss_file: str | Path,
    out_dir: str | Path,
    *,
    scan_nums: Sequence[int] | None = None,
    detector: str | None = None,
    name: str | None = None,
) -> Path:
    """Link a BLISS dataset HDF5 into xsocs files (``make_xsocs_links``); no frame is copied.

    Parameters
    ----------
    bliss_file
        BLISS dataset file with one ``<n>.1`` scan per rocking angle (``sxdm``/``kmap`` titles).
    out_dir
        Folder for the master and per-scan link files.
    scan_nums
        Scan numbers to use; None uses every sxdm/kmap scan.
    detector
        Detector group name; None finds the only known one (``mpx1x4``, ``eiger2M``, ...).
    name
        Prefix of the output files (default: the BLISS file's stem).

    Returns
    -------
    The master file (``<name>_master.h5``), checked with :func:`check_master`.
    """
    import h5py

    src = Path(bliss_file)
    if not src.is_file():
        raise KmapInputError("BLISS file not found", file=src)
    if not h5py.is_hdf5(src):
        raise KmapInputError("not an HDF5 file: pass the BLISS dataset .h5", file=src)
    with h5py.File(src, "r") as h5:
        scans = [k for k in h5 if k.endswith(".1")]
        if not scans:
            raise KmapInputError("no '<n>.1' scan entry: not a BLISS dataset file", file=src)
        for scan in scans:
            for sub in ("title", "start_time", "instrument/positioners", "measurement",
                        "instrument/monochromator/WaveLength", "technique"):
                if sub not in h5[scan]:
                    raise KmapInputError(
                        "missing: make_xsocs_links needs it to build the xsocs entry",
                        file=src, entry=scan, field=sub,
                    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from xsocs.io.bliss import make_xsocs_links

    try:
        master = make_xsocs_links(str(src), str(out), scan_nums=scan_nums, detector=detector,
                                  name_outh5=name)
    except (KeyError, ValueError, IndexError, Exception) as exc:  # noqa: BLE001 - xsocs raises bare Exception
        raise KmapInputError(f"xsocs make_xsocs_links failed: {exc}", file=src) from None
    return Path(check_master(master).path)


MASK_SUFFIXES = (".npy", ".edf", ".tif", ".tiff", ".h5", ".hdf5")


def load_mask(mask: Any, frame_shape: Sequence[int] | None = None) -> np.ndarray | None:
    """A detector mask (non-zero = pixel left out) from an array or a file; None stays None.

    Parameters
    ----------
    mask
        None, a 2-D array, or the path of a ``.npy``, ``.edf`` or ``.tif`` image, or of an
        HDF5 file with the dataset after ``::`` (``"mask.h5::/entry/mask"``; without it, the
        only 2-D dataset of the file).
    frame_shape
        When given, the mask must have this (rows, cols) shape.

    Returns
    -------
    numpy.ndarray or None
        ``uint8`` array, 1 where a pixel is masked. The input is not modified.
    """
    if mask is None:
        return None
    where = None
    if isinstance(mask, (str, Path)):
        text = str(mask)
        path_text, _, dset = text.partition("::")
        path = Path(path_text).expanduser()
        where = path
        if not path.is_file():
            raise KmapInputError("mask file not found: give the path of a .npy, .edf, .tif or "
                                 ".h5 mask (non-zero = masked pixel)", file=path, field="mask")
        suffix = path.suffix.lower()
        try:
            if suffix == ".npy":
                arr = np.load(path, allow_pickle=False)
            elif suffix in (".edf", ".tif", ".tiff"):
                import fabio

                with fabio.open(str(path)) as img:
                    arr = np.asarray(img.data)
            elif suffix in (".h5", ".hdf5"):
                import h5py

                with h5py.File(path, "r") as h5:
                    if not dset:
                        found: list[str] = []
                        h5.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset)
                                      and o.ndim == 2 else None)
                        if len(found) != 1:
                            raise KmapInputError(
                                f"the file holds {len(found)} 2-D datasets {found[:5]}: name the "
                                "mask as 'file.h5::/path/to/mask'", file=path, field="mask")
                        dset = found[0]
                    if dset not in h5:
                        raise KmapInputError(f"no dataset {dset!r} in the file", file=path,
                                             field="mask")
                    arr = np.asarray(h5[dset][()])
            else:
                raise KmapInputError(f"unknown mask file type {suffix!r}: use one of "
                                     f"{', '.join(MASK_SUFFIXES)}", file=path, field="mask")
        except (OSError, ValueError) as exc:
            if isinstance(exc, KmapInputError):
                raise
            raise KmapInputError(f"cannot read the mask ({exc})", file=path, field="mask") from None
    else:
        arr = np.asarray(mask)
    if arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise KmapInputError(f"a mask must be a 2-D array of numbers (non-zero = masked pixel), "
                             f"got shape {arr.shape} dtype {arr.dtype}", file=where, field="mask")
    if frame_shape is not None and arr.shape != tuple(frame_shape):
        raise KmapInputError(f"mask must have the frame shape {tuple(frame_shape)} (rows, cols), "
                             f"got {arr.shape}", file=where, field="mask")
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(arr, nan=1.0) != 0).astype(np.uint8)

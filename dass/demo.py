"""A small, synthetic demo repository for trying dass without real data.

:func:`seed` writes a repository tree ``<root>/<proposal>/<dataset>/`` in the layout of
``docs/metadata.md`` (schema ``dass.dataset/1``) through any fsspec filesystem. Every file is
generated procedurally with a seeded numpy RNG, so the bytes are the same on every run and
every machine, and the whole tree stays well under 3 MB. Every dataset says plainly that it
is synthetic: ``"synthetic": true``, "SYNTHETIC" in its title, a description saying it was
generated for the demo and is not a measurement, and the keyword ``synthetic``.

What it writes (``today`` is the date passed to :func:`seed`):

=====================================  =====  ==========================================
dataset id                             stack  access
=====================================  =====  ==========================================
``p-2026-001/sem-nanowires``           sem    group ``p-2026-001``
``p-2026-001/sem-particles``           sem    group ``p-2026-001``
``p-2026-001/sem-training-synthetic``  sem    group ``p-2026-001``
``p-2026-002/kmap-sige-island``        kmap   group ``p-2026-002``
``p-2026-002/kmap-embargoed-public``   kmap   group ``p-2026-002``; public, embargo
                                              until ``today`` + 1 year
``p-2026-002/stm-au111-fast``          stm    group ``p-2026-002``
``p-2025-900/sem-reference-public``    sem    no group; public, embargo ended
                                              ``today`` - 1 year
=====================================  =====  ==========================================

File formats follow the tools the stacks build on, as their readers (:mod:`dass.sem.io`,
:mod:`dass.kmap.inputs`, :mod:`dass.stm.fast`) accept them:

* SEM: 8-bit grayscale 512x384 PNG and TIFF (TIFF written with tifffile), with a dark data
  bar over the bottom ~9 % of the height holding text-like blocks and a scale bar. No vendor
  metadata tag is faked; the synthetic note and pixel size are in the TIFF
  ``ImageDescription`` / PNG ``Description`` text.
* KMAP: the X-SOCS input layout: a ``<prefix>_master.h5`` whose entries are external links
  to one ``<prefix>_<entry>.h5`` per rocking angle, each with ``measurement/image/data``
  (positions x 32 x 32 uint16), ``measurement/imgnr``, ``measurement/adcX``/``adcY``,
  ``scan/*`` parameters, ``instrument/detector/*`` (beam energy, direct beam, channels per
  degree) and ``instrument/positioners/{eta,phi,nu,del}``. ``del`` is the name xsocs reads;
  ``delta`` is a soft link to it.
* STM: a FAST-module style HDF5 file: one 1-D int16 dataset ``/data`` whose attributes carry
  the metadata with dotted names (``Scanner.X_Points``, ``Acquisition.NumImages``, ...).

Run ``python -m dass.demo ROOT_URL`` to seed a repository by hand.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import logging
import math
import posixpath
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .sem.synthetic import data_bar_row

log = logging.getLogger(__name__)

__all__ = ["DemoDataset", "PROPOSALS", "build_dataset", "dataset_ids", "seed", "main"]

SCHEMA = "dass.dataset/1"
CREATOR = {"name": "dass demo generator"}
LICENCE = "CC-BY-4.0"
SYNTHETIC_NOTE = (
    "Generated procedurally by dass.demo (numpy, fixed random seed) for the dass demo "
    "repository. This is synthetic data, not a measurement; any physical values are "
    "illustrative settings of the generator."
)

PROPOSALS: dict[str, dict[str, str]] = {
    "p-2026-001": {
        "title": "Nanowire growth on patterned substrates (SYNTHETIC demo proposal)",
        "pi": "dass demo generator",
        "description": (
            "Demo proposal of the dass demo repository; its datasets are used by members of "
            "hub group p-2026-001. " + SYNTHETIC_NOTE
        ),
    },
    "p-2026-002": {
        "title": "Strain in SiGe islands and Au(111) surface dynamics (SYNTHETIC demo proposal)",
        "pi": "dass demo generator",
        "description": (
            "Demo proposal of the dass demo repository; its datasets are used by members of "
            "hub group p-2026-002. " + SYNTHETIC_NOTE
        ),
    },
    "p-2025-900": {
        "title": "Public reference data (SYNTHETIC demo proposal)",
        "pi": "dass demo generator",
        "description": (
            "Demo proposal holding public datasets whose embargo has ended. " + SYNTHETIC_NOTE
        ),
    },
}


@dataclass(frozen=True)
class DemoDataset:
    """One generated dataset: its files (name -> bytes) and its metadata without checksums."""

    proposal: str
    name: str
    files: dict[str, bytes]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.proposal}/{self.name}"

    def dataset_json(self) -> dict[str, Any]:
        """The full ``dataset.json`` content, with the sha256 of every file."""
        meta = dict(self.metadata)
        meta["checksums"] = {
            path: "sha256:" + hashlib.sha256(data).hexdigest()
            for path, data in sorted(self.files.items())
        }
        return meta


# --------------------------------------------------------------------------------------
# small helpers


def _rng(dataset_id: str) -> np.random.Generator:
    """A generator seeded from the dataset id, so each dataset is independent of the others."""
    return np.random.default_rng(zlib.crc32(dataset_id.encode()))


def _shift_years(day: datetime.date, years: int) -> datetime.date:
    """``day`` moved by whole years; 29 February becomes 28 February in common years."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


# --------------------------------------------------------------------------------------
# SEM

SEM_WIDTH = 512
SEM_HEIGHT = 384
SEM_UPSCALE = 4  # drawn at 96 x 128, the demo classifier's training size, and enlarged
#: rows of the data bar (about 9 % of the height, like the Zeiss info strip)
SEM_BAR_HEIGHT = SEM_HEIGHT - SEM_UPSCALE * data_bar_row(SEM_HEIGHT // SEM_UPSCALE)


def _sem_image(rng: np.random.Generator, kind: str) -> np.ndarray:
    """One SYNTHETIC SEM-like image of NFFA category ``kind`` with a data bar: the generator of
    :mod:`dass.sem.synthetic`, the same one the demo classifier is trained on."""
    from PIL import Image

    from dass.sem.synthetic import generate

    # drawn at the demo classifier's training size (dass.sem.demo.DEMO_SETTINGS) and enlarged,
    # so that the demo model sees the motifs at the scale it was trained on
    small = generate(kind, size=(SEM_HEIGHT // SEM_UPSCALE, SEM_WIDTH // SEM_UPSCALE), seed=int(rng.integers(2**31)))
    return np.asarray(Image.fromarray(small).resize((SEM_WIDTH, SEM_HEIGHT), Image.Resampling.NEAREST))


def _png_bytes(img: np.ndarray, description: str) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Description", description)
    info.add_text("Software", "dass.demo")
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG", pnginfo=info, optimize=True)
    return buf.getvalue()


def _tiff_bytes(img: np.ndarray, description: str) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, img, description=description, metadata=None, software="dass.demo")
    return buf.getvalue()


def _sem_dataset(
    proposal: str,
    name: str,
    *,
    kind: str,
    files: Sequence[str],
    title: str,
    summary: str,
    keywords: Sequence[str],
    settings: dict[str, Any],
    today: datetime.date,
    access: dict[str, Any] | None = None,
) -> DemoDataset:
    rng = _rng(f"{proposal}/{name}")
    pixel_size_nm = settings["pixel_size_nm"]
    description_text = (
        f"SYNTHETIC SEM-like image generated by dass.demo, not a measurement. "
        f"motif={kind} pixel_size_nm={pixel_size_nm} "
        f"data_bar_rows={SEM_BAR_HEIGHT}"
    )
    out: dict[str, bytes] = {}
    for fname in files:
        img = _sem_image(rng, kind)
        if fname.endswith(".png"):
            out[fname] = _png_bytes(img, description_text)
        else:
            out[fname] = _tiff_bytes(img, description_text)
    domain = {
        "image_width": SEM_WIDTH,
        "image_height": SEM_HEIGHT,
        "bit_depth": 8,
        "data_bar_height_px": SEM_BAR_HEIGHT,
        **settings,
        "generated_motif": kind,
    }
    metadata = _metadata(
        proposal,
        title=title,
        description=f"{summary} {SYNTHETIC_NOTE}",
        keywords=["SEM", "scanning electron microscopy", *keywords],
        instrument="synthetic (Zeiss-like SEM)",
        technique="SEM",
        stacks=["sem"],
        domain=domain,
        today=today,
        access=access,
    )
    return DemoDataset(proposal, name, out, metadata)


# --------------------------------------------------------------------------------------
# KMAP

KMAP_DETECTOR = (32, 32)
KMAP_ENERGY_KEV = 8.0
KMAP_LATTICE_SI_A = 5.431
KMAP_HKL = (0, 0, 4)
KMAP_PIXEL_SIZE_UM = 55.0
KMAP_DISTANCE_M = 0.5


def _kmap_files(
    rng: np.random.Generator, prefix: str, nx: int, ny: int, step_um: float
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """X-SOCS input files for a synthetic SiGe island on Si: master + one file per angle.

    Written by :func:`dass.kmap.synthetic.generate` (the xsocs input layout, a 3-D Gaussian
    Bragg peak per position placed with xrayutilities in xsocs' geometry): a strain ramp along
    x, pitch and roll ramps, and a round island of extra strain with a sharp edge. Three
    rocking angles, 32 x 32 Poisson frames. The ground truth goes into the metadata
    (``domain["truth"]``) so a notebook can compare its maps with it.
    """
    import tempfile
    from pathlib import Path

    from dass.kmap import synthetic

    cx = (nx - 1) * step_um / 2.0
    cy = (ny - 1) * step_um / 2.0
    with tempfile.TemporaryDirectory(prefix="dass-demo-kmap-") as tmp:
        master, truth = synthetic.generate(
            tmp, shape=(ny, nx), n_angles=3, eta_step=0.03, frame_shape=KMAP_DETECTOR,
            energy_kev=KMAP_ENERGY_KEV, hkl=KMAP_HKL, lattice_a=KMAP_LATTICE_SI_A,
            strain=(0.0, 2e-4, 0.0), tilt=((0.0, 0.01, 0.0), (0.0, 0.0, 0.01)),
            island={"center": (cx, cy), "radius": 0.4 * min(nx, ny) * step_um,
                    "strain": 5e-4},
            step=step_um, distance_m=KMAP_DISTANCE_M, pixel_size_m=KMAP_PIXEL_SIZE_UM * 1e-6,
            seed=int(rng.integers(2**31)), name=prefix,
        )
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).glob(f"{prefix}_*.h5"))}
    chan_per_deg = math.tan(math.radians(1.0)) * KMAP_DISTANCE_M / (KMAP_PIXEL_SIZE_UM * 1e-6)
    domain = {
        "energy_keV": KMAP_ENERGY_KEV,
        "hkl": list(KMAP_HKL),
        "substrate": "Si",
        "lattice_a": KMAP_LATTICE_SI_A,
        "eta_deg": truth.eta_deg,
        "delta_deg": truth.delta_deg,
        "nu_deg": 0.0,
        "phi_deg": 0.0,
        "scan_shape": [ny, nx],
        "scan_step_um": step_um,
        "detector_shape": list(KMAP_DETECTOR),
        "detector_pixel_size_um": KMAP_PIXEL_SIZE_UM,
        "detector_distance_m": KMAP_DISTANCE_M,
        "chan_per_deg": round(chan_per_deg, 3),
        "master_file": master.name,
        "truth": truth.to_json(),
    }
    return files, domain


def _kmap_dataset(
    proposal: str,
    name: str,
    *,
    prefix: str,
    nx: int,
    ny: int,
    step_um: float,
    title: str,
    summary: str,
    today: datetime.date,
    access: dict[str, Any] | None = None,
) -> DemoDataset:
    files, domain = _kmap_files(_rng(f"{proposal}/{name}"), prefix, nx, ny, step_um)
    metadata = _metadata(
        proposal,
        title=title,
        description=f"{summary} {SYNTHETIC_NOTE}",
        keywords=["KMAP", "X-ray nano-diffraction", "strain", "X-SOCS", "SiGe"],
        instrument="synthetic (ID01-like KMAP, X-SOCS input layout)",
        technique="KMAP",
        stacks=["kmap"],
        domain=domain,
        today=today,
        access=access,
    )
    return DemoDataset(proposal, name, files, metadata)


# --------------------------------------------------------------------------------------
# STM (FAST module)

FAST_POINTS = 64
FAST_NUM_IMAGES = 4
FAST_Y_FREQUENCY = 10.0  # Hz: one up + down frame pair per period
FAST_DRIFT_NM_S = (1.2, 0.5)


def _fast_params(rng: np.random.Generator) -> Any:
    """The demo movie's parameters (:class:`dass.stm.synthetic.SyntheticFast`), noise seeded
    from the dataset id."""
    from .stm.synthetic import SyntheticFast

    return SyntheticFast(
        points=FAST_POINTS,
        num_images=FAST_NUM_IMAGES,
        y_frequency=FAST_Y_FREQUENCY,
        drift_nm_s=FAST_DRIFT_NM_S,
        seed=int(rng.integers(0, 2**31)),
    )


def _fast_stream(rng: np.random.Generator) -> np.ndarray:
    """The ``/data`` stream of the demo FAST movie (:func:`dass.stm.synthetic.synthetic_fast_stream`):
    a drifting hexagonal lattice, sinusoidal x scan, up and down sweeps."""
    from .stm.synthetic import synthetic_fast_stream

    return synthetic_fast_stream(_fast_params(rng))


def _fast_attributes(rng: np.random.Generator | None = None) -> dict[str, Any]:
    """The ``/data`` attributes of the demo FAST movie (all that pyfastspm needs, labelled
    synthetic): :func:`dass.stm.synthetic.synthetic_fast_attributes`."""
    from .stm.synthetic import synthetic_fast_attributes

    return synthetic_fast_attributes(_fast_params(rng or np.random.default_rng(0)))


def _stm_dataset(proposal: str, name: str, *, today: datetime.date) -> DemoDataset:
    from .stm.synthetic import synthetic_fast_bytes

    params = _fast_params(_rng(f"{proposal}/{name}"))
    files = {"au111_fast_001.h5": synthetic_fast_bytes(params)}
    domain = {
        "format": "FAST module HDF5",
        "x_points": FAST_POINTS,
        "y_points": FAST_POINTS,
        "num_images": FAST_NUM_IMAGES,
        "x_frequency_hz": params.x_frequency,
        "y_frequency_hz": params.y_frequency,
        "adc_sampling_rate_hz": params.sampling_rate,
        "x_amplitude_v": 0.15,
        "y_amplitude_v": 0.15,
        "calibrated": False,
        "bias_v": -0.5,
        "setpoint_na": 1.0,
        "x_phase": 0,
        "y_phase": 0,
    }
    metadata = _metadata(
        proposal,
        title="SYNTHETIC FAST STM movie of a drifting Au(111)-like lattice",
        description=(
            "A 4-image FAST-module style video-rate STM movie (64 x 64 points, sinusoidal x "
            "scan, up and down sweeps) of a hexagonal lattice that drifts across the frame. "
            + SYNTHETIC_NOTE
        ),
        keywords=["STM", "FAST", "video-rate STM", "Au(111)", "drift"],
        instrument="synthetic (FAST-module video-rate STM)",
        technique="STM",
        stacks=["stm"],
        domain=domain,
        today=today,
    )
    return DemoDataset(proposal, name, files, metadata)


# --------------------------------------------------------------------------------------
# metadata and the catalogue of demo datasets


def _metadata(
    proposal: str,
    *,
    title: str,
    description: str,
    keywords: Sequence[str],
    instrument: str,
    technique: str,
    stacks: Sequence[str],
    domain: dict[str, Any],
    today: datetime.date,
    access: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if "SYNTHETIC" not in title:
        raise ValueError(f"demo dataset title {title!r} must say SYNTHETIC")
    return {
        "schema": SCHEMA,
        "title": title,
        "creators": [dict(CREATOR)],
        "dates": {"created": today.isoformat()},
        "licence": LICENCE,
        "keywords": ["synthetic", "demo", *keywords],
        "description": description,
        "instrument": instrument,
        "technique": technique,
        "stacks": list(stacks),
        "domain": domain,
        "access": access if access is not None else {"groups": [proposal], "public": False},
        "synthetic": True,
    }


def _build_sem_nanowires(today: datetime.date) -> DemoDataset:
    return _sem_dataset(
        "p-2026-001",
        "sem-nanowires",
        kind="Nanowires",
        files=["nanowires_001.png", "nanowires_002.png", "nanowires_003.tif", "nanowires_004.tif"],
        title="SYNTHETIC SEM images of nanowires grown on a patterned substrate",
        summary=(
            "Four 512 x 384 grayscale SEM-like images of randomly oriented nanowires with "
            "catalyst droplets at their tips, with a data bar at the bottom (two PNG, two TIFF)."
        ),
        keywords=["nanowires"],
        settings={
            "pixel_size_nm": 10.0,
            "accelerating_voltage_kV": 5.0,
            "working_distance_mm": 4.0,
            "detector": "SE2",
        },
        today=today,
    )


def _build_sem_particles(today: datetime.date) -> DemoDataset:
    return _sem_dataset(
        "p-2026-001",
        "sem-particles",
        kind="Particles",
        files=["particles_001.tif", "particles_002.png", "particles_003.png"],
        title="SYNTHETIC SEM images of catalyst particles before growth",
        summary=(
            "Three 512 x 384 grayscale SEM-like images of round particles with bright "
            "secondary-electron rims, with a data bar at the bottom (one TIFF, two PNG)."
        ),
        keywords=["particles"],
        settings={
            "pixel_size_nm": 5.0,
            "accelerating_voltage_kV": 10.0,
            "working_distance_mm": 5.5,
            "detector": "InLens",
        },
        today=today,
    )


#: images per category of the demo training set (small: the demo trains in seconds on it)
SEM_TRAINING_PER_CLASS = 6
SEM_TRAINING_SIZE = (128, 128)


def _build_sem_training_synthetic(today: datetime.date) -> DemoDataset:
    """An ImageFolder-layout training set: one folder per NFFA category id, SYNTHETIC images
    of :func:`dass.sem.synthetic.generate` (for the training notebook, not a real dataset)."""
    from dass.sem.categories import CATEGORY_IDS
    from dass.sem.synthetic import generate

    out: dict[str, bytes] = {}
    description = "SYNTHETIC SEM-like training image generated by dass.sem.synthetic, not a measurement."
    for k, category in enumerate(CATEGORY_IDS):
        for i in range(SEM_TRAINING_PER_CLASS):
            img = generate(category, size=SEM_TRAINING_SIZE, seed=1000 * k + i)
            out[f"{category}/{category.lower()}_{i + 1:02d}.png"] = _png_bytes(img, description)
    metadata = _metadata(
        "p-2026-001",
        title="SYNTHETIC labelled SEM images for classifier training (ImageFolder layout)",
        description=(
            f"{SEM_TRAINING_PER_CLASS} procedurally generated SEM-like images per NFFA-Europe category, "
            "one folder per category id, with a data bar: the layout the SEM training notebook "
            f"reads. {SYNTHETIC_NOTE}"
        ),
        keywords=["SEM", "training set", "ImageFolder"],
        instrument="synthetic (dass.sem.synthetic)",
        technique="SEM",
        stacks=["sem"],
        domain={"layout": "ImageFolder", "classes": list(CATEGORY_IDS),
                "images_per_class": SEM_TRAINING_PER_CLASS, "image_size": list(SEM_TRAINING_SIZE)},
        today=today,
    )
    return DemoDataset("p-2026-001", "sem-training-synthetic", out, metadata)


def _build_sem_reference_public(today: datetime.date) -> DemoDataset:
    return _sem_dataset(
        "p-2025-900",
        "sem-reference-public",
        kind="Patterned_surface",
        files=["pattern_001.png", "pattern_002.tif"],
        title="SYNTHETIC SEM reference images of a patterned surface (public)",
        summary=(
            "Two 512 x 384 grayscale SEM-like images of a hole array with a few defects, with "
            "a data bar at the bottom. Public: its embargo has ended."
        ),
        keywords=["patterned surface", "public"],
        settings={
            "pixel_size_nm": 20.0,
            "accelerating_voltage_kV": 3.0,
            "working_distance_mm": 6.0,
            "detector": "SE2",
        },
        today=today,
        access={
            "groups": [],
            "public": True,
            "embargo_until": _shift_years(today, -1).isoformat(),
        },
    )


def _build_kmap_sige_island(today: datetime.date) -> DemoDataset:
    return _kmap_dataset(
        "p-2026-002",
        "kmap-sige-island",
        prefix="sige_island",
        nx=8,
        ny=6,
        step_um=0.5,
        title="SYNTHETIC KMAP scan of a SiGe island on Si(001), Si 004 reflection",
        summary=(
            "An X-SOCS-style KMAP input: 3 rocking angles (eta), an 8 x 6 position raster and "
            "one 32 x 32 detector frame per position, holding a 3-D Gaussian Bragg peak placed "
            "by a known strain ramp, pitch and roll ramps and a round island of extra strain "
            "(written by dass.kmap.synthetic; the truth is in domain.truth)."
        ),
        today=today,
    )


def _build_kmap_embargoed_public(today: datetime.date) -> DemoDataset:
    return _kmap_dataset(
        "p-2026-002",
        "kmap-embargoed-public",
        prefix="sige_edge",
        nx=4,
        ny=4,
        step_um=0.5,
        title="SYNTHETIC KMAP scan of a SiGe island edge (public after embargo)",
        summary=(
            "A smaller X-SOCS-style KMAP input (3 rocking angles, 4 x 4 positions, 32 x 32 "
            "frames). Marked public, but under embargo for one year after it was seeded, so "
            "only members of p-2026-002 see it until then."
        ),
        today=today,
        access={
            "groups": ["p-2026-002"],
            "public": True,
            "embargo_until": _shift_years(today, 1).isoformat(),
        },
    )


def _build_stm_au111_fast(today: datetime.date) -> DemoDataset:
    return _stm_dataset("p-2026-002", "stm-au111-fast", today=today)


_BUILDERS: dict[str, Callable[[datetime.date], DemoDataset]] = {
    "p-2026-001/sem-nanowires": _build_sem_nanowires,
    "p-2026-001/sem-particles": _build_sem_particles,
    "p-2026-001/sem-training-synthetic": _build_sem_training_synthetic,
    "p-2026-002/kmap-sige-island": _build_kmap_sige_island,
    "p-2026-002/kmap-embargoed-public": _build_kmap_embargoed_public,
    "p-2026-002/stm-au111-fast": _build_stm_au111_fast,
    "p-2025-900/sem-reference-public": _build_sem_reference_public,
}


def dataset_ids() -> list[str]:
    """Ids of every dataset :func:`seed` writes, in writing order."""
    return list(_BUILDERS)


def build_dataset(dataset_id: str, *, today: datetime.date | None = None) -> DemoDataset:
    """Generate one demo dataset in memory (files and metadata); nothing is written.

    Raises
    ------
    KeyError
        If ``dataset_id`` is not one of :func:`dataset_ids`.
    """
    try:
        builder = _BUILDERS[dataset_id]
    except KeyError:
        raise KeyError(
            f"{dataset_id!r} is not a demo dataset; choose one of {', '.join(_BUILDERS)}"
        ) from None
    return builder(today or datetime.date.today())


# --------------------------------------------------------------------------------------
# writing


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def seed(
    fs: Any,
    root: str,
    *,
    today: datetime.date | None = None,
    overwrite: bool = False,
    sem_model: bool = False,
    model_cache_dir: str | None = None,
) -> list[str]:
    """Write the synthetic demo repository under ``root`` of the fsspec filesystem ``fs``.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        Filesystem to write to (local, S3, memory, ...).
    root : str
        Repository root inside ``fs``; datasets go to ``<root>/<proposal>/<dataset>/``.
    today : datetime.date, optional
        Date used for ``dates.created`` and the embargo dates (default: today).
    overwrite : bool
        Rewrite datasets (and ``proposal.json`` files) that already exist. By default a
        dataset whose ``dataset.json`` exists is left alone, so seeding twice is harmless.
    sem_model : bool
        Also give the repository a default SEM classifier when it has none: the demo model
        of :func:`dass.sem.demo.ensure_demo_model`, trained on SYNTHETIC images the first
        time on a machine (about a minute on CPU; needs torch) and cached afterwards.
        Off by default so that plain seeding stays fast and torch-free.
    model_cache_dir : str, optional
        Cache folder of the trained demo model (default ``$XDG_CACHE_HOME/dass``).

    Returns
    -------
    list of str
        Ids (``<proposal>/<dataset>``) of the datasets written by this call.

    Examples
    --------
    >>> import fsspec, tempfile
    >>> fs = fsspec.filesystem("file")
    >>> root = tempfile.mkdtemp()
    >>> seed(fs, root)[0]
    'p-2026-001/sem-nanowires'
    >>> seed(fs, root)
    []
    """
    today = today or datetime.date.today()
    root = root.rstrip("/")
    for proposal, info in PROPOSALS.items():
        path = posixpath.join(root, proposal, "proposal.json")
        if overwrite or not fs.exists(path):
            fs.makedirs(posixpath.join(root, proposal), exist_ok=True)
            fs.pipe_file(path, _json_bytes(info))

    written: list[str] = []
    for dataset_id in _BUILDERS:
        folder = posixpath.join(root, dataset_id)
        meta_path = posixpath.join(folder, "dataset.json")
        if fs.exists(meta_path) and not overwrite:
            log.debug("demo dataset %s exists, left alone", dataset_id)
            continue
        ds = build_dataset(dataset_id, today=today)
        if fs.exists(folder):
            fs.rm(folder, recursive=True)  # no stale files next to fresh checksums
        fs.makedirs(folder, exist_ok=True)
        for name, data in ds.files.items():
            if "/" in name:  # the training set's one folder per category
                fs.makedirs(posixpath.join(folder, posixpath.dirname(name)), exist_ok=True)
            fs.pipe_file(posixpath.join(folder, name), data)
        # dataset.json last: its presence marks a complete dataset
        fs.pipe_file(meta_path, _json_bytes(ds.dataset_json()))
        log.info("demo dataset %s written (%d files)", dataset_id, len(ds.files))
        written.append(dataset_id)
    if sem_model:
        from dass.sem.demo import ensure_demo_model
        from dass.sem.registry import ModelRegistry

        ensure_demo_model(ModelRegistry.from_fs(fs, root).storage, cache_dir=model_cache_dir)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dass.demo ROOT_URL``: seed a demo repository and print what was written."""
    import fsspec.core

    parser = argparse.ArgumentParser(
        prog="python -m dass.demo",
        description="Write the synthetic dass demo repository (proposals, datasets, "
        "dataset.json) to an fsspec URL such as file:///srv/repo or s3://bucket/repo.",
    )
    parser.add_argument("root_url", help="repository root URL (any fsspec URL)")
    parser.add_argument(
        "--today",
        type=datetime.date.fromisoformat,
        default=None,
        help="date (YYYY-MM-DD) for dates.created and embargo dates; default: today",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite datasets that already exist"
    )
    parser.add_argument(
        "--sem-model", action="store_true",
        help="also register the demo SEM classifier (trained on SYNTHETIC images, cached per machine)",
    )
    args = parser.parse_args(argv)
    fs, root = fsspec.core.url_to_fs(args.root_url)
    written = seed(fs, root, today=args.today, overwrite=args.overwrite, sem_model=args.sem_model)
    for dataset_id in written:
        print(f"wrote {args.root_url.rstrip('/')}/{dataset_id}")
    if not written:
        print(f"nothing written: all demo datasets already exist under {args.root_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

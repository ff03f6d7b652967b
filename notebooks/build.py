"""Build the stacks' landing notebooks: ``notebooks/<stack>/welcome.ipynb``, and with
``--service`` also their parameterized service notebooks ``notebooks/<stack>/service/*.ipynb``
(run headless as jobs by the dass service; their ``parameters`` cell is tagged ``parameters``).

The notebooks are generated, not hand-edited: change the text here and run

    python notebooks/build.py                     # write the landing notebooks
    python notebooks/build.py --check             # exit 1 if a committed notebook is out of date
    python notebooks/build.py --service [--check] # the same, service notebooks included

Output is reproducible (fixed cell ids, no outputs, no execution counts), so the committed
files change only when this script does.

The notebooks code against the session API ``dass.data``: ``dass.data.datasets()`` returns
the datasets mounted in the session, each with ``id``, ``proposal``, ``name``, ``title``,
``url``, ``path`` (local read-only mount), ``metadata`` (the ``dataset.json`` dict),
``open(path, mode="rb")``, ``ls(path="")`` and ``fs`` (an fsspec filesystem rooted at the
dataset).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

WHAT_WORKS_NOW = """\
## What works now

The datasets you chose when this session was started are mounted **read-only** under
`~/datasets/<proposal>/<dataset>/`, and the `dass.data` module lists them with their metadata
(title, creators, licence, instrument settings, checksums). Read them with any tool that opens
files, or through `dass.data` (`d.open(name)`, `d.fs`).

Datasets of the demo repository are generated procedurally and say so: their title contains
"SYNTHETIC" and their metadata has `"synthetic": true`. They are not measurements."""

LIST_DATASETS = """\
import dass.data

ds = dass.data.datasets()
ds"""

SHOW_FILES = """\
for d in ds:
    print(f"{d.id}: {d.title}")
    if d.metadata.get("synthetic"):
        print("    (synthetic demo data, not a measurement)")
    for name in sorted(d.fs.ls("", detail=False)):
        print("    ", name)"""

SEM_FIRST_LOOK = """\
# First look: the first SEM image (PNG or TIFF) among the mounted datasets.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
images = [
    (d, name)
    for d in ds
    for name in sorted(d.fs.find(""))
    if name.lower().endswith(IMAGE_SUFFIXES)
]
if not images:
    print(
        "No PNG or TIFF image among the mounted datasets. Start a session of the sem stack "
        "with an SEM dataset (in the demo repository: p-2026-001/sem-nanowires or "
        "p-2025-900/sem-reference-public) to see one here."
    )
else:
    from PIL import Image

    d, name = images[0]
    with d.open(name) as f:
        image = Image.open(f)
        image.load()
    print(f"{d.id}/{name}: {image.width} x {image.height} px, mode {image.mode}")
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        from IPython.display import display

        display(image)
    else:
        fig, ax = plt.subplots(figsize=(8, 6))
        ax.imshow(image, cmap="gray")
        ax.set_title(f"{d.id}/{name}")
        ax.set_axis_off()
        plt.show()"""

KMAP_FIRST_LOOK = """\
# First look: the HDF5 tree of a KMAP scan in the X-SOCS input layout. The master file links
# one entry file per rocking angle, so it is opened from the mounted folder (d.path), where
# h5py can follow those links.
import h5py

h5_files = [
    (d, name) for d in ds for name in sorted(d.fs.find("")) if name.endswith((".h5", ".hdf5"))
]
masters = [(d, name) for d, name in h5_files if name.endswith("_master.h5")] or h5_files


def show(path, obj):
    indent = "    " * (path.count("/") + 1)
    label = path.rsplit("/", 1)[-1]
    if isinstance(obj, h5py.Dataset):
        print(f"{indent}{label}  shape={obj.shape} dtype={obj.dtype}")
    else:
        print(f"{indent}{label}/")


if not masters:
    print(
        "No HDF5 file among the mounted datasets. Start a session of the kmap stack with a "
        "KMAP dataset (in the demo repository: p-2026-002/kmap-sige-island) to see one here."
    )
else:
    d, name = masters[0]
    with h5py.File(d.path / name, "r") as h5:
        entries = list(h5)
        print(f"{d.id}/{name}: {len(entries)} entries {entries}")
        first = h5[entries[0]]
        print(f"{entries[0]}/")
        first.visititems(show)
        if "instrument/positioners/eta" in first:
            etas = [float(h5[e]["instrument/positioners/eta"][()]) for e in entries]
            print("eta per entry (deg):", etas)"""

STM_FIRST_LOOK = """\
# First look: the attributes of a FAST movie (an HDF5 file with one 1-D dataset /data whose
# attributes hold the metadata with dotted names).
import h5py

fast = None
for d in ds:
    for name in sorted(d.fs.find("")):
        if not name.endswith(".h5"):
            continue
        with d.open(name) as f, h5py.File(f, "r") as h5:
            if "data" in h5 and "Scanner.X_Points" in h5["data"].attrs:
                attrs = dict(h5["data"].attrs)
                length = h5["data"].shape[0]
                fast = (d, name)
                break
    if fast:
        break

if fast is None:
    print(
        "No FAST movie among the mounted datasets. Start a session of the stm stack with a "
        "FAST dataset (in the demo repository: p-2026-002/stm-au111-fast) to see one here."
    )
else:
    d, name = fast
    print(f"{d.id}/{name}: /data has {length} samples")
    for key in sorted(attrs):
        print(f"    {key} = {attrs[key]}")
    x, y = int(attrs["Scanner.X_Points"]), int(attrs["Scanner.Y_Points"])
    # the number of images comes from the data length, not from Acquisition.NumImages
    print(f"images in the stream: {length // (4 * x * y)} of {4 * x * y} samples each")"""

SEM_APP = """\
# The classifier app: upload images (or a .zip) or pick a mounted dataset, see every
# category's score, confirm or change the category. The classifier runs in the dass service;
# uploads are stored first as a new dataset of your proposal, and a confirmed category is stored
# with the dataset, where the repository can be searched by it.
from dass.sem.widgets import ClassifierApp

app = ClassifierApp(datasets=ds)
app.widget"""

KMAP_END_TO_END = """\
# The whole path on the first scan among the mounted datasets: check the input, q-space
# conversion and peak fit with xsocs, strain and tilt maps, exports (HDF5, PNG, CSV) in
# kmap_output/. The reference is the reflection in the dataset's metadata when there is one.
from IPython.display import Image as PngImage, display
from tqdm.auto import tqdm

from dass.kmap.service import process_scan

scans = [(d, name) for d in ds for name in sorted(d.fs.find("")) if name.endswith("_master.h5")]
if not scans:
    print(
        "No KMAP scan (*_master.h5) among the mounted datasets. Start a session of the kmap stack "
        "with a KMAP dataset (in the demo repository: p-2026-002/kmap-sige-island) to process one here."
    )
else:
    d, name = scans[0]
    domain = d.metadata.get("domain") or {}
    reference = (
        {"hkl": domain["hkl"], "lattice_a": domain["lattice_a"]}
        if "hkl" in domain and "lattice_a" in domain
        else None  # the median q of the map
    )
    bar = tqdm(total=100, desc="KMAP", unit="%")
    summary = process_scan(
        d.path / name,
        "kmap_output",
        grid=(32, 32, 32),
        reference=reference,
        overwrite=True,
        progress=lambda fraction, stage: (setattr(bar, "n", round(100 * fraction)), bar.set_postfix_str(stage)),
    )
    bar.close()
    strain = summary["statistics"]["strain"]
    print(f"{d.id}/{name}: {summary['grid']['ny']} x {summary['grid']['nx']} positions; strain mean "
          f"{strain['mean']:.2e}, rms {strain['rms']:.2e}; masked {summary['masked']}")
    for png in sorted(p for p in summary["files"].values() if str(p).endswith(".png")):
        display(PngImage(filename=f"kmap_output/{png}"))"""

KMAP_APP = """\
# Interactive: choose a scan, ROI, grid and fit; run with a progress bar; look at the maps and at
# any position's q-space projections and fit; export.
from dass.kmap.widgets import KmapApp

kmap_app = KmapApp(datasets=ds)
kmap_app.widget"""

STM_MOVIE_APP = """\
# FAST movies: pick one, play it (Play + slider), switch channels, tick processing steps with a
# live preview of the current frame, export MP4/GIF, PNG, .gsf or a processed HDF5.
from dass.stm.widgets import MovieApp

movie_app = MovieApp(datasets=ds)
movies = movie_app.movie_choices()
if movies:
    label, path = movies[0]
    movie_app.load(path)
    print(f"opened {label}: {movie_app.fast.num_images} images")
else:
    print(
        "No FAST movie among the mounted datasets. Start a session of the stm stack with a FAST "
        "dataset (in the demo repository: p-2026-002/stm-au111-fast) to play one here."
    )
movie_app.widget"""

STM_IMAGE_APP = """\
# Still images (Nanonis .sxm, Omicron MATRIX): choose a channel, tick corrections (plane fit, row
# alignment, fix zero, FFT notch) and compare before and after; export PNG or .gsf.
from dass.stm.still_widgets import ImageApp

image_app = ImageApp(datasets=ds)
image_app.widget"""

SEM_MORE = """\
## Also in this stack

- **As jobs** (Jobs page of the dass service, `dass jobs submit`, or `dass.jobs.submit` here):
  `sem/service/classify_dataset.ipynb` classifies every image of a dataset;
  `sem/service/train_classifier.ipynb` trains a classifier on a labelled dataset (one folder per
  category) and reports accuracy, precision, recall and the confusion matrix;
  `sem/service/image_summary.ipynb` measures the images.
- **The SEM page** of the dass service (`/services/dass/sem`): drag and drop files or a folder,
  confirm or change categories; `GET api/datasets?category=Nanowires` finds labelled datasets.
- **The science** as plain functions: `dass.sem.read_sem` (Zeiss/FEI metadata, palettes),
  `dass.sem.preprocess` (data bar cropped), `dass.sem.classify.Classifier`, `dass.sem.train.train`."""

KMAP_MORE = """\
## Also in this stack

- **As a job**: `kmap/service/strain_tilt_maps.ipynb` (dataset in, maps and HDF5 out, registered
  as a derived dataset); `kmap/service/scan_overview.ipynb` lists a scan's entries.
- **The science** as plain functions: `dass.kmap.inputs.check_master`, `dass.kmap.qspace.convert`
  and `dass.kmap.fit.fit` (xsocs), `dass.kmap.maps.strain_tilt`, `dass.kmap.export`."""

STM_MORE = """\
## Also in this stack

- **As a job**: `stm/service/fast_movie.ipynb` (FAST file in, processed MP4, frames and metadata
  out, registered as a derived dataset); `stm/service/fast_overview.ipynb` shows a raw frame.
- **The science** as plain functions: `dass.stm.open_fast`, `dass.stm.process.process` with a
  `Recipe`, `dass.stm.export`, `dass.stm.open_sxm`/`open_dat` (Nanonis), `dass.stm.open_matrix`
  (MATRIX: reading is untested, no public sample files exist), `dass.stm.still` corrections,
  `dass.stm.logbook` (sample-preparation logbook to metadata)."""


STACKS = {
    "sem": {
        "title": "# SEM image classification",
        "intro": (
            "This stack is for scanning electron microscope images: reading them with their "
            "instrument metadata, and sorting them into the categories of the NFFA-Europe SEM "
            "dataset (nanowires, particles, patterned surfaces, MEMS, tips, ...) with a "
            "classifier that reports how certain it is, so that you can confirm or correct the "
            "category and store it with the dataset, where the repository can be searched by it. "
            "The classifier is a torchvision network; the model in use says what data it was "
            "trained on (the demo's model: SYNTHETIC images only)."
        ),
        "first_look": SEM_FIRST_LOOK,
        "apps": [("markdown", "## Classify SEM images"), ("code", SEM_APP)],
        "more": SEM_MORE,
    },
    "kmap": {
        "title": "# KMAP strain mapping",
        "intro": (
            "This stack is for KMAP scans (X-ray nano-diffraction with fast continuous "
            "scanning, as at ESRF ID01): for each rocking angle the sample is raster-scanned "
            "and one detector frame is recorded per position. Per position the frames form a "
            "3-D reciprocal-space map; fitting its Bragg peak gives a q vector per position, "
            "and from it strain and tilt maps. The stack builds on X-SOCS (`xsocs`) and "
            "`xrayutilities`."
        ),
        "first_look": KMAP_FIRST_LOOK,
        "apps": [("markdown", "## Strain and tilt maps"), ("code", KMAP_END_TO_END), ("code", KMAP_APP)],
        "more": KMAP_MORE,
    },
    "stm": {
        "title": "# STM: FAST video-rate movies and STM images",
        "intro": (
            "This stack is for scanning tunnelling microscopy: FAST-module video-rate movies "
            "(HDF5 files with a 1-D data stream and their scan settings as attributes) and "
            "single images from Nanonis and Omicron MATRIX controllers. The stack builds on "
            "`pyfastspm` for FAST movies, `nanonispy2` for Nanonis files and `access2theMatrix` "
            "for MATRIX files."
        ),
        "first_look": STM_FIRST_LOOK,
        "apps": [("markdown", "## Movies and images"), ("code", STM_MOVIE_APP), ("code", STM_IMAGE_APP)],
        "more": STM_MORE,
    },
}


#: the kernel every generated notebook names
KERNEL_METADATA = {
    "kernelspec": {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    },
    "language_info": {"name": "python"},
}


def _notebook(cells: list[tuple[str, str]], id_prefix: str) -> nbformat.NotebookNode:
    """A validated notebook of ``(kind, source)`` cells, without outputs. ``kind`` is
    ``markdown``, ``code``, or ``parameters`` (a code cell tagged ``parameters``); cell ids are
    ``<id_prefix>-<n>``, fixed so that the output is reproducible."""
    made = []
    for i, (kind, source) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"{id_prefix}-{i}"
        made.append(cell)
    nb = new_notebook(cells=made)
    nb.metadata = dict(KERNEL_METADATA)
    nbformat.validate(nb)
    return nb


def build_notebook(stack: str) -> nbformat.NotebookNode:
    """The landing notebook of ``stack`` (``sem``, ``kmap`` or ``stm``), without outputs."""
    spec = STACKS[stack]
    cells = [
        ("markdown", f"{spec['title']}\n\n{spec['intro']}"),
        ("markdown", WHAT_WORKS_NOW),
        ("code", LIST_DATASETS),
        ("code", SHOW_FILES),
        ("code", spec["first_look"]),
        *spec["apps"],
        ("markdown", spec["more"]),
    ]
    return _notebook(cells, f"{stack}-welcome")


def notebook_path(stack: str) -> Path:
    return HERE / stack / "welcome.ipynb"


def render(stack: str) -> str:
    return nbformat.writes(build_notebook(stack)) + "\n"


# ---------------------------------------------------------------------------------------------
# Service notebooks: parameterized, run headless as jobs (papermill injects the parameters after
# the cell tagged "parameters"). They read one dataset chosen by the ``input_dataset``
# parameter and write their results to ``$DASS_OUTPUT_DIR`` (default ``output``), the folder
# the job runner keeps. The science lives in dass.sem / dass.kmap / dass.stm; a notebook holds
# only the calls, the checks of its parameters and what it shows.

def open_input(kind: str, example: str, note: str = "(synthetic demo data, not a measurement)") -> str:
    """The code lines every service notebook starts with: the mounted input dataset ``ds`` (a
    clear error when the parameter is empty), ``output_dir``, and a line saying what it is."""
    return (
        f'ds = dass.data.input_dataset(input_dataset, kind="{kind}", example="{example}")\n'
        "output_dir = dass.data.output_dir()\n"
        'print(f"{ds.id}: {ds.title}")\n'
        'if ds.metadata.get("synthetic"):\n'
        f'    print("{note}")'
    )


OUTPUT_NOTE = (
    "Results are written to the folder named by `$DASS_OUTPUT_DIR` (the job's output folder "
    "when run as a job; `output/` next to the notebook otherwise)."
)

SEM_SUMMARY_INTRO = f"""\
# SEM image summary

For every PNG, TIFF and JPEG image of one dataset (in name order, at most `max_images`), this
notebook writes

- `summary.csv`: one row per image with `file`, `width`, `height`, `dtype` and the pixel
  statistics `min`, `max`, `mean`, `std` (over all pixels, the microscope's data bar included;
  the first page of a multi-page TIFF);
- `contact_sheet.png`: a thumbnail of each image in a `thumbnail_px` square cell, numbered as
  the rows of `summary.csv` (images that are not 8-bit are scaled from their minimum to their
  maximum).

{OUTPUT_NOTE}

This notebook sorts no image into a category; it only measures and shows them (classification:
`sem/service/classify_dataset.ipynb`)."""

SEM_SUMMARY_PARAMETERS = """\
input_dataset: str = ""  # dataset: SEM images to summarise
max_images: int = 50  # summarise at most this many images, in name order
thumbnail_px: int = 256  # width and height of a contact-sheet cell, in pixels"""

SEM_SUMMARY_SETUP = """\
import csv
import math

import numpy as np
from PIL import Image, ImageDraw

import dass.data

if max_images < 1:
    raise ValueError(f"max_images must be at least 1, got {max_images}")
if not 16 <= thumbnail_px <= 1024:
    raise ValueError(f"thumbnail_px must be between 16 and 1024, got {thumbnail_px}")

""" + open_input("an SEM dataset", "p-2026-001/sem-nanowires")

SEM_SUMMARY_FIND = """\
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
names = sorted(name for name in ds.fs.find("") if name.lower().endswith(IMAGE_SUFFIXES))
if not names:
    raise ValueError(f"{ds.id} holds no PNG, TIFF or JPEG image: choose an SEM dataset")
if len(names) > max_images:
    print(f"{len(names)} images; summarising the first {max_images} (raise max_images for more)")
names = names[:max_images]
print(f"{len(names)} images")"""

SEM_SUMMARY_MEASURE = """\
def eight_bit(pixels):
    \"\"\"An 8-bit view of an image for the contact sheet: min-max scaled unless already 8-bit.\"\"\"
    if pixels.ndim == 3:
        pixels = pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., 0]
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


rows, thumbnails = [], []
for name in names:
    with ds.open(name) as f:
        image = Image.open(f)
        image.load()  # the first page of a multi-page TIFF
    if image.mode in ("1", "P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" else "L" if image.mode == "1" else "RGB")
    pixels = np.asarray(image)
    rows.append(
        {
            "file": name,
            "width": image.width,
            "height": image.height,
            "dtype": str(pixels.dtype),
            "min": pixels.min().item(),
            "max": pixels.max().item(),
            "mean": round(float(pixels.mean()), 3),
            "std": round(float(pixels.std()), 3),
        }
    )
    thumbnail = Image.fromarray(eight_bit(pixels))
    thumbnail.thumbnail((thumbnail_px, thumbnail_px))
    thumbnails.append(thumbnail)

with open(output_dir / "summary.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)

for number, row in enumerate(rows, 1):
    print(
        f"{number:3d}  {row['file']}: {row['width']} x {row['height']} {row['dtype']}, "
        f"min {row['min']}, max {row['max']}, mean {row['mean']}, std {row['std']}"
    )"""

SEM_SUMMARY_SHEET = """\
columns = math.ceil(math.sqrt(len(thumbnails)))
sheet_rows = math.ceil(len(thumbnails) / columns)
sheet = Image.new("RGB", (columns * thumbnail_px, sheet_rows * thumbnail_px), "black")
draw = ImageDraw.Draw(sheet)
for index, thumbnail in enumerate(thumbnails):
    left = (index % columns) * thumbnail_px
    top = (index // columns) * thumbnail_px
    sheet.paste(
        thumbnail.convert("RGB"),
        (left + (thumbnail_px - thumbnail.width) // 2, top + (thumbnail_px - thumbnail.height) // 2),
    )
    draw.text((left + 4, top + 4), str(index + 1), fill=(255, 255, 0))  # the row of summary.csv
sheet.save(output_dir / "contact_sheet.png")
print(f"wrote {output_dir / 'summary.csv'} and {output_dir / 'contact_sheet.png'}")
sheet"""


KMAP_OVERVIEW_INTRO = f"""\
# KMAP scan overview

For one KMAP scan (the X-SOCS input layout: a `*_master.h5` file linking one entry per rocking
angle, or else the first HDF5 file of the dataset), this notebook writes

- `overview.json`: every entry of the file with the shape and dtype of each of its HDF5
  datasets, and its positioners (`instrument/positioners`) when present;
- `summed_frame.png`: the detector frames of the first entry summed over all scan positions
  (`measurement/image/data`, else the first 3-D dataset of the entry), shown as
  log(1 + counts) scaled from minimum to maximum, one pixel per detector pixel.

{OUTPUT_NOTE}

Nothing here converts to reciprocal space or fits a peak (that is
`kmap/service/strain_tilt_maps.ipynb`)."""

KMAP_OVERVIEW_PARAMETERS = """\
input_dataset: str = ""  # dataset: a KMAP scan"""

KMAP_OVERVIEW_SETUP = """\
import json

import h5py
import numpy as np
from IPython.display import display
from PIL import Image

import dass.data

""" + open_input("a KMAP dataset", "p-2026-002/kmap-sige-island") + """

h5_names = sorted(name for name in ds.fs.find("") if name.endswith((".h5", ".hdf5", ".nxs")))
masters = [name for name in h5_names if name.endswith("_master.h5")]
if not h5_names:
    raise ValueError(f"{ds.id} holds no HDF5 file: choose a KMAP dataset")
scan_file = (masters or h5_names)[0]
print(f"scan file: {scan_file}")"""

KMAP_OVERVIEW_ENTRIES = """\
# The master file links one file per entry, so it is opened from the mounted folder (ds.path),
# where h5py can follow those links.
def describe(group):
    \"\"\"{path: {"shape", "dtype"}} of every HDF5 dataset below ``group``.\"\"\"
    found = {}

    def visit(path, obj):
        if isinstance(obj, h5py.Dataset):
            found[path] = {"shape": list(obj.shape), "dtype": str(obj.dtype)}

    group.visititems(visit)
    return found


entries = []
with h5py.File(ds.path / scan_file, "r") as h5:
    for entry_name in h5:
        entry = h5[entry_name]
        if not isinstance(entry, h5py.Group):
            continue
        positioners = {}
        if "instrument/positioners" in entry:
            for motor, item in entry["instrument/positioners"].items():
                if isinstance(item, h5py.Dataset) and item.shape == () and item.dtype.kind in "iuf":
                    positioners[motor] = float(item[()])
        entries.append({"name": entry_name, "datasets": describe(entry), "positioners": positioners})

if not entries:
    raise ValueError(f"{ds.id}/{scan_file} holds no entry (HDF5 group)")
for entry in entries:
    print(f"{entry['name']}: {len(entry['datasets'])} datasets, positioners {entry['positioners']}")
    for path, info in entry["datasets"].items():
        if len(info["shape"]) >= 2:
            print(f"    {path}  shape={tuple(info['shape'])} dtype={info['dtype']}")"""

KMAP_OVERVIEW_SUM = """\
first = entries[0]
frames_path = "measurement/image/data"
if len(first["datasets"].get(frames_path, {}).get("shape", [])) != 3:
    frames_path = next(
        (path for path, info in first["datasets"].items() if len(info["shape"]) == 3), None
    )

summed = None
if frames_path is None:
    print(f"entry {first['name']} has no 3-D dataset of detector frames: no summed frame")
else:
    with h5py.File(ds.path / scan_file, "r") as h5:
        frames = h5[first["name"]][frames_path]
        total = np.zeros(frames.shape[1:], dtype=np.float64)
        for start in range(0, frames.shape[0], 64):  # a block of frames at a time
            total += frames[start : start + 64].sum(axis=0, dtype=np.float64)
        n_frames = frames.shape[0]
    shown = np.log1p(np.clip(total, 0, None))
    low, high = float(shown.min()), float(shown.max())
    scaled = (shown - low) * (255.0 / (high - low)) if high > low else np.zeros_like(shown)
    image = Image.fromarray(np.round(scaled).astype(np.uint8))
    image.save(output_dir / "summed_frame.png")
    summed = {
        "entry": first["name"],
        "dataset": frames_path,
        "frames": int(n_frames),
        "shape": list(total.shape),
        "min": float(total.min()),
        "max": float(total.max()),
        "total": float(total.sum()),
        "png": "summed_frame.png",
        "png_scaling": "log(1 + counts), minimum to maximum as 0..255",
    }
    peak = np.unravel_index(np.argmax(total), total.shape)
    print(
        f"summed {n_frames} frames of {first['name']}/{frames_path}; "
        f"brightest pixel at {tuple(int(i) for i in peak)}"
    )

overview = {
    "dataset": ds.id,
    "title": ds.title,
    "synthetic": bool(ds.metadata.get("synthetic")),
    "file": scan_file,
    "entries": entries,
    "summed_frame": summed,
    "maps": "q-space conversion, peak fitting, strain and tilt maps: kmap/service/strain_tilt_maps.ipynb",
}
(output_dir / "overview.json").write_text(json.dumps(overview, indent=2) + "\\n", encoding="utf-8")
print(f"wrote {output_dir / 'overview.json'}")
if summed:  # shown enlarged here; the PNG keeps one pixel per detector pixel
    display(image.resize((image.width * 8, image.height * 8), Image.NEAREST))"""


STM_OVERVIEW_INTRO = f"""\
# FAST STM movie overview

For the first FAST movie of one dataset (an HDF5 file whose 1-D dataset `/data` carries the
scan settings as attributes), this notebook writes

- `metadata.json`: every attribute of `/data`, the stream length, the scan size and phases, and
  the number of images (from the stream length, not `Acquisition.NumImages`);
- `frame.png`: the forward lines of the up sweep of image `frame` (counted from 0), scaled
  from minimum to maximum, rows in acquisition order (the first line at the top).

The stream is read as the FAST module writes it: rolled by `x_phase + 2·X·y_phase` samples,
reshaped to `(images, 4·Y, X)`; the first `2·Y` rows of an image are the up sweep, the rest the
down sweep; even rows are forward lines, odd rows backward lines.

{OUTPUT_NOTE}

The x motion is sinusoidal and this raw frame is not interpolated onto a regular grid, nor
phase-, drift- or creep-corrected, filtered or levelled (that is `stm/service/fast_movie.ipynb`)."""

STM_OVERVIEW_PARAMETERS = """\
input_dataset: str = ""  # dataset: a FAST STM movie
frame: int = 0  # the image of the movie to export, counted from 0"""

STM_OVERVIEW_SETUP = """\
import json

import h5py
import numpy as np
from PIL import Image

import dass.data

""" + open_input("a FAST STM dataset", "p-2026-002/stm-au111-fast")

STM_OVERVIEW_READ = """\
def plain(value):
    \"\"\"An HDF5 attribute as JSON-able Python.\"\"\"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


movie_file, stream, attrs = None, None, {}
for name in sorted(n for n in ds.fs.find("") if n.endswith(".h5")):
    with ds.open(name) as f, h5py.File(f, "r") as h5:
        data = h5.get("data")
        if isinstance(data, h5py.Dataset) and "Scanner.X_Points" in data.attrs:
            movie_file = name
            stream = data[()]
            attrs = {key: plain(value) for key, value in data.attrs.items()}
            break
if movie_file is None:
    raise ValueError(f"{ds.id} holds no FAST movie (an .h5 file with /data and Scanner.* attributes)")


def phase(axis):
    # old files misspell the group "Acquisiton"
    for key in (f"Acquisition.{axis}_Phase", f"Acquisiton.{axis}_Phase"):
        if key in attrs:
            return int(attrs[key])
    return 0


x_points, y_points = int(attrs["Scanner.X_Points"]), int(attrs["Scanner.Y_Points"])
x_phase, y_phase = phase("X"), phase("Y")
per_image = 4 * x_points * y_points
n_images = stream.size // per_image
print(f"{movie_file}: {stream.size} samples, {x_points} x {y_points} points, {n_images} images")
if n_images == 0:
    raise ValueError(f"{movie_file} holds fewer samples than one image ({per_image})")
if not 0 <= frame < n_images:
    raise ValueError(f"frame must be between 0 and {n_images - 1}, got {frame}")"""

STM_OVERVIEW_FRAME = """\
movie = np.roll(stream, x_phase + 2 * x_points * y_phase)[: n_images * per_image]
movie = movie.reshape(n_images, 4 * y_points, x_points)
up = movie[frame, : 2 * y_points]
forward_up = up[0::2].astype(np.float64)  # (Y, X): even rows are forward lines

low, high = float(forward_up.min()), float(forward_up.max())
scaled = (forward_up - low) * (255.0 / (high - low)) if high > low else np.zeros_like(forward_up)
image = Image.fromarray(np.round(scaled).astype(np.uint8))
image.save(output_dir / "frame.png")

metadata = {
    "dataset": ds.id,
    "title": ds.title,
    "synthetic": bool(ds.metadata.get("synthetic")),
    "file": movie_file,
    "attributes": attrs,
    "samples": int(stream.size),
    "dtype": str(stream.dtype),
    "x_points": x_points,
    "y_points": y_points,
    "x_phase": x_phase,
    "y_phase": y_phase,
    "images": int(n_images),
    "frame": {
        "index": frame,
        "png": "frame.png",
        "lines": "forward lines of the up sweep, first line at the top",
        "shape": list(forward_up.shape),
        "min": low,
        "max": high,
        "scaling": "minimum to maximum as 0..255",
        "x_interpolated": False,
    },
    "processing": "pyfastspm processing and movies: stm/service/fast_movie.ipynb",
}
(output_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\\n", encoding="utf-8")
print(f"wrote {output_dir / 'metadata.json'} and {output_dir / 'frame.png'}")
image.resize((image.width * 4, image.height * 4), Image.NEAREST)  # enlarged here only"""


# ---- replacement "see also" cells of the overview notebooks (their science now exists)

SEM_SUMMARY_NOT_BUILT = """\
## Classification

This notebook measures and shows images; it does not tell what they show. To sort the images
into the NFFA-Europe categories with the registered classifier, run the service notebook
`sem/service/classify_dataset.ipynb` on the same dataset (or use the classifier app of the SEM
stack's landing notebook, or the SEM page of the dass service, where you confirm categories)."""

KMAP_OVERVIEW_NOT_BUILT = """\
## Strain and tilt maps

The image above is a plain sum of raw detector frames, in detector pixels, not reciprocal
space. To convert the scan to q-space with xsocs, fit the Bragg peak per position and get
strain and tilt maps, run the service notebook `kmap/service/strain_tilt_maps.ipynb` on the
same dataset."""

STM_OVERVIEW_NOT_BUILT = """\
## Processed movies

The image above is the raw forward up lines of one frame. To process the movie with pyfastspm
(phase correction, FFT filtering, creep, interpolation, drift, levelling) and export an MP4,
PNG and Gwyddion frames, run the service notebook `stm/service/fast_movie.ipynb` on the same
dataset."""

# ---- SEM: classify every image of a dataset

SEM_CLASSIFY_INTRO = f"""\
# SEM classification of a dataset

Classifies every PNG, TIFF and JPEG image of one dataset (in name order, at most `max_images`)
into the NFFA-Europe SEM categories with a model of the repository's model registry
(`models/`; the registry's default when `model` is empty). The microscope's data bar is cropped
first, exactly as in training. Writes

- `classifications.csv`: one row per image: `file`, `status` (`ok` or `error`), `category`,
  `display_name`, `certainty`, `reason` (for unreadable files), then one score column per
  category;
- `classifications.json`: the same with the model's description (name, architecture, training
  data, metrics);
- `classified.png`: a thumbnail of each image titled with its category and certainty;
- `categories.png`: how many images fell into each category.

The categories are suggestions: confirm or change them in the SEM page of the dass service
(or the classifier app of the landing notebook) to store them as searchable metadata.

{OUTPUT_NOTE}"""

SEM_CLASSIFY_PARAMETERS = """\
input_dataset: str = ""  # dataset: SEM images to classify
model: str = ""  # a registered model's name; empty: the registry's default
max_images: int = 500  # classify at most this many images, in name order
batch_size: int = 32  # images per forward pass"""

SEM_CLASSIFY_SETUP = """\
import json

import dass.data
from dass.sem.registry import ModelRegistry

if max_images < 1:
    raise ValueError(f"max_images must be at least 1, got {max_images}")
if not 1 <= batch_size <= 512:
    raise ValueError(f"batch_size must be between 1 and 512, got {batch_size}")

""" + open_input("an SEM dataset", "p-2026-001/sem-nanowires") + """

registry = ModelRegistry(dass.data.repository())
classifier = registry.load(model or None)
info = classifier.info
print(f"model {info.name} ({info.architecture}, {info.input_size} px, on {classifier.device})")
trained_on = info.trained_on or {}
print(f"trained on {trained_on.get('url')} ({trained_on.get('n_images')} images)")
if trained_on.get("synthetic"):
    print("WARNING: this model was trained on SYNTHETIC images; its categories mean nothing for real SEM data")"""

SEM_CLASSIFY_RUN = """\
from tqdm.auto import tqdm

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
names = sorted(name for name in ds.fs.find("") if name.lower().endswith(IMAGE_SUFFIXES))
if not names:
    raise ValueError(f"{ds.id} holds no PNG, TIFF or JPEG image: choose an SEM dataset")
if len(names) > max_images:
    print(f"{len(names)} images; classifying the first {max_images} (raise max_images for more)")
names = names[:max_images]

data = []
for name in names:
    with ds.open(name) as f:
        data.append(f.read())

bar = tqdm(total=len(names), desc="classifying", unit="image")
outcomes = classifier.classify_files(
    data, names=names, batch_size=batch_size, progress=lambda done, total, message="": bar.update(done - bar.n)
)
bar.close()
for outcome in outcomes:
    if outcome.ok:
        p = outcome.prediction
        print(f"{outcome.name}: {p.category} ({100 * p.certainty:.1f} %)")
    else:
        print(f"{outcome.name}: not classified: {outcome.error}")"""

SEM_CLASSIFY_WRITE = """\
import csv

classes = list(info.classes)
rows = []
for outcome in outcomes:
    row = {"file": outcome.name, "status": "ok" if outcome.ok else "error"}
    if outcome.ok:
        p = outcome.prediction
        row.update(category=p.category, display_name=p.to_json().get("display_name", p.category),
                   certainty=round(p.certainty, 6), reason="")
        row.update({c: round(p.scores[c], 6) for c in classes})
    else:
        row.update(category="", display_name="", certainty="", reason=outcome.error)
        row.update({c: "" for c in classes})
    rows.append(row)

with open(output_dir / "classifications.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
(output_dir / "classifications.json").write_text(json.dumps({
    "dataset": ds.id,
    "synthetic_data": bool(ds.metadata.get("synthetic")),
    "model": info.to_json(),
    "results": [o.to_json() for o in outcomes],
}, indent=2))
print(f"wrote {output_dir / 'classifications.csv'} and classifications.json")"""

SEM_CLASSIFY_PLOTS = """\
import math
from collections import Counter

import matplotlib
import matplotlib.pyplot as plt

from dass.sem import read_sem

good = [(o, d) for o, d in zip(outcomes, data) if o.ok]
if good:
    columns = min(5, len(good))
    fig, axes = plt.subplots(math.ceil(len(good) / columns), columns, squeeze=False,
                             figsize=(3 * columns, 3 * math.ceil(len(good) / columns)))
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (outcome, raw) in zip(axes.ravel(), good):
        ax.imshow(read_sem(raw).image, cmap="gray")
        ax.set_title(f"{outcome.name}\\n{outcome.prediction.category} {100 * outcome.prediction.certainty:.0f} %",
                     fontsize=8)
    fig.tight_layout()
    fig.savefig(output_dir / "classified.png", dpi=80)
    plt.show()

counts = Counter(o.prediction.category for o in outcomes if o.ok)
fig, ax = plt.subplots(figsize=(8, 4))
ax.barh(classes, [counts.get(c, 0) for c in classes])
ax.set_xlabel("images")
ax.set_title(f"{ds.id}: suggested categories ({info.name})")
fig.tight_layout()
fig.savefig(output_dir / "categories.png", dpi=80)
plt.show()"""

# ---- SEM: train a classifier as a job

SEM_TRAIN_INTRO = f"""\
# SEM classifier training

Trains a classifier of SEM images on a dataset in ImageFolder layout (one folder per category,
named by the NFFA-Europe category ids such as `Nanowires` or `Particles`, holding that
category's images) with a torchvision backbone, on CPU or GPU: class-imbalance weighting,
augmentation, a stratified train/validation split and early stopping. Transfer learning starts
from operator-supplied weights (`weights`: a file or URL the job can read); nothing is
downloaded. Writes

- `model.pt`: the checkpoint (architecture, classes, input size, normalization, training-data
  fingerprint, metrics, date);
- `report.json` and `confusion_matrix.png`: held-out accuracy, per-class precision, recall
  and F1, the confusion matrix.

To use the model for classification, an operator registers it in the repository's model
registry: `dass sem models register <results>/model.pt --name NAME [--default]`.

{OUTPUT_NOTE}"""

SEM_TRAIN_PARAMETERS = """\
input_dataset: str = ""  # dataset: labelled SEM images, one folder per category
architecture: str = "mobilenet_v3_small"  # resnet18, resnet50, mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0 or inception_v3
epochs: int = 15  # most epochs (early stopping may end sooner)
input_size: int = 96  # square input side in pixels (inception_v3 needs 299)
batch_size: int = 32  # images per step
learning_rate: float = 0.001  # Adam learning rate
val_fraction: float = 0.2  # share of each category held out for validation
patience: int = 5  # stop after this many epochs without a better validation loss
weights: str = ""  # operator-supplied starting weights (file or URL); empty: from scratch
seed: int = 0  # random seed of the split, the augmentation and the initial weights"""

SEM_TRAIN_SETUP = """\
import dass.data

""" + open_input(
    "a labelled SEM dataset (one folder per category)", "p-2026-001/sem-training-synthetic",
    note="(synthetic demo data, not a measurement: a model trained on it is for demonstration only)",
)

SEM_TRAIN_RUN = """\
from tqdm.auto import tqdm

from dass.sem.train import train

bar = tqdm(desc="training", unit="step")


def progress(done, total, message=""):
    bar.total = total
    bar.n = done
    bar.set_postfix_str(message[:60])
    bar.refresh()


result = train(
    ds.path,
    architecture=architecture,
    epochs=epochs,
    batch_size=batch_size,
    input_size=input_size,
    lr=learning_rate,
    val_fraction=val_fraction,
    patience=patience,
    weights=weights or None,
    seed=seed,
    out_dir=str(output_dir),
    synthetic=bool(ds.metadata.get("synthetic")) or None,
    progress=progress,
)
bar.close()
print(result.summary())"""

SEM_TRAIN_SHOW = """\
from IPython.display import Image as PngImage, display

display(PngImage(filename=str(output_dir / "confusion_matrix.png")))"""

# ---- KMAP: strain and tilt maps of a scan

KMAP_MAPS_INTRO = f"""\
# KMAP strain and tilt maps

For one KMAP scan in the X-SOCS input layout (a `*_master.h5` file linking one entry per
rocking angle), this notebook checks the input, converts every position's frames to q-space
with xsocs (`QSpaceConverter`), fits the Bragg peak per position with xsocs (`PeakFitter`), and
derives what X-SOCS leaves out: the strain map ε = |q0|/|q| − 1 and the tilt maps (pitch and
roll of q relative to the reference direction), with failed fits masked. Writes

- `<scan>_qspace.h5`, `<scan>_fit.h5`: xsocs' own q-space and fit files;
- `<scan>_maps.h5` (NeXus-style NXdata with axes and units), `<scan>_maps.csv`;
- `<scan>_strain.png`, `<scan>_pitch.png`, `<scan>_roll.png`: the maps with colour bars;
- `<scan>_summary.json`: parameters, reference, statistics, masked counts, timings, versions.

The reference q0 comes from a reflection (`hkl` and cubic `lattice_a`, at the scan's energy)
or, when `reference_region` is given, from the median q of that region of the map.

{OUTPUT_NOTE}"""

KMAP_MAPS_PARAMETERS = """\
input_dataset: str = ""  # dataset: a KMAP scan in the X-SOCS input layout
grid: list = [40, 40, 40]  # q-space bins along qx, qy, qz
method: str = "gaussian"  # peak fit: gaussian or centroid
background: str = "none"  # fit background: none, constant or snip
hkl: list = [0, 0, 4]  # reflection of the reference q0
lattice_a: float = 5.431  # cubic lattice constant of the reference, in Å (Si: 5.431)
reference_region: list = []  # [x_min, x_max, y_min, y_max] in µm: q0 from this region instead
roi: list = []  # [x_min, x_max, y_min, y_max] in µm: convert only this region; empty: all
processes: int = 1  # processes for conversion and fit"""

KMAP_MAPS_SETUP = """\
import dass.data

""" + open_input("a KMAP dataset", "p-2026-002/kmap-sige-island") + """

masters = sorted(name for name in ds.fs.find("") if name.endswith("_master.h5"))
if not masters:
    raise ValueError(f"{ds.id} holds no *_master.h5 file: choose a KMAP scan in the X-SOCS layout")
for bounds, label in ((reference_region, "reference_region"), (roi, "roi")):
    if bounds and len(bounds) != 4:
        raise ValueError(f"{label} must be [x_min, x_max, y_min, y_max] in µm or empty, got {bounds}")
reference = {"region": list(reference_region)} if reference_region else {"hkl": list(hkl), "lattice_a": lattice_a}
print(f"scan: {masters[0]}; reference: {reference}")"""

KMAP_MAPS_RUN = """\
from tqdm.auto import tqdm

from dass.kmap.service import process_scan

bar = tqdm(total=100, desc="KMAP", unit="%")


def progress(fraction, stage):
    bar.n = round(100 * fraction)
    bar.set_postfix_str(stage)
    bar.refresh()


# the master file links one file per entry: read it from the mounted folder, where h5py can
# follow those links
summary = process_scan(
    ds.path / masters[0],
    output_dir,
    grid=tuple(grid),
    roi=tuple(roi) if roi else None,
    method=method,
    background=background,
    reference=reference,
    n_proc=processes,
    progress=progress,
)
bar.close()
for name, stats in summary["statistics"].items():
    print(name, {k: stats.get(k) for k in ("mean", "std", "rms", "count") if k in stats})
print("masked:", summary["masked"])"""

KMAP_MAPS_SHOW = """\
from IPython.display import Image as PngImage, display

for name in ("strain", "pitch", "roll"):
    png = summary["files"].get(f"{name}_png") or next(
        (path for key, path in summary["files"].items() if key.endswith(name) or path.endswith(f"_{name}.png")), None
    )
    if png:
        display(PngImage(filename=str(output_dir / png)))"""

# ---- STM: process a FAST movie

STM_MOVIE_INTRO = f"""\
# FAST STM movie processing

Processes every FAST movie of one dataset with pyfastspm's own steps, in its order: phase
correction (given or automatic), FFT filtering of the time series (scan frequency overtones),
channel choice, creep correction, interpolation of the sinusoidal x grid, drift correction,
row alignment, plane levelling and 2-D filters, as set by the `recipe` (the standard recipe
when empty; see `dass.stm.process.Recipe`). Writes per movie

- an MP4 movie (ffmpeg from `imageio-ffmpeg`; GIF when ffmpeg cannot run);
- PNG and Gwyddion `.gsf` frames (`frames`: `"all"`, `"first"`, `"none"`);
- a metadata JSON with the normalized scan settings (sizes in pixels when uncalibrated);
- with `hdf5`, a processed HDF5 file: the raw `/data` unchanged, the processed frames and the
  recipe beside it;

and `summary.json` over all movies.

{OUTPUT_NOTE}"""

STM_MOVIE_PARAMETERS = """\
input_dataset: str = ""  # dataset: FAST STM movies (HDF5)
recipe: dict = {}  # processing steps (dass.stm.process.Recipe as JSON); empty: the standard recipe
frames: str = "first"  # frames exported as PNG and .gsf: all, first or none
fps: float = 0.0  # playback rate of the movie; 0: real time
hdf5: bool = False  # also write the processed HDF5 file"""

STM_MOVIE_SETUP = """\
import json

import dass.data

""" + open_input("a FAST STM dataset", "p-2026-002/stm-au111-fast") + """
if frames not in ("all", "first", "none"):
    raise ValueError(f"frames must be all, first or none, got {frames!r}")
if fps < 0:
    raise ValueError(f"fps must be 0 (real time) or positive, got {fps}")"""

STM_MOVIE_RUN = """\
from tqdm.auto import tqdm

from dass.stm.service import process_fast_dataset

bar = tqdm(desc="movies", unit="file")


def progress(done, total):
    bar.total = total
    bar.n = done
    bar.refresh()


from dass.stm.process import ProcessingError, Recipe

options = dict(frames=frames, fps=fps or None, hdf5=hdf5, progress=progress)
try:
    summary = process_fast_dataset(ds.path, output_dir, recipe=recipe or None, **options)
except ProcessingError as e:
    if recipe or e.step != "creep":
        raise
    # pyfastspm's creep fit needs a visible up/down shift; without one, the standard recipe
    # goes on without creep correction (and says so; the summary records the recipe used)
    print(f"creep correction is not possible here ({e.problem.split('.')[0]}); "
          "processing with the standard recipe without creep correction")
    summary = process_fast_dataset(ds.path, output_dir, recipe=Recipe.standard().without("creep"), **options)
bar.close()
for entry in summary["files"]:
    print(f"{entry['source']}: {entry['num_frames']} frames of {entry['frame_shape']} -> {entry['movie']}")
for entry in summary["skipped"]:
    print(f"skipped {entry['source']}: {entry['reason']}")"""

STM_MOVIE_SHOW = """\
from IPython.display import Image as PngImage, Video, display

for entry in summary["files"]:
    movie = output_dir / entry["movie"]
    if movie.suffix == ".mp4":
        display(Video(str(movie), embed=True, html_attributes="controls loop"))
    else:
        display(PngImage(filename=str(movie)))
    for frame in entry["frames"][:1]:
        display(PngImage(filename=str(output_dir / frame)))"""


#: stack -> notebook name -> cells as (kind, source); kind "parameters" is a code cell tagged
#: "parameters"
SERVICE_NOTEBOOKS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "sem": {
        "image_summary": [
            ("markdown", SEM_SUMMARY_INTRO),
            ("parameters", SEM_SUMMARY_PARAMETERS),
            ("code", SEM_SUMMARY_SETUP),
            ("code", SEM_SUMMARY_FIND),
            ("code", SEM_SUMMARY_MEASURE),
            ("code", SEM_SUMMARY_SHEET),
            ("markdown", SEM_SUMMARY_NOT_BUILT),
        ],
        "classify_dataset": [
            ("markdown", SEM_CLASSIFY_INTRO),
            ("parameters", SEM_CLASSIFY_PARAMETERS),
            ("code", SEM_CLASSIFY_SETUP),
            ("code", SEM_CLASSIFY_RUN),
            ("code", SEM_CLASSIFY_WRITE),
            ("code", SEM_CLASSIFY_PLOTS),
        ],
        "train_classifier": [
            ("markdown", SEM_TRAIN_INTRO),
            ("parameters", SEM_TRAIN_PARAMETERS),
            ("code", SEM_TRAIN_SETUP),
            ("code", SEM_TRAIN_RUN),
            ("code", SEM_TRAIN_SHOW),
        ],
    },
    "kmap": {
        "scan_overview": [
            ("markdown", KMAP_OVERVIEW_INTRO),
            ("parameters", KMAP_OVERVIEW_PARAMETERS),
            ("code", KMAP_OVERVIEW_SETUP),
            ("code", KMAP_OVERVIEW_ENTRIES),
            ("code", KMAP_OVERVIEW_SUM),
            ("markdown", KMAP_OVERVIEW_NOT_BUILT),
        ],
        "strain_tilt_maps": [
            ("markdown", KMAP_MAPS_INTRO),
            ("parameters", KMAP_MAPS_PARAMETERS),
            ("code", KMAP_MAPS_SETUP),
            ("code", KMAP_MAPS_RUN),
            ("code", KMAP_MAPS_SHOW),
        ],
    },
    "stm": {
        "fast_overview": [
            ("markdown", STM_OVERVIEW_INTRO),
            ("parameters", STM_OVERVIEW_PARAMETERS),
            ("code", STM_OVERVIEW_SETUP),
            ("code", STM_OVERVIEW_READ),
            ("code", STM_OVERVIEW_FRAME),
            ("markdown", STM_OVERVIEW_NOT_BUILT),
        ],
        "fast_movie": [
            ("markdown", STM_MOVIE_INTRO),
            ("parameters", STM_MOVIE_PARAMETERS),
            ("code", STM_MOVIE_SETUP),
            ("code", STM_MOVIE_RUN),
            ("code", STM_MOVIE_SHOW),
        ],
    },
}


def service_notebooks() -> list[tuple[str, str]]:
    """(stack, name) of every service notebook."""
    return [(stack, name) for stack, notebooks in SERVICE_NOTEBOOKS.items() for name in notebooks]


def build_service_notebook(stack: str, name: str) -> nbformat.NotebookNode:
    """The service notebook ``name`` of ``stack``, without outputs, its parameters cell tagged."""
    return _notebook(SERVICE_NOTEBOOKS[stack][name], f"{stack}-{name.replace('_', '-')}")


def service_notebook_path(stack: str, name: str) -> Path:
    return HERE / stack / "service" / f"{name}.ipynb"


def render_service(stack: str, name: str) -> str:
    return nbformat.writes(build_service_notebook(stack, name)) + "\n"

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build notebooks/<stack>/welcome.ipynb.")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a notebook is out of date"
    )
    parser.add_argument(
        "--service",
        action="store_true",
        help="also the service notebooks notebooks/<stack>/service/<name>.ipynb",
    )
    args = parser.parse_args(argv)
    stale = []
    targets = [(notebook_path(stack), lambda stack=stack: render(stack)) for stack in STACKS]
    if args.service:
        targets += [
            (service_notebook_path(stack, name), lambda s=stack, n=name: render_service(s, n))
            for stack, name in service_notebooks()
        ]
    for path, make in targets:
        text = make()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        command = "python notebooks/build.py" + (" --service" if args.service else "")
        for path in stale:
            print(f"out of date: {path} (run {command})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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

STACKS = {
    "sem": {
        "title": "# SEM image classification",
        "intro": (
            "This stack is for scanning electron microscope images: looking at them, and "
            "(once built) sorting them into the categories of the NFFA-Europe SEM dataset "
            "(nanowires, particles, patterned surfaces, MEMS, tips, ...) with a classifier that "
            "reports how certain it is, so that you can confirm or correct the category and "
            "store it with the dataset, where the repository can be searched by it."
        ),
        "first_look": SEM_FIRST_LOOK,
        "not_built": (
            "## Not built yet\n\n"
            "The SEM stack will offer:\n\n"
            "- **classifier inference**: a score for every category for one image or a folder, "
            "with a representative image per category, the microscope's data bar cropped first;\n"
            "- **classifier training** on CPU, from operator-supplied weights and the "
            "NFFA-Europe SEM dataset or your own labelled images;\n"
            "- **confirm and store**: confirm or correct the proposed category and store it in "
            "the dataset's metadata;\n"
            "- instrument metadata (EHT, working distance, pixel size) read from Zeiss and FEI "
            "TIFF tags.\n\n"
            "**None of this is built yet.** This notebook only lists your datasets and shows an "
            "image; nothing here classifies anything."
        ),
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
        "not_built": (
            "## Not built yet\n\n"
            "The KMAP stack will offer, with xsocs:\n\n"
            "- **q-space conversion** of a scan (`xsocs` `QSpaceConverter`), with regions of "
            "interest chosen after the experiment;\n"
            "- **peak fitting** per position (Gaussian or centroid, with background options);\n"
            "- **strain and tilt maps** derived from the fitted q, and 3-D views of reciprocal "
            "space.\n\n"
            "**None of this is built yet.** This notebook only lists your datasets and prints "
            "the structure of a scan file; it computes no q-space, fit, strain or tilt."
        ),
    },
    "stm": {
        "title": "# STM: FAST video-rate movies and STM images",
        "intro": (
            "This stack is for scanning tunnelling microscopy: FAST-module video-rate movies "
            "(HDF5 files with a 1-D data stream and their scan settings as attributes) and, "
            "later, single images from Nanonis and Omicron MATRIX controllers. The stack builds "
            "on `pyfastspm` for FAST movies."
        ),
        "first_look": STM_FIRST_LOOK,
        "not_built": (
            "## Not built yet\n\n"
            "The STM stack will offer:\n\n"
            "- **FAST movie processing** with pyfastspm: phase correction, FFT filtering of "
            "periodic noise, interpolation of the sinusoidal scan, creep and drift correction, "
            "row alignment and plane levelling;\n"
            "- **movie export** (MP4) and Gwyddion `.gsf` frames;\n"
            "- **Nanonis** (`.sxm`, `.dat`) and **Omicron MATRIX** images, with plane fit, row "
            "alignment and FFT filtering.\n\n"
            "**None of this is built yet.** This notebook only lists your datasets and prints "
            "the settings stored in a FAST file; it processes no movie and reads no Nanonis or "
            "MATRIX file."
        ),
    },
}


def build_notebook(stack: str) -> nbformat.NotebookNode:
    """The landing notebook of ``stack`` (``sem``, ``kmap`` or ``stm``), without outputs."""
    spec = STACKS[stack]
    cells = [
        new_markdown_cell(f"{spec['title']}\n\n{spec['intro']}"),
        new_markdown_cell(WHAT_WORKS_NOW),
        new_code_cell(LIST_DATASETS),
        new_code_cell(SHOW_FILES),
        new_code_cell(spec["first_look"]),
        new_markdown_cell(spec["not_built"]),
    ]
    for i, cell in enumerate(cells):
        cell["id"] = f"{stack}-welcome-{i}"  # fixed ids keep the output reproducible
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def notebook_path(stack: str) -> Path:
    return HERE / stack / "welcome.ipynb"


def render(stack: str) -> str:
    return nbformat.writes(build_notebook(stack)) + "\n"


# ---------------------------------------------------------------------------------------------
# Service notebooks: parameterized, run headless as jobs (papermill injects the parameters after
# the cell tagged "parameters"). They read one dataset chosen by the ``input_dataset``
# parameter and write their results to ``$DASS_OUTPUT_DIR`` (default ``output``), the folder
# the job runner keeps. The stacks' science packages do not exist yet, so these notebooks only
# compute generic, honest summaries, and say so.

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

**Classification is not built yet**: this notebook sorts no image into a category; it only
measures and shows them."""

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

ds = dass.data.input_dataset(input_dataset, kind="an SEM dataset", example="p-2026-001/sem-nanowires")
output_dir = dass.data.output_dir()
print(f"{ds.id}: {ds.title}")
if ds.metadata.get("synthetic"):
    print("(synthetic demo data, not a measurement)")"""

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

SEM_SUMMARY_NOT_BUILT = """\
## Not built yet

The SEM stack will classify images into the categories of the NFFA-Europe SEM dataset
(nanowires, particles, patterned surfaces, MEMS, tips, ...) with a score per category, with the
data bar cropped first. **None of this is built yet**: the numbers above are plain pixel
statistics, and nothing here tells what an image shows."""

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

**q-space conversion, peak fitting and strain or tilt maps are not built yet**: nothing here
converts to reciprocal space or fits a peak."""

KMAP_OVERVIEW_PARAMETERS = """\
input_dataset: str = ""  # dataset: a KMAP scan"""

KMAP_OVERVIEW_SETUP = """\
import json

import h5py
import numpy as np
from IPython.display import display
from PIL import Image

import dass.data

ds = dass.data.input_dataset(input_dataset, kind="a KMAP dataset", example="p-2026-002/kmap-sige-island")
output_dir = dass.data.output_dir()
print(f"{ds.id}: {ds.title}")
if ds.metadata.get("synthetic"):
    print("(synthetic demo data, not a measurement)")

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
    "not_built": "q-space conversion, peak fitting, strain and tilt maps",
}
(output_dir / "overview.json").write_text(json.dumps(overview, indent=2) + "\\n", encoding="utf-8")
print(f"wrote {output_dir / 'overview.json'}")
if summed:  # shown enlarged here; the PNG keeps one pixel per detector pixel
    display(image.resize((image.width * 8, image.height * 8), Image.NEAREST))"""

KMAP_OVERVIEW_NOT_BUILT = """\
## Not built yet

The KMAP stack will convert scans to q-space with xsocs (`QSpaceConverter`), fit the Bragg peak
per position, and derive strain and tilt maps. **None of this is built yet**: the image above
is a plain sum of raw detector frames, in detector pixels, not reciprocal space."""

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

**pyfastspm processing is not built yet**: the x motion is sinusoidal and this frame is not
interpolated onto a regular grid, nor phase-, drift- or creep-corrected, filtered or levelled."""

STM_OVERVIEW_PARAMETERS = """\
input_dataset: str = ""  # dataset: a FAST STM movie
frame: int = 0  # the image of the movie to export, counted from 0"""

STM_OVERVIEW_SETUP = """\
import json

import h5py
import numpy as np
from PIL import Image

import dass.data

ds = dass.data.input_dataset(input_dataset, kind="a FAST STM dataset", example="p-2026-002/stm-au111-fast")
output_dir = dass.data.output_dir()
print(f"{ds.id}: {ds.title}")
if ds.metadata.get("synthetic"):
    print("(synthetic demo data, not a measurement)")"""

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
    "not_built": "pyfastspm processing: interpolation, phase, drift and creep correction, filters",
}
(output_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\\n", encoding="utf-8")
print(f"wrote {output_dir / 'metadata.json'} and {output_dir / 'frame.png'}")
image.resize((image.width * 4, image.height * 4), Image.NEAREST)  # enlarged here only"""

STM_OVERVIEW_NOT_BUILT = """\
## Not built yet

The STM stack will process FAST movies with pyfastspm (phase correction, FFT filtering,
interpolation of the sinusoidal scan, creep and drift correction, row alignment, plane
levelling) and export movies and Gwyddion frames. **None of this is built yet**: the image above
is the raw forward up lines of one frame."""

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
    },
}


def service_notebooks() -> list[tuple[str, str]]:
    """(stack, name) of every service notebook."""
    return [(stack, name) for stack, notebooks in SERVICE_NOTEBOOKS.items() for name in notebooks]


def build_service_notebook(stack: str, name: str) -> nbformat.NotebookNode:
    """The service notebook ``name`` of ``stack``, without outputs, its parameters cell tagged."""
    cells = []
    for i, (kind, source) in enumerate(SERVICE_NOTEBOOKS[stack][name]):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"{stack}-{name.replace('_', '-')}-{i}"  # fixed ids: reproducible output
        cells.append(cell)
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


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

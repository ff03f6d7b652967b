"""Build the stacks' landing notebooks: ``notebooks/<stack>/welcome.ipynb``.

The notebooks are generated, not hand-edited: change the text here and run

    python notebooks/build.py           # write the notebooks
    python notebooks/build.py --check   # exit 1 if a committed notebook is out of date

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build notebooks/<stack>/welcome.ipynb.")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a notebook is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for stack in STACKS:
        path = notebook_path(stack)
        text = render(stack)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        for path in stale:
            print(f"out of date: {path} (run python notebooks/build.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

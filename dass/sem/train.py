"""Train an SEM classifier on an ImageFolder-layout dataset at any fsspec URL.

Why one module: one training run, in the order it happens (data, split, weights, epochs,
early stopping, report, registry); each step is a tested function here.

Dataset layout: ``<data_url>/<category id>/<any name>.{png,tif,jpg,...}``, one folder per
NFFA category id (:data:`dass.sem.categories.CATEGORY_IDS`; a subset of at least two is fine).
Files at the top level (README, metadata.json) and hidden files/folders are ignored.

:func:`train` reads every image once (:func:`dass.sem.io.read_sem`, then
:func:`dass.sem.databar.preprocess` -- the same preprocessing as inference),
splits each class into train/validation (stratified, seeded), trains with SEM-suited
augmentation (flips, 90-degree rotations, random crops, contrast jitter) and class
weighting, stops early when validation stops improving, and writes into ``out_dir``:

- ``model.pt`` -- the checkpoint (:mod:`dass.sem.checkpoint`),
- ``report.json`` -- accuracy, per-class precision/recall/F1, confusion matrix, history,
  skipped files, training-data fingerprint,
- ``confusion_matrix.png`` -- the same confusion matrix, annotated with the counts.

Unreadable images are reported (``TrainResult.skipped``) and skipped; an unknown class
folder, an empty class folder or fewer than two classes raise :class:`TrainError`.

Memory: the preprocessed images are kept in memory as float16, about
``2 * n_images * input_size**2`` bytes (about 3.8 GB for the 21,000 NFFA images at 299 px).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dass.sem.categories import CATEGORY_IDS, display_name
from dass.sem.checkpoint import ModelInfo

from ..errors import DassError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

__all__ = [
    "DatasetScan",
    "TrainError",
    "TrainResult",
    "confusion_metrics",
    "fingerprint",
    "plot_confusion_matrix",
    "scan_dataset",
    "stratified_split",
    "train",
]

Progress = Callable[[int, int, str], None]

#: Per-class representative images are stored at most this size (pixels per side).
REPRESENTATIVE_SIZE = 128


class TrainError(DassError, ValueError, status=422):
    """The training data or settings are unusable; the message says what to fix."""


# ----------------------------------------------------------------------------- dataset


@dataclass
class DatasetScan:
    """The files of an ImageFolder dataset.

    Attributes
    ----------
    url : str
        The dataset URL as given.
    classes : list of str
        Category ids found, in :data:`CATEGORY_IDS` order (the model's output order).
    files : list of (str, str)
        ``(relative path, category id)`` for every candidate image, sorted.
    synthetic : bool
        The dataset's ``metadata.json`` says ``"synthetic": true``.
    """

    url: str
    fs: Any
    root: str
    classes: list[str]
    files: list[tuple[str, str]]
    synthetic: bool = False


def _url_to_fs(url: str | os.PathLike, storage_options: dict | None = None) -> tuple[Any, str]:
    import fsspec

    name = os.fspath(url)
    try:
        fs, root = fsspec.core.url_to_fs(name, **(storage_options or {}))
    except (ValueError, ImportError, TypeError) as exc:
        raise TrainError(f"cannot open dataset URL {name}: {exc}") from None
    return fs, root.rstrip("/") or "/"


def scan_dataset(data_url: str | os.PathLike, *, storage_options: dict | None = None) -> DatasetScan:
    """List the class folders and files of an ImageFolder dataset (nothing is decoded).

    Raises
    ------
    TrainError
        The URL is not a folder, a class folder has an unknown name, a class folder is
        empty, or fewer than two classes are present.
    """
    name = os.fspath(data_url)
    fs, root = _url_to_fs(name, storage_options)
    try:
        if not fs.isdir(root):
            raise TrainError(f"dataset {name} is not a folder (or does not exist); give the folder "
                             "that holds one sub-folder per category")
        entries = fs.ls(root, detail=True)
    except TrainError:
        raise
    except OSError as exc:
        raise TrainError(f"cannot list dataset {name}: {exc}") from None
    folders = {}
    for entry in entries:
        base = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "directory" and not base.startswith((".", "_")):
            folders[base] = entry["name"].rstrip("/")
    unknown = sorted(set(folders) - set(CATEGORY_IDS))
    if unknown:
        raise TrainError(
            f"dataset {name}: unknown class folder(s) {', '.join(unknown)}; class folders must be named "
            f"after the category ids: {', '.join(CATEGORY_IDS)}"
        )
    classes = [c for c in CATEGORY_IDS if c in folders]
    if len(classes) < 2:
        raise TrainError(
            f"dataset {name}: found {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            f"training needs at least two of: {', '.join(CATEGORY_IDS)}"
        )
    files: list[tuple[str, str]] = []
    for cid in classes:
        try:
            found = sorted(fs.find(folders[cid]))
        except OSError as exc:
            raise TrainError(f"cannot list {name}/{cid}: {exc}") from None
        found = [p for p in found if not any(part.startswith(".") for part in p[len(folders[cid]):].split("/"))]
        if not found:
            raise TrainError(f"dataset {name}: class folder {cid}/ is empty; add images or remove the folder")
        for path in found:
            files.append((posixpath.relpath(path, root), cid))
    synthetic = False
    meta = posixpath.join(root, "metadata.json")
    try:
        if fs.isfile(meta):
            synthetic = bool(json.loads(fs.cat_file(meta)).get("synthetic"))
    except (OSError, ValueError, AttributeError):
        log.warning("dataset %s: unreadable metadata.json ignored", name)
    return DatasetScan(url=name, fs=fs, root=root, classes=classes, files=files, synthetic=synthetic)


def fingerprint(entries: list[tuple[str, int, str]]) -> str:
    """SHA-256 over sorted ``(relative path, size, content sha256)`` lines: identifies training data.

    Examples
    --------
    >>> fingerprint([("a/1.png", 3, "ab")]) == fingerprint([("a/1.png", 3, "ab")])
    True
    >>> fingerprint([("a/1.png", 3, "ab")]) == fingerprint([("a/1.png", 3, "ac")])
    False
    """
    h = hashlib.sha256()
    for rel, size, digest in sorted(entries):
        h.update(f"{rel}\t{size}\t{digest}\n".encode())
    return "sha256:" + h.hexdigest()


@dataclass
class _Loaded:
    images: np.ndarray  # (N, S, S) float16
    labels: np.ndarray  # (N,) int64
    paths: list[str]
    skipped: list[dict[str, str]]
    fingerprint: str


def _load(scan: DatasetScan, input_size: int, num_workers: int, progress: Progress | None) -> _Loaded:
    from dass.sem.databar import preprocess
    from dass.sem.io import SemReadError, read_sem

    def one(item: tuple[str, str]):
        rel, _ = item
        try:
            data = scan.fs.cat_file(posixpath.join(scan.root, rel))
        except OSError as exc:
            return rel, None, None, f"cannot read: {exc}"
        digest = (len(data), hashlib.sha256(data).hexdigest())
        try:
            image = read_sem(data).image
            return rel, digest, preprocess(image, input_size).astype(np.float16), None
        except (SemReadError, ValueError) as exc:
            return rel, digest, None, str(exc).replace("<bytes>", rel)

    images, labels, paths, skipped, entries = [], [], [], [], []
    index = {c: i for i, c in enumerate(scan.classes)}
    total = len(scan.files)
    with ThreadPoolExecutor(max_workers=max(1, int(num_workers))) as pool:
        for n, ((rel, digest, arr, error), (_, cid)) in enumerate(zip(pool.map(one, scan.files), scan.files), 1):
            if arr is None:
                skipped.append({"file": rel, "reason": error})
                log.warning("training data %s: skipping %s: %s", scan.url, rel, error)
            else:
                images.append(arr)
                labels.append(index[cid])
                paths.append(rel)
                entries.append((rel, digest[0], digest[1]))
            if progress is not None and (n % 16 == 0 or n == total):
                progress(n, total, "reading images")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(scan.classes))
    empty = [c for c, k in zip(scan.classes, counts) if k == 0]
    if empty:
        raise TrainError(
            f"dataset {scan.url}: no readable image in class folder(s) {', '.join(empty)} "
            f"({len(skipped)} file(s) skipped, e.g. {skipped[0]['file']}: {skipped[0]['reason']})"
        )
    return _Loaded(np.stack(images), np.asarray(labels, dtype=np.int64), paths, skipped, fingerprint(entries))


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices per class: ``round(val_fraction * n)`` of each class (at least 1, at most n-1).

    Classes with a single image go to training only.

    Examples
    --------
    >>> tr, va = stratified_split(np.array([0] * 10 + [1] * 5), 0.2, 0)
    >>> len(tr), len(va), np.bincount(np.array([0] * 10 + [1] * 5)[va]).tolist()
    (12, 3, [2, 1])
    """
    if not 0 < val_fraction < 1:
        raise TrainError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))
        val_idx.extend(idx[:n_val])
        train_idx.extend(idx[n_val:])
    return np.sort(np.asarray(train_idx, dtype=np.int64)), np.sort(np.asarray(val_idx, dtype=np.int64))


# ----------------------------------------------------------------------------- metrics


def confusion_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix.

    The matrix has rows = true class, columns = predicted class, in `classes` order.

    Examples
    --------
    >>> m = confusion_metrics(np.array([0, 0, 1]), np.array([0, 1, 1]), ["A", "B"])
    >>> m["confusion_matrix"], round(m["accuracy"], 3), m["per_class"]["B"]["precision"]
    ([[1, 1], [0, 1]], 0.667, 0.5)
    """
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    total = int(cm.sum())
    per_class = {}
    for i, c in enumerate(classes):
        tp, predicted, actual = int(cm[i, i]), int(cm[:, i].sum()), int(cm[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    supported = [v for v in per_class.values() if v["support"]]
    return {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "balanced_accuracy": float(np.mean([v["recall"] for v in supported])) if supported else 0.0,
        "macro_f1": float(np.mean([v["f1"] for v in supported])) if supported else 0.0,
        "n_val": total,
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def plot_confusion_matrix(matrix: list[list[int]] | np.ndarray, classes: list[str], *, title: str = "") -> bytes:
    """PNG bytes of the confusion matrix, every cell annotated with its count.

    Rows are true classes, columns predicted classes; labels are display names.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(matrix, dtype=np.int64)
    names = [display_name(c) if c in CATEGORY_IDS else c for c in classes]
    k = len(classes)
    fig = Figure(figsize=(2.2 + 0.75 * k, 1.8 + 0.65 * k), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, int(cm.max())))
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted category")
    ax.set_ylabel("true category")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > threshold else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ----------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    checkpoint : str
        Path/URL of ``model.pt``.
    info : ModelInfo
    report : dict
        The content of ``report.json``.
    report_path, confusion_png : str
        Paths/URLs of ``report.json`` and ``confusion_matrix.png``.
    skipped : list of dict
        ``{"file", "reason"}`` for each unreadable image.
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``, ``seconds``.
    best_epoch : int
    stopped_early : bool
    """

    checkpoint: str
    info: ModelInfo
    report: dict[str, Any]
    report_path: str
    confusion_png: str
    skipped: list[dict[str, str]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def accuracy(self) -> float:
        return float(self.report["metrics"]["accuracy"])

    def summary(self) -> str:
        """A few lines for people: accuracy, per-class precision/recall, skipped files, outputs."""
        m = self.report["metrics"]
        synthetic = " (SYNTHETIC data)" if self.info.synthetic else ""
        lines = [
            f"{self.info.architecture} trained on {self.info.trained_on['n_train']} images{synthetic} "
            f"({self.info.trained_on['n_val']} more held out for validation), "
            f"best epoch {self.best_epoch}{' (stopped early)' if self.stopped_early else ''}",
            f"validation accuracy {m['accuracy']:.3f} on {m['n_val']} images "
            f"(balanced {m['balanced_accuracy']:.3f}, macro F1 {m['macro_f1']:.3f})",
            f"{'category':<28} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}",
        ]
        for c, v in m["per_class"].items():
            lines.append(f"{c:<28} {v['precision']:>9.3f} {v['recall']:>7.3f} {v['f1']:>6.3f} {v['support']:>5}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable file(s):")
            lines += [f"  {s['file']}: {s['reason']}" for s in self.skipped[:20]]
        lines += [f"checkpoint: {self.checkpoint}", f"report: {self.report_path}",
                  f"confusion matrix: {self.confusion_png}"]
        return "\n".join(lines)


def _augment(x: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
    """SEM-suited augmentation of a batch ``(N, 1, S, S)``: crops, flips, 90-degree turns, contrast."""
    import torch
    import torch.nn.functional as F

    n, _, s, _ = x.shape
    out = torch.empty_like(x)
    r = torch.rand(n, 6, generator=gen)
    for i in range(n):
        img = x[i : i + 1]
        scale = 0.8 + 0.2 * float(r[i, 0])  # crop side as a fraction of the image side
        side = max(8, int(round(s * scale)))
        if side < s:
            top = int(float(r[i, 1]) * (s - side))
            left = int(float(r[i, 2]) * (s - side))
            img = F.interpolate(img[..., top : top + side, left : left + side], size=(s, s), mode="bilinear",
                                align_corners=False)
        k = int(float(r[i, 3]) * 4) % 4
        if k:
            img = torch.rot90(img, k, dims=(2, 3))
        if float(r[i, 4]) < 0.5:
            img = torch.flip(img, dims=(3,))
        # contrast jitter of +-10 % around the mean
        c = 0.9 + 0.2 * float(r[i, 5])
        m = img.mean()
        img = ((img - m) * c + m).clamp_(0, 1)
        out[i] = img[0]
    return out


def _representatives(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, bytes]:
    """One PNG per class: the training image the model finds most typical of its class."""
    from PIL import Image

    reps = {}
    for ci, cid in enumerate(classes):
        idx = np.flatnonzero(labels == ci)
        if not len(idx):
            continue
        best = idx[int(np.argmax(probs[idx, ci]))]
        arr = np.clip(np.rint(images[best].astype(np.float32) * 255), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        if img.width > REPRESENTATIVE_SIZE:
            img = img.resize((REPRESENTATIVE_SIZE, REPRESENTATIVE_SIZE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        reps[cid] = buf.getvalue()
    return reps


def _write(out_dir: str, name: str, data: bytes) -> str:
    import fsspec

    url = posixpath.join(out_dir, name) if "://" in out_dir else os.path.join(out_dir, name)
    fs, path = fsspec.core.url_to_fs(url)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
    return url


def _predict(model, images: np.ndarray, device: str, batch_size: int, weight=None):
    """(probabilities, mean loss) on preprocessed images without augmentation."""
    import torch

    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start : start + batch_size].astype(np.float32)).unsqueeze(1).to(device)
            outs.append(model(x).float().cpu())
    logits = torch.cat(outs) if outs else torch.zeros((0, 1))
    return torch.softmax(logits, 1).numpy(), logits


def train(
    data_url: str | os.PathLike,
    *,
    architecture: str = "resnet18",
    epochs: int = 20,
    batch_size: int = 32,
    input_size: int | None = None,
    lr: float = 1e-3,
    val_fraction: float = 0.2,
    weights: str | os.PathLike | None = None,
    pretrained: bool = False,
    seed: int = 0,
    patience: int = 5,
    balance: str = "weighted",
    augment: bool = True,
    device: str = "auto",
    num_workers: int = 0,
    out_dir: str | os.PathLike,
    name: str | None = None,
    notes: str = "",
    synthetic: bool | None = None,
    source_url: str | None = None,
    storage_options: dict | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train an SEM classifier and write checkpoint, report and confusion matrix.

    Parameters
    ----------
    data_url : str or os.PathLike
        ImageFolder dataset: local folder or fsspec URL (``memory://``, ``s3://``, ...).
    architecture : str
        A key of :data:`dass.sem.models.ARCHITECTURES`.
    epochs : int
        Most epochs to train.
    batch_size : int
    input_size : int, optional
        Square input side; default :func:`~dass.sem.models.default_input_size`.
    lr : float
        AdamW learning rate (cosine-annealed to 5 % of it over `epochs`).
    val_fraction : float
        Share of each class held out for validation.
    weights : str or os.PathLike, optional
        Operator-supplied backbone weights (state dict file or URL) for transfer learning.
    pretrained : bool
        Use torchvision's ImageNet weights from the local torch cache (never downloaded).
    seed : int
        Seeds the split, the initialization, the batches and the augmentation.
    patience : int
        Stop after this many epochs without a better validation result (0: never stop early).
    balance : {"weighted", "none"}
        ``"weighted"``: class-weighted loss (weights ``n / (k * n_c)``) against class imbalance.
    augment : bool
        Random crops (80-100 % of the side), 90-degree rotations, flips, contrast jitter (+-10 %).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    num_workers : int
        Threads that read and preprocess the images (0: in this thread).
    out_dir : str or os.PathLike
        Folder (local or fsspec URL) for ``model.pt``, ``report.json``, ``confusion_matrix.png``.
    name : str, optional
        Model name (default ``<architecture>-<first 8 hex digits of the fingerprint>``).
    notes : str
        Free text stored in the model info.
    synthetic : bool, optional
        Mark the training data as synthetic; default: the dataset's ``metadata.json`` says so.
    source_url : str, optional
        What to record as the training data's ``url`` (default `data_url`), e.g. where a
        temporary copy came from.
    storage_options : dict, optional
        fsspec options for `data_url`.
    progress : callable, optional
        ``progress(done, total, message)``; message ``"reading images"`` while loading,
        ``"training: epoch e/E ..."`` per batch, ``"epoch e/E done: ..."`` after each epoch
        (losses, validation accuracy, seconds).

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainError
        Bad settings or dataset (see :func:`scan_dataset`); ``ModelError`` for unusable
        weights or device.

    Examples
    --------
    >>> result = train("/data/sem", architecture="resnet18", epochs=10, out_dir="/tmp/run")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """
    import torch

    from dass.sem.checkpoint import save_checkpoint
    from dass.sem.models import (build_model, default_input_size, min_input_size, pretrained_weights_path,
                                 read_weights, resolve_device)

    started = time.monotonic()
    input_size = default_input_size(architecture) if input_size is None else input_size
    for label, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("input_size", input_size, 1),
                              ("patience", patience, 0), ("num_workers", num_workers, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise TrainError(f"{label} must be an integer >= {low}, got {value!r}")
    if input_size < min_input_size(architecture):
        raise TrainError(f"input_size {input_size} is too small for {architecture}; "
                         f"use at least {min_input_size(architecture)}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise TrainError(f"lr must be a positive number, got {lr!r}")
    if balance not in ("weighted", "none"):
        raise TrainError(f"balance must be 'weighted' or 'none', got {balance!r}")
    if not 0 < val_fraction < 1:
        raise TrainError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if out_dir is None:
        raise TrainError("out_dir is required: the folder for model.pt, report.json and confusion_matrix.png")
    out_dir = os.fspath(out_dir)
    dev = resolve_device(device)

    scan = scan_dataset(data_url, storage_options=storage_options)
    classes = scan.classes
    # The weights are read and checked against the architecture before any image is read: a
    # bad weights file must not cost a pass over the whole dataset.
    weights_file, weights_sha256, state = None, None, None
    if weights is not None:
        weights_file = os.fspath(weights)
        state, weights_sha256 = read_weights(weights)
    elif pretrained:
        weights_file = pretrained_weights_path(architecture)
        state, weights_sha256 = read_weights(weights_file)
    torch.manual_seed(seed)
    model = build_model(architecture, len(classes), weights=state).to(dev)
    if weights_file is not None:
        log.info("training %s from weights %s (%s)", architecture, weights_file, weights_sha256)

    data = _load(scan, input_size, num_workers, progress)
    train_idx, val_idx = stratified_split(data.labels, val_fraction, seed)
    if not len(val_idx):
        raise TrainError(f"dataset {scan.url}: too few images for a validation set; add images per class")
    counts = np.bincount(data.labels, minlength=len(classes))
    train_counts = np.bincount(data.labels[train_idx], minlength=len(classes))
    val_counts = np.bincount(data.labels[val_idx], minlength=len(classes))
    # torchvision's MobileNet/EfficientNet use a BatchNorm momentum of 0.01 (made for long
    # ImageNet runs); with few steps the running statistics would lag far behind the weights.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.momentum is not None:
            module.momentum = max(module.momentum, 0.1)
    if balance == "weighted":
        w = len(train_idx) / (len(classes) * np.maximum(train_counts, 1))
        class_weight = torch.tensor(w, dtype=torch.float32, device=dev)
    else:
        class_weight = None
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight)
    eval_loss = torch.nn.CrossEntropyLoss(weight=class_weight.cpu() if class_weight is not None else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr * 0.05)
    gen = torch.Generator().manual_seed(seed)
    train_x = torch.from_numpy(data.images[train_idx].astype(np.float32)).unsqueeze(1)
    train_y = torch.from_numpy(data.labels[train_idx])
    val_x, val_y = data.images[val_idx], data.labels[val_idx]
    n_batches = math.ceil(len(train_idx) / batch_size)
    drop_single = len(train_idx) % batch_size == 1  # BatchNorm cannot train on a batch of one
    total_steps, step = epochs * n_batches, 0

    history: list[dict[str, float]] = []
    best_key, best_state, best_epoch, stale, stopped_early = None, None, 0, 0, False
    for epoch in range(1, epochs + 1):
        t0 = time.monotonic()
        model.train()
        order = torch.randperm(len(train_idx), generator=gen)
        running, seen = 0.0, 0
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            step += 1
            if len(idx) == 1 and drop_single:
                continue
            x = train_x[idx]
            if augment:
                x = _augment(x, gen)
            x, y = x.to(dev), train_y[idx].to(dev)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            if progress is not None:
                progress(step, total_steps, f"training: epoch {epoch}/{epochs} loss {running / seen:.3f}")
        scheduler.step()
        probs, logits = _predict(model, val_x, dev, max(batch_size, 64))
        val_loss = float(eval_loss(logits, torch.from_numpy(val_y)))
        val_acc = float((probs.argmax(1) == val_y).mean())
        history.append({"epoch": epoch, "train_loss": running / max(seen, 1), "val_loss": val_loss,
                        "val_accuracy": val_acc, "seconds": time.monotonic() - t0})
        log.info("training %s epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.3f",
                 architecture, epoch, epochs, history[-1]["train_loss"], val_loss, val_acc)
        if progress is not None:
            progress(step, total_steps, f"epoch {epoch}/{epochs} done: train loss {history[-1]['train_loss']:.3f}, "
                                        f"val accuracy {val_acc:.3f}, {history[-1]['seconds']:.0f} s")
        key = (val_acc, -val_loss)
        if best_key is None or key > best_key:
            best_key, best_epoch, stale = key, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if patience and stale >= patience:
                stopped_early = epoch < epochs
                log.info("training %s: early stop after epoch %d (best epoch %d)", architecture, epoch, best_epoch)
                break
    if progress is not None:
        progress(total_steps, total_steps, "training: done")
    model.load_state_dict(best_state)
    model.eval()

    probs, _ = _predict(model, val_x, dev, max(batch_size, 64))
    metrics = confusion_metrics(val_y, probs.argmax(1), classes)
    train_probs, _ = _predict(model, data.images[train_idx], dev, max(batch_size, 64))
    reps = _representatives(data.images[train_idx], data.labels[train_idx], train_probs, classes)

    is_synthetic = scan.synthetic if synthetic is None else bool(synthetic)
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "val_fraction": val_fraction,
                "seed": seed, "patience": patience, "balance": balance, "augment": augment,
                "weights": weights_file, "weights_sha256": weights_sha256, "pretrained": bool(pretrained),
                "device": dev, "best_epoch": best_epoch, "epochs_run": len(history),
                "stopped_early": stopped_early}
    info = ModelInfo(
        name=name or f"{architecture}-{data.fingerprint.split(':')[-1][:8]}",
        architecture=architecture,
        classes=list(classes),
        input_size=input_size,
        mean=float(model.mean),
        std=float(model.std),
        trained_on={
            "url": source_url or scan.url,
            "fingerprint": data.fingerprint,
            "n_images": int(len(data.labels)),
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "per_class": {c: int(k) for c, k in zip(classes, counts)},
            "per_class_train": {c: int(k) for c, k in zip(classes, train_counts)},
            "per_class_val": {c: int(k) for c, k in zip(classes, val_counts)},
            "skipped": len(data.skipped),
            "synthetic": is_synthetic,
        },
        metrics=metrics,
        notes=notes or ("Trained on SYNTHETIC images (dass.sem.synthetic); for demos and tests only, "
                        "not for real SEM data." if is_synthetic else ""),
        training=settings,
    )
    title = f"{info.name}: accuracy {metrics['accuracy']:.3f} on {metrics['n_val']} validation images"
    if is_synthetic:
        title = "SYNTHETIC data - " + title
    png = plot_confusion_matrix(metrics["confusion_matrix"], classes, title=title)
    confusion_png = _write(out_dir, "confusion_matrix.png", png)
    checkpoint = save_checkpoint(
        posixpath.join(out_dir, "model.pt") if "://" in out_dir else os.path.join(out_dir, "model.pt"),
        model, info, representatives=reps)
    report = {
        "model": info.to_json(),
        "metrics": metrics,
        "history": history,
        "weights": {"file": weights_file, "sha256": weights_sha256, "pretrained": bool(pretrained)},
        "split": {"train": {c: int(k) for c, k in zip(classes, train_counts)},
                  "validation": {c: int(k) for c, k in zip(classes, val_counts)}},
        "skipped": data.skipped,
        "checkpoint": checkpoint,
        "confusion_matrix_png": confusion_png,
        "seconds": time.monotonic() - started,
    }
    report_path = _write(out_dir, "report.json", (json.dumps(report, indent=2) + "\n").encode())
    log.info("trained %s on %s: accuracy %.3f, checkpoint %s", info.name, scan.url, metrics["accuracy"], checkpoint)
    return TrainResult(checkpoint=checkpoint, info=info, report=report, report_path=report_path,
                       confusion_png=confusion_png, skipped=data.skipped, history=history,
                       best_epoch=best_epoch, stopped_early=stopped_early)

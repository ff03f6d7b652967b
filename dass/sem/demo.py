"""The demo SEM classifier: trained on SYNTHETIC images, once per machine.

:func:`ensure_demo_model` gives a repository a default SEM model when it has none: it
trains a small network on :mod:`dass.sem.synthetic` images (labelled synthetic in the
model's info, card and name) and registers it as the default. The trained checkpoint
is cached under ``cache_dir`` (default ``$XDG_CACHE_HOME/dass``, else ``~/.cache/dass``)
in a file named after a hash of the generator's source and the training settings, so a
machine trains it once; later calls (every ``dass up``, every test platform) copy it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["DEMO_MODEL_NAME", "DEMO_SETTINGS", "HELD_OUT_SEED", "demo_cache_path", "describe_training",
           "ensure_demo_model", "evaluate_held_out", "train_demo_model"]

#: Registry name of the demo model.
DEMO_MODEL_NAME = "demo-synthetic"

#: Synthetic data and training settings of the demo model (part of the cache key).
DEMO_SETTINGS: dict[str, Any] = {
    "data": {"per_class": 40, "size": [96, 128], "seed": 7},
    "train": {"architecture": "resnet18", "epochs": 14, "batch_size": 16, "input_size": 64, "lr": 3e-3,
              "val_fraction": 0.25, "seed": 0, "patience": 0, "balance": "weighted", "augment": True},
}

Progress = Callable[[int, int, str], None]

#: Seed of the held-out images :func:`evaluate_held_out` draws (never used in training: training
#: image ``i`` of a class uses seed ``settings["data"]["seed"] * 100003 + i``).
HELD_OUT_SEED = 999_983

#: Bump when the demo model changes in a way the settings do not show (part of the cache key).
CACHE_FORMAT = "2"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dass``, else ``~/.cache/dass``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dass"


def cache_key(settings: dict[str, Any] | None = None) -> str:
    """Hash of the generator's source code, the torch/torchvision versions and the settings."""
    import torch
    import torchvision

    from dass.sem import synthetic

    h = hashlib.sha256()
    h.update(Path(synthetic.__file__).read_bytes())
    h.update(json.dumps(settings or DEMO_SETTINGS, sort_keys=True).encode())
    h.update(CACHE_FORMAT.encode())
    h.update(f"torch {torch.__version__.split('+')[0]} torchvision {torchvision.__version__.split('+')[0]}".encode())
    return h.hexdigest()[:16]


def demo_cache_path(cache_dir: str | os.PathLike | None = None, settings: dict[str, Any] | None = None) -> Path:
    """Where the demo checkpoint for these settings is cached."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"sem-demo-model-{cache_key(settings)}.pt"


#: seconds between two "still waiting" messages while another process trains the demo model
WAIT_REPORT_SECONDS = 15.0


@contextlib.contextmanager
def _locked(path: Path, *, on_wait: Callable[[float], None] | None = None):
    """An exclusive lock next to `path`, so parallel processes train only once.

    While another process holds it (training the demo model), ``on_wait(seconds waited)`` is
    called at once and then every :data:`WAIT_REPORT_SECONDS`, so a waiting start says why.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, at worst two trainings
            yield
            return
        started = time.monotonic()
        reported = None
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if on_wait is not None and (reported is None or waited - reported >= WAIT_REPORT_SECONDS):
                    reported = waited
                    on_wait(waited)
                time.sleep(0.5)  # poll the lock: a blocking flock could not report progress
        yield


def train_demo_model(out_dir: str | os.PathLike, *, settings: dict[str, Any] | None = None,
                     progress: Progress | None = None):
    """Write the SYNTHETIC dataset into a temporary folder and train the demo model into `out_dir`.

    Returns
    -------
    dass.sem.train.TrainResult
    """
    import fsspec

    from dass.sem.synthetic import write_dataset
    from dass.sem.train import train

    settings = settings or DEMO_SETTINGS
    data = settings["data"]
    with tempfile.TemporaryDirectory(prefix="dass-sem-demo-") as tmp:
        root = os.path.join(tmp, "synthetic-sem")
        write_dataset(fsspec.filesystem("file"), root, per_class=data["per_class"], size=tuple(data["size"]),
                      seed=data["seed"])
        source = (f"dass.sem.synthetic (SYNTHETIC: {data['per_class']} images per category, "
                  f"{data['size'][0]}x{data['size'][1]} px, seed {data['seed']})")
        return train(root, out_dir=out_dir, name=DEMO_MODEL_NAME, synthetic=True, progress=progress,
                     source_url=source,
                     notes="Demo model trained at the first start of the platform on " + describe_training(settings)
                           + " It only knows the synthetic look-alikes of the ten NFFA categories: do not use it "
                             "to label real SEM images.",
                     **settings["train"])


def cached_demo_checkpoint(*, cache_dir: str | os.PathLike | None = None, settings: dict[str, Any] | None = None,
                           progress: Progress | None = None) -> Path:
    """Path of the cached demo checkpoint, training it first when it is not cached yet."""
    from dass.sem.checkpoint import CheckpointError, read_checkpoint_info

    path = demo_cache_path(cache_dir, settings)

    def waiting(seconds: float) -> None:
        message = (f"waiting for another dass process that is training the demo model "
                   f"({seconds:.0f} s so far; lock {path.with_suffix('.lock')})")
        log.info("%s", message)
        if progress is not None:
            progress(0, 1, message)

    with _locked(path, on_wait=waiting):
        if path.exists():
            try:
                read_checkpoint_info(path)
                return path
            except CheckpointError as exc:
                log.warning("demo SEM model cache %s is unusable (%s); training again", path, exc)
        log.info("training the demo SEM model on SYNTHETIC images (once per machine; cached in %s)", path)
        with tempfile.TemporaryDirectory(prefix="dass-sem-demo-run-") as run:
            result = train_demo_model(run, settings=settings, progress=progress)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(Path(result.checkpoint).read_bytes())
            os.replace(tmp, path)
        log.info("demo SEM model: validation accuracy %.3f on SYNTHETIC images, cached in %s", result.accuracy, path)
    return path


def ensure_demo_model(storage: Any, *, cache_dir: str | os.PathLike | None = None,
                      progress: Progress | None = None, settings: dict[str, Any] | None = None) -> str:
    """Make sure the repository has a default SEM model; register the demo model if not.

    Parameters
    ----------
    storage : dass.data.storage.Storage
        The repository storage (or anything with ``fs`` and ``root``).
    cache_dir : str or os.PathLike, optional
        Cache of the trained demo checkpoint (default ``$XDG_CACHE_HOME/dass`` or ``~/.cache/dass``).
    progress : callable, optional
        ``progress(done, total, message)`` while the demo model trains (first time only).
    settings : dict, optional
        Data and training settings (default :data:`DEMO_SETTINGS`); part of the cache key.

    Returns
    -------
    str
        The name of the default model (the existing one, or :data:`DEMO_MODEL_NAME`).
    """
    from dass.sem.registry import ModelRegistry

    registry = ModelRegistry(storage)
    existing = registry.default_name()
    if existing:
        return existing
    if any(m["name"] == DEMO_MODEL_NAME for m in registry.list()):
        registry.set_default(DEMO_MODEL_NAME)
        return DEMO_MODEL_NAME
    path = cached_demo_checkpoint(cache_dir=cache_dir, settings=settings, progress=progress)
    registry.register(path, DEMO_MODEL_NAME, default=True)
    log.info("registered the demo SEM model %s (SYNTHETIC training data) as the default", DEMO_MODEL_NAME)
    return DEMO_MODEL_NAME


def describe_training(settings: dict[str, Any] | None = None) -> str:
    """One plain sentence: what the demo model was trained on (for pages, cards and logs).

    Examples
    --------
    >>> describe_training().startswith("SYNTHETIC images from dass.sem.synthetic")
    True
    """
    settings = settings or DEMO_SETTINGS
    d, t = settings["data"], settings["train"]
    n = d["per_class"] * 10
    n_val = round(t["val_fraction"] * d["per_class"]) * 10
    return (f"SYNTHETIC images from dass.sem.synthetic, a procedural look-alike generator of the ten NFFA "
            f"categories: {n} images ({d['per_class']} per category, {d['size'][0]}x{d['size'][1]} px, "
            f"{n - n_val} for training, {n_val} held out), no real micrograph. Its suggestions for real SEM "
            f"images mean nothing.")


def evaluate_held_out(classifier: Any, *, per_class: int = 20, size: tuple[int, int] | None = None,
                      upscale: int = 1, seed: int = HELD_OUT_SEED) -> dict[str, Any]:
    """Per-class recall of a classifier on fresh SYNTHETIC images no training run has seen.

    Parameters
    ----------
    classifier : dass.sem.classify.Classifier
    per_class : int
        Images per category (default 20).
    size : (int, int), optional
        Image size drawn (default: the demo's training size).
    upscale : int
        Enlarge each image this many times with nearest-neighbour sampling, as the demo
        repository does (``dass.demo``); 1: as drawn.
    seed : int
        Seed family of the images (default :data:`HELD_OUT_SEED`).

    Returns
    -------
    dict
        ``accuracy``, ``per_class`` ``{category: recall}``, ``confusion`` ``{category:
        {predicted: count}}``, ``n``.
    """
    import numpy as np
    from PIL import Image

    from dass.sem.categories import CATEGORY_IDS
    from dass.sem.synthetic import generate

    size = tuple(size or DEMO_SETTINGS["data"]["size"])
    images, truth = [], []
    for cid in classifier.info.classes:
        if cid not in CATEGORY_IDS:
            continue
        for i in range(per_class):
            img = generate(cid, size=size, seed=seed * 100003 + i)
            if upscale > 1:
                img = np.asarray(Image.fromarray(img).resize((size[1] * upscale, size[0] * upscale),
                                                             Image.Resampling.NEAREST))
            images.append(img)
            truth.append(cid)
    predictions = classifier.classify(images)
    confusion: dict[str, dict[str, int]] = {c: {} for c in dict.fromkeys(truth)}
    for t, p in zip(truth, predictions):
        confusion[t][p.category] = confusion[t].get(p.category, 0) + 1
    recall = {c: row.get(c, 0) / max(1, sum(row.values())) for c, row in confusion.items()}
    correct = sum(row.get(c, 0) for c, row in confusion.items())
    return {"accuracy": correct / max(1, len(truth)), "per_class": recall, "confusion": confusion, "n": len(truth)}

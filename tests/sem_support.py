"""Helpers of the SEM tests: SYNTHETIC SEM-like images and a small untrained checkpoint.

The checkpoint is a real, seeded ``mobilenet_v3_small`` that was never trained: fine for the
tests that check the plumbing (service, widget, notebooks) by comparing with
:meth:`dass.sem.classify.Classifier.classify` run directly; the accuracy of training is tested in
``tests/sem/test_train.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

MODEL = "untrained-test"


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def sem_png(category: str, seed: int, size=(96, 128)) -> bytes:
    """A SYNTHETIC SEM-like PNG."""
    from dass.sem.synthetic import generate

    return png(generate(category, size=size, seed=seed))


def write_untrained_checkpoint(path: Path, name: str = MODEL) -> Path:
    """A seeded, untrained mobilenet_v3_small checkpoint (64 px input, SYNTHETIC) at ``path``."""
    import torch

    from dass.sem.categories import CATEGORY_IDS
    from dass.sem.checkpoint import ModelInfo, save_checkpoint
    from dass.sem.models import build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", len(CATEGORY_IDS)).eval()
    info = ModelInfo(
        name=name,
        architecture="mobilenet_v3_small",
        classes=list(CATEGORY_IDS),
        input_size=64,
        trained_on={"url": "synthetic://untrained", "fingerprint": "none", "n_images": 0,
                    "per_class": {}, "synthetic": True},
        notes="SYNTHETIC: untrained test model",
    )
    reps = {c: sem_png(c, 1, size=(64, 64)) for c in CATEGORY_IDS}
    save_checkpoint(str(path), model, info, representatives=reps)
    return path


def add_sem_dataset(urls: dict[str, str], dataset_id: str, title: str, files: dict[str, bytes],
                    **metadata) -> None:
    """Write an SEM dataset (``files`` and its ``dataset.json``) into the service tests'
    repository (``urls`` from ``make_repository``) and re-scan the catalogue."""
    import json

    from dass.data.catalog import Catalog
    from dass.data.storage import Storage
    from tests.service.service_support import dataset_json

    folder = Path(urls["repo_url"][len("file://"):]) / dataset_id
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(dataset_json(title, technique="SEM", stacks=["sem"], **metadata)))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    catalog = Catalog(db_url=urls["db_url"])
    try:
        assert not catalog.scan(Storage(url=urls["repo_url"])).errors
    finally:
        catalog.dispose()

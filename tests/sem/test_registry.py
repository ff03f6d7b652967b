"""dass.sem.registry: list, register, default, load, model cards; the catalogue skips models/."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fsspec  # noqa: E402

from dass.data.catalog import Catalog  # noqa: E402
from dass.data.storage import Storage  # noqa: E402
from dass.sem.categories import CATEGORY_IDS  # noqa: E402
from dass.sem.checkpoint import ModelInfo, read_checkpoint_info, save_checkpoint  # noqa: E402
from dass.sem.classify import Classifier  # noqa: E402
from dass.sem.models import build_model  # noqa: E402
from dass.sem.registry import ModelRegistry, RegistryError, model_card  # noqa: E402
from dass.sem.synthetic import generate  # noqa: E402

torch.set_num_threads(2)


def _checkpoint(path, name: str, seed: int, *, synthetic: bool) -> str:
    torch.manual_seed(seed)
    model = build_model("mobilenet_v3_small", 10)
    cm = np.diag([3] * 10).tolist()
    cm[0][1], cm[0][0] = 1, 2
    info = ModelInfo(
        name=name, architecture="mobilenet_v3_small", classes=list(CATEGORY_IDS), input_size=40,
        mean=0.5, std=0.25,
        trained_on={"url": "file:///data/sem-train", "fingerprint": f"sha256:{seed:064x}", "n_images": 40,
                    "n_train": 30, "n_val": 10, "per_class": {c: 4 for c in CATEGORY_IDS}, "synthetic": synthetic},
        metrics={"accuracy": 29 / 30, "balanced_accuracy": 0.9667, "n_val": 30, "confusion_matrix": cm,
                 "per_class": {c: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3} for c in CATEGORY_IDS}},
        training={"epochs": 3, "lr": 0.001},
    )
    return save_checkpoint(path, model, info)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    return {
        "a": _checkpoint(d / "a.pt", "model-a", 1, synthetic=True),
        "b": _checkpoint(d / "b.pt", "model-b", 2, synthetic=False),
    }


@pytest.fixture(params=["memory", "file"])
def storage(request, tmp_path):
    if request.param == "memory":
        return Storage(url=f"memory://sem-registry-{uuid.uuid4().hex}")
    return Storage(url=f"file://{tmp_path}/repo")


def test_register_list_default_load(storage, checkpoints):
    reg = ModelRegistry(storage)
    assert reg.list() == [] and reg.default_name() is None
    with pytest.raises(RegistryError, match="no default SEM model.*dass sem train"):
        reg.load()

    entry = reg.register(checkpoints["a"])  # the first model becomes the default
    assert entry["name"] == "model-a" and entry["default"] is True
    assert entry["synthetic"] is True and entry["metrics"]["accuracy"] == pytest.approx(29 / 30)
    entry = reg.register(checkpoints["b"], "nffa-b")
    assert entry["default"] is False
    assert [(m["name"], m["default"]) for m in reg.list()] == [("model-a", True), ("nffa-b", False)]
    assert reg.default_name() == "model-a"

    reg.set_default("nffa-b")
    assert reg.default_name() == "nffa-b"
    assert [m["name"] for m in reg.list() if m["default"]] == ["nffa-b"]
    state = json.loads(storage.fs.cat_file(f"{storage.root}/models/registry.json"))
    assert state["default"] == "nffa-b"

    # the copy is renamed but otherwise the same model: identical outputs
    clf = reg.load(device="cpu")
    assert isinstance(clf, Classifier) and clf.info.name == "nffa-b"
    direct = Classifier.load(checkpoints["b"], device="cpu")
    img = generate("Fibres", size=(64, 64), seed=2)
    assert clf.classify([img])[0].scores == direct.classify([img])[0].scores
    assert read_checkpoint_info(reg.checkpoint_bytes("nffa-b")).name == "nffa-b"
    assert reg.load("model-a").info.synthetic is True

    # files in storage
    for f in ("model.pt", "model.json", "README.md"):
        assert storage.fs.exists(f"{storage.root}/models/nffa-b/{f}")


def test_registry_errors(storage, checkpoints, tmp_path):
    reg = ModelRegistry(storage)
    reg.register(checkpoints["a"], "m1")
    with pytest.raises(RegistryError, match="'m1' is registered already"):
        reg.register(checkpoints["b"], "m1")
    reg.register(checkpoints["b"], "m1", overwrite=True)
    assert reg.info("m1").trained_on["synthetic"] is False
    with pytest.raises(RegistryError, match="invalid model name '../x'"):
        reg.register(checkpoints["a"], "../x")
    with pytest.raises(RegistryError, match="cannot make 'nope' the default: no such model.*registered: m1"):
        reg.set_default("nope")
    with pytest.raises(RegistryError, match="no model named 'nope'"):
        reg.load("nope")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(RegistryError, match="cannot register: .*junk.pt: not a readable checkpoint"):
        reg.register(junk, "junk")
    # a damaged registered checkpoint: load names the registry file
    storage.fs.pipe_file(f"{storage.root}/models/m1/model.pt", b"PK\x03\x04 damaged")
    with pytest.raises(RegistryError, match="model 'm1': .*models/m1/model.pt: not a readable checkpoint"):
        reg.load("m1")


def test_model_card(checkpoints):
    info = read_checkpoint_info(checkpoints["a"])
    card = model_card(info)
    assert card.startswith("# SEM classifier `model-a`")
    assert "**Trained on SYNTHETIC data.**" in card
    assert "`mobilenet_v3_small`" in card and "40x40 px" in card
    assert "sha256:" + f"{1:064x}" in card
    assert "| Validation accuracy | 0.967 on 30 images" in card
    assert "| 4 | `Nanowires` | Nanowires | 4 | 1.000 | 1.000 | 1.000 |" in card
    assert "MEMS devices and electrodes" in card
    # the confusion matrix rows as numbers
    rows = card.split("## Confusion matrix")[1].split("```")[1].strip().splitlines()[1:]
    assert [int(v) for v in rows[0].split()[1:]] == info.metrics["confusion_matrix"][0]
    real = model_card(read_checkpoint_info(checkpoints["b"]))
    assert "SYNTHETIC" not in real and "file:///data/sem-train" in real


def test_catalogue_scan_skips_the_models_folder(tmp_path, checkpoints):
    from dass.demo import dataset_ids, seed

    storage = Storage(url=f"file://{tmp_path}/repo")
    seed(fsspec.filesystem("file"), storage.root)
    ModelRegistry(storage).register(checkpoints["a"])
    catalog = Catalog(db_url=f"sqlite:///{tmp_path}/catalog.sqlite")
    catalog.upgrade()
    report = catalog.scan(storage)
    assert report.errors == []
    assert report.indexed == len(dataset_ids())  # the demo datasets, not the model
    assert "models" not in {p["id"] for p in catalog.proposals()}


def test_from_fs(checkpoints):
    fs = fsspec.filesystem("memory")
    root = f"/sem-registry-{uuid.uuid4().hex}"
    reg = ModelRegistry.from_fs(fs, root)
    reg.register(checkpoints["a"], "x", default=True)
    assert fs.exists(f"{root}/models/x/README.md") and reg.default_name() == "x"

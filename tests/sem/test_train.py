"""dass.sem.train on the SYNTHETIC dataset: accuracy, report, confusion matrix, bad data; demo model cache."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fsspec  # noqa: E402
from PIL import Image  # noqa: E402

from dass.data.storage import Storage  # noqa: E402
from dass.sem.categories import CATEGORY_IDS  # noqa: E402
from dass.sem.checkpoint import load_checkpoint  # noqa: E402
from dass.sem.classify import Classifier  # noqa: E402
from dass.sem.demo import DEMO_MODEL_NAME, demo_cache_path, ensure_demo_model  # noqa: E402
from dass.sem.models import IMAGENET_GRAY_MEAN  # noqa: E402
from dass.sem.registry import ModelRegistry  # noqa: E402
from dass.sem.synthetic import write_dataset  # noqa: E402
from dass.sem.train import TrainError, confusion_metrics, fingerprint, stratified_split, train  # noqa: E402

torch.set_num_threads(2)

#: The settings of the accuracy test: small enough for a CPU test, large enough for >= 90 %.
QUALITY = {"per_class": 40, "size": (96, 128), "architecture": "resnet18", "input_size": 64, "epochs": 14,
           "batch_size": 16, "lr": 3e-3}
TINY = {"architecture": "mobilenet_v3_small", "input_size": 32, "epochs": 1, "batch_size": 4, "patience": 0}


def _tiny_dataset(fs, root: str, classes=("Nanowires", "Particles", "Tips"), per_class: int = 4) -> None:
    write_dataset(fs, root, per_class=per_class, size=(48, 48), seed=3)
    for c in CATEGORY_IDS:
        if c not in classes:
            fs.rm(f"{root}/{c}", recursive=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, artifacts):
    """One real training run on the SYNTHETIC set (the expensive part of this file).

    Its report and confusion matrix are copied to ``test-artifacts/sem-train/`` for people.
    """
    fs = fsspec.filesystem("memory")
    root = f"/sem-train-{uuid.uuid4().hex}"
    write_dataset(fs, root, per_class=QUALITY["per_class"], size=QUALITY["size"], seed=11)
    out = tmp_path_factory.mktemp("run")
    calls = []
    result = train(f"memory://{root}", architecture=QUALITY["architecture"], epochs=QUALITY["epochs"],
                   batch_size=QUALITY["batch_size"], input_size=QUALITY["input_size"], lr=QUALITY["lr"],
                   val_fraction=0.25, seed=0, patience=4, out_dir=out, device="auto",
                   progress=lambda done, total, msg: calls.append((done, total, msg)))
    keep = artifacts / "sem-train"
    keep.mkdir(exist_ok=True)
    for name in ("report.json", "confusion_matrix.png"):
        (keep / name).write_bytes((out / name).read_bytes())
    return result, out, calls, fs, root


def test_training_on_synthetic_data_reaches_90_percent(trained):
    result, out, calls, fs, root = trained
    assert result.accuracy >= 0.90, result.summary()
    assert result.info.synthetic and result.info.trained_on["synthetic"] is True
    assert "SYNTHETIC" in result.info.notes
    assert result.info.classes == list(CATEGORY_IDS)
    assert result.info.trained_on["n_images"] == 10 * QUALITY["per_class"]
    assert result.info.trained_on["per_class"] == {c: QUALITY["per_class"] for c in CATEGORY_IDS}
    assert result.skipped == []
    # progress: reading, then training steps up to the end
    assert calls[0][2] == "reading images" and calls[-1][2] == "training: done"
    assert calls[-1][0] == calls[-1][1]


def test_report_and_confusion_matrix_agree_with_the_reported_accuracy(trained):
    result, out, *_ = trained
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (10, 10)
    assert cm.sum() == m["n_val"] == result.info.trained_on["n_val"] == 10 * round(0.25 * QUALITY["per_class"])
    assert np.trace(cm) / cm.sum() == pytest.approx(m["accuracy"]) == pytest.approx(result.accuracy)
    for i, c in enumerate(m["classes"]):
        pc = m["per_class"][c]
        assert pc["support"] == cm[i].sum()
        assert pc["recall"] == pytest.approx(cm[i, i] / cm[i].sum())
        assert pc["precision"] == pytest.approx(cm[i, i] / cm[:, i].sum() if cm[:, i].sum() else 0.0)
    # the checkpoint's metrics are the report's, and re-classifying the held-out images gives them again
    _, info, reps = load_checkpoint(result.checkpoint)
    assert info.metrics == m and set(reps) == set(CATEGORY_IDS)
    assert report["model"]["trained_on"]["fingerprint"] == info.trained_on["fingerprint"]
    png = Image.open(out / "confusion_matrix.png")
    assert png.format == "PNG" and png.width > 400 and png.height > 400
    assert len(report["history"]) == info.training["epochs_run"] == len(result.history)
    assert result.best_epoch == info.training["best_epoch"]


def test_held_out_images_reclassified_by_the_checkpoint_reproduce_the_matrix(trained):
    result, out, calls, fs, root = trained
    # rebuild the split from the same seed and classify the validation files from storage
    clf = Classifier.load(result.checkpoint, device="cpu")
    files = sorted(p for p in fs.find(root) if p.endswith(".png"))
    labels = np.array([CATEGORY_IDS.index(p.split("/")[-2]) for p in files])
    _, val = stratified_split(labels, 0.25, 0)
    preds = clf.classify([f"memory://{files[i]}" for i in val])
    predicted = np.array([CATEGORY_IDS.index(p.category) for p in preds])
    assert confusion_metrics(labels[val], predicted, list(CATEGORY_IDS))["confusion_matrix"] == \
        result.report["metrics"]["confusion_matrix"]


def test_confusion_metrics_against_a_direct_count():
    rng = np.random.default_rng(4)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    m = confusion_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    for i, c in enumerate("abcd"):
        tp = int(np.sum((y_true == i) & (y_pred == i)))
        assert m["per_class"][c]["precision"] == pytest.approx(tp / np.sum(y_pred == i))
        assert m["per_class"][c]["recall"] == pytest.approx(tp / np.sum(y_true == i))
        for j in range(4):
            assert m["confusion_matrix"][i][j] == int(np.sum((y_true == i) & (y_pred == j)))
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred))


def test_stratified_split_keeps_every_class_in_both_parts():
    labels = np.repeat(np.arange(4), [10, 3, 2, 1])
    tr, va = stratified_split(labels, 0.3, seed=5)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(16))
    assert np.bincount(labels[va], minlength=4).tolist() == [3, 1, 1, 0]
    assert np.array_equal(stratified_split(labels, 0.3, seed=5)[1], va)


def test_unreadable_images_are_reported_and_skipped(tmp_path):
    fs = fsspec.filesystem("file")
    root = str(tmp_path / "data")
    _tiny_dataset(fs, root)
    (tmp_path / "data" / "Tips" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "data" / "Particles" / "notes.txt").write_text("not an image")
    (tmp_path / "data" / "Tips" / ".hidden.png").write_bytes(b"ignored")
    result = train(root, out_dir=tmp_path / "out", val_fraction=0.25, **TINY)
    assert sorted(s["file"] for s in result.skipped) == ["Particles/notes.txt", "Tips/broken.png"]
    reasons = {s["file"]: s["reason"] for s in result.skipped}
    assert "not an image" in reasons["Particles/notes.txt"] and "Particles/notes.txt" in reasons["Particles/notes.txt"]
    assert result.info.trained_on["n_images"] == 12 and result.info.trained_on["skipped"] == 2
    assert result.info.classes == ["Nanowires", "Particles", "Tips"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["skipped"] == result.skipped
    assert "skipped 2 unreadable file(s)" in result.summary()

    # the fingerprint is over paths, sizes and contents of the images used
    entries = []
    for rel in sorted(f"{c}/{i}.png" for c in result.info.classes for i in range(4)):
        data = (tmp_path / "data" / rel).read_bytes()
        import hashlib

        entries.append((rel, len(data), hashlib.sha256(data).hexdigest()))
    assert result.info.trained_on["fingerprint"] == fingerprint(entries)


def test_transfer_learning_from_an_operator_weights_file(tmp_path):
    import torchvision

    fs = fsspec.filesystem("file")
    root = str(tmp_path / "data")
    _tiny_dataset(fs, root, classes=("Fibres", "Powder"))
    torch.manual_seed(9)
    source = torchvision.models.mobilenet_v3_small(weights=None)
    weights = tmp_path / "operator-mobilenet.pth"
    torch.save(source.state_dict(), weights)
    result = train(root, out_dir=tmp_path / "out", weights=weights, augment=False, lr=1e-9, **TINY)
    model, info, _ = load_checkpoint(result.checkpoint)
    sha = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    # the weights file and its hash are in the checkpoint, the report and the model card
    assert info.training["weights"] == str(weights) and info.training["weights_sha256"] == sha
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["weights"] == {"file": str(weights), "sha256": sha, "pretrained": False}
    storage = Storage(url=f"file://{tmp_path}/repo")
    ModelRegistry(storage).register(result.checkpoint, "operator-tl")
    card = storage.fs.cat_file(f"{storage.root}/models/operator-tl/README.md").decode()
    assert f"`{weights}` (`{sha}`)" in card
    assert info.mean == pytest.approx(IMAGENET_GRAY_MEAN)
    # with a vanishing learning rate the first convolution is still the operator's
    torch.testing.assert_close(model.backbone.features[0][0].weight, source.features[0][0].weight)


@pytest.mark.parametrize("kind, message", [
    ("garbage", "is not a torch state_dict"),
    ("missing", "not found"),
    ("other-architecture", "match only"),
])
def test_bad_weights_are_refused_before_any_image_is_read(tmp_path, kind, message):
    import torchvision

    from dass.sem.models import ModelError

    fs = fsspec.filesystem("file")
    root = str(tmp_path / "data")
    _tiny_dataset(fs, root, classes=("Fibres", "Powder"))
    weights = tmp_path / "weights.pth"
    if kind == "garbage":
        weights.write_bytes(b"not a torch file")
    elif kind == "other-architecture":
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    calls = []
    with pytest.raises(ModelError, match=message):
        train(root, out_dir=tmp_path / "out", weights=weights, progress=lambda *a: calls.append(a), **TINY)
    assert calls == []  # "reading images" never started
    assert not (tmp_path / "out").exists()


def test_counts_per_split_in_the_info_and_the_model_card(trained, tmp_path):
    result, *_ = trained
    t = result.info.trained_on
    assert sum(t["per_class_train"].values()) == t["n_train"]
    assert sum(t["per_class_val"].values()) == t["n_val"] == result.report["metrics"]["n_val"]
    for c in CATEGORY_IDS:
        assert t["per_class_train"][c] + t["per_class_val"][c] == t["per_class"][c]
        assert t["per_class_val"][c] == result.report["metrics"]["per_class"][c]["support"]
    assert result.report["split"] == {"train": t["per_class_train"], "validation": t["per_class_val"]}
    storage = Storage(url=f"file://{tmp_path}/repo")
    ModelRegistry(storage).register(result.checkpoint, "split-card")
    card = storage.fs.cat_file(f"{storage.root}/models/split-card/README.md").decode()
    assert "| Training images | Validation images |" in card
    row = next(line for line in card.splitlines() if "`Nanowires`" in line)
    assert f"| {t['per_class_train']['Nanowires']} | {t['per_class_val']['Nanowires']} |" in row
    assert "| Initial weights | none (random initialization) |" in card
    assert f"trained on {t['n_train']} images" in result.summary()


@pytest.mark.parametrize("layout, message", [
    ({"Nanowires": 2, "Unicorns": 2}, "unknown class folder\\(s\\) Unicorns; class folders must be named"),
    ({"Nanowires": 2, "Tips": 0}, "class folder Tips/ is empty"),
    ({"Nanowires": 3}, "found 1 class folder\\(s\\) \\(Nanowires\\); training needs at least two"),
])
def test_bad_dataset_layouts(tmp_path, layout, message):
    for folder, n in layout.items():
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / folder / f"{i}.png")
    with pytest.raises(TrainError, match=message):
        train(str(tmp_path), out_dir=tmp_path / "out", **TINY)


def test_a_class_with_only_unreadable_images_and_bad_settings(tmp_path):
    fs = fsspec.filesystem("file")
    root = str(tmp_path / "data")
    _tiny_dataset(fs, root, classes=("Fibres", "Powder"), per_class=2)
    for i in range(2):
        (tmp_path / "data" / "Powder" / f"{i}.png").write_bytes(b"garbage")
    with pytest.raises(TrainError, match="no readable image in class folder\\(s\\) Powder"):
        train(root, out_dir=tmp_path / "out", **TINY)
    with pytest.raises(TrainError, match="is not a folder"):
        train(str(tmp_path / "missing"), out_dir=tmp_path / "out", **TINY)
    bad = [({"epochs": 0}, "epochs must be an integer >= 1"), ({"balance": "smote"}, "balance must be"),
           ({"val_fraction": 1.0}, "val_fraction must be between 0 and 1"), ({"lr": -1.0}, "lr must be a positive number"),
           ({"architecture": "inception_v3", "input_size": 64}, "input_size 64 is too small for inception_v3")]
    for override, message in bad:
        with pytest.raises(TrainError, match=message):
            train(root, out_dir=tmp_path / "out", **{**TINY, **override})


def test_demo_model_is_trained_once_and_cached(tmp_path):
    settings = {"data": {"per_class": 3, "size": [48, 48], "seed": 1},
                "train": {"architecture": "mobilenet_v3_small", "epochs": 1, "batch_size": 8, "input_size": 32,
                          "lr": 1e-3, "val_fraction": 0.34, "seed": 0, "patience": 0, "balance": "weighted",
                          "augment": True}}
    cache = tmp_path / "cache"
    calls = []
    storage = Storage(url=f"file://{tmp_path}/repo1")
    name = ensure_demo_model(storage, cache_dir=cache, settings=settings, progress=lambda *a: calls.append(a))
    assert name == DEMO_MODEL_NAME and calls
    cached = demo_cache_path(cache, settings)
    assert cached.exists()
    stamp = cached.stat().st_mtime_ns
    reg = ModelRegistry(storage)
    assert reg.default_name() == DEMO_MODEL_NAME
    info = reg.info(DEMO_MODEL_NAME)
    assert info.synthetic and "SYNTHETIC" in info.notes
    assert "**Trained on SYNTHETIC data.**" in storage.fs.cat_file(f"{storage.root}/models/{name}/README.md").decode()

    # a second repository: the cached checkpoint is reused, nothing is trained
    calls.clear()
    storage2 = Storage(url=f"file://{tmp_path}/repo2")
    assert ensure_demo_model(storage2, cache_dir=cache, settings=settings, progress=lambda *a: calls.append(a)) \
        == DEMO_MODEL_NAME
    assert calls == [] and cached.stat().st_mtime_ns == stamp
    assert storage2.fs.cat_file(f"{storage2.root}/models/{name}/model.pt") == \
        storage.fs.cat_file(f"{storage.root}/models/{name}/model.pt")

    # a repository with a default keeps it
    ModelRegistry(storage2).register(reg.checkpoint_bytes(), "mine", default=True)
    assert ensure_demo_model(storage2, cache_dir=cache, settings=settings) == "mine"

    # other settings, other cache file
    assert demo_cache_path(cache, {**settings, "data": {**settings["data"], "seed": 2}}) != cached


def test_representatives_are_training_images_of_their_class(trained):
    result, *_ = trained
    clf = Classifier.load(result.checkpoint)
    for c in CATEGORY_IDS:
        png = clf.representative(c)
        img = np.asarray(Image.open(io.BytesIO(png)))
        assert img.shape == (QUALITY["input_size"],) * 2
        # the most typical training image of the class is classified as that class
        assert clf.classify([img])[0].category == c

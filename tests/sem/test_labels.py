"""SEM labels through the one metadata-writing path, in process: ``dass.sem.labels.confirm``
with a real repository folder and a real SQLite catalogue (the service's routes over it are
tested in tests/service/test_classify_api.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from dass.data.access import Identity
from dass.data.catalog import Catalog
from dass.data.storage import Storage
from dass.sem.labels import LabelError, confirm, record_classifications, sidecar_path
from tests.service.service_support import dataset_json

ALICE = Identity("alice", frozenset({"p1"}))
SCORES = {"Nanowires": 0.7, "Tips": 0.2, "Particles": 0.1}


@pytest.fixture
def labelled(tmp_path: Path):
    folder = tmp_path / "repo" / "p1" / "sem-a"
    folder.mkdir(parents=True)
    images = [f"img{i}.tif" for i in range(4)]
    for name in images:
        (folder / name).write_bytes(b"II*\x00 not really a tiff")
    (folder / "dataset.json").write_text(json.dumps(dataset_json("SEM images", stacks=["sem"])))
    storage = Storage(url=f"file://{tmp_path / 'repo'}", lock_dir=str(tmp_path / "locks"))
    catalog = Catalog(db_url=f"sqlite:///{tmp_path}/catalog.sqlite")
    assert not catalog.scan(storage).errors
    records = record_classifications(
        catalog, "alice", "p1/sem-a",
        [{"path": n, "category": "Nanowires", "certainty": 0.7, "scores": SCORES} for n in images],
        model="demo", architecture="resnet18",
    )
    yield storage, catalog, folder, records
    catalog.dispose()


def test_concurrent_confirms_keep_every_label(labelled):
    storage, catalog, folder, records = labelled
    errors = []

    def label(record, category):
        try:
            confirm(catalog, storage, ALICE, record["id"], category)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    choices = ["Tips", "Particles", None, "Tips"]  # None: accept the suggestion
    threads = [threading.Thread(target=label, args=(r, c)) for r, c in zip(records, choices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    domain = json.loads((folder / "dataset.json").read_text())["domain"]
    assert {p: v["category"] for p, v in domain["labels"].items()} == {
        "img0.tif": "Tips", "img1.tif": "Particles", "img2.tif": "Nanowires", "img3.tif": "Tips"}
    assert domain["categories"] == ["Nanowires", "Particles", "Tips"]
    assert all((folder / sidecar_path(f"img{i}.tif")).is_file() for i in range(4))
    found, _ = catalog.search(ALICE, category="Particles")
    assert [r.id for r in found] == ["p1/sem-a"]


def test_invalid_metadata_is_409_and_nothing_is_written(labelled):
    storage, catalog, folder, records = labelled
    (folder / "dataset.json").write_text(json.dumps(dataset_json("SEM images", dates={"created": "May 2024"})))
    before = (folder / "dataset.json").read_bytes()
    with pytest.raises(LabelError) as info:
        confirm(catalog, storage, ALICE, records[0]["id"])
    message = info.value.message
    assert info.value.status == 409 and "dates.created" in message and "cannot be labelled" in message
    assert (folder / "dataset.json").read_bytes() == before
    assert not (folder / sidecar_path("img0.tif")).exists()


def test_a_vanished_image_is_409_and_nothing_is_written(labelled):
    storage, catalog, folder, records = labelled
    (folder / "img1.tif").unlink()
    before = (folder / "dataset.json").read_bytes()
    with pytest.raises(LabelError, match="no longer in dataset") as info:
        confirm(catalog, storage, ALICE, records[1]["id"], "Tips")
    assert info.value.status == 409
    assert (folder / "dataset.json").read_bytes() == before and not (folder / sidecar_path("img1.tif")).exists()

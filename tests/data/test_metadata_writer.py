"""The one metadata-writing path: ``dass.data.metadata_writer`` (lock, validate, write, re-index).

Real files, a real SQLite catalogue, real processes competing for the lock, and a real S3
endpoint (moto in server mode) for the object-store write.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dass.data.catalog import Catalog
from dass.data.errors import DassDataError, MetadataError
from dass.data.metadata_writer import (
    MetadataUpdateError,
    dataset_lock,
    publish_dataset,
    reindex_dataset,
    split_dataset_id,
    update_dataset,
    validated_bytes,
    write_metadata,
)
from dass.data.storage import Storage

from .conftest import dataset_json, write_dataset

# Each writer appends its own keyword to what it read; the short pause between reading and
# writing widens the read-modify-write window, so that writers without the lock would lose
# updates here (checked by turning the flock off: 5 of the 50 updates were lost).
WRITER = """
import sys, time
from dass.data.metadata_writer import update_dataset
from dass.data.storage import Storage

url, lock_dir, tag, count = sys.argv[1:5]
storage = Storage(url=url)


def add(word):
    def change(doc):
        keywords = list(doc.get("keywords", []))
        time.sleep(0.002)
        doc["keywords"] = keywords + [word]
        return doc
    return change


for i in range(int(count)):
    update_dataset(storage, None, "p1/d1", add(f"{tag}-{i}"), lock_dir=lock_dir)
"""


@pytest.fixture
def setup(repo: Path, tmp_path: Path):
    storage = Storage(url=f"file://{repo}")
    catalog = Catalog(db_url=f"sqlite:///{tmp_path}/catalog.sqlite")
    assert not catalog.scan(storage).errors
    yield storage, catalog, repo, tmp_path / "locks"
    catalog.dispose()


def add_keyword(word: str):
    def change(doc):
        doc["keywords"] = [*doc.get("keywords", []), word]
        return doc

    return change


def test_update_writes_validated_metadata_and_reindexes(setup):
    storage, catalog, repo, locks = setup
    seen = []
    md = update_dataset(storage, catalog, "p1/d1", add_keyword("ferrite"), lock_dir=locks,
                        also_write=lambda doc: seen.append(doc["keywords"]))
    assert md.keywords == ["grain", "boundary", "ferrite"]
    assert seen == [["grain", "boundary", "ferrite"]]  # companion files see the validated document
    on_disk = json.loads((repo / "p1" / "d1" / "dataset.json").read_text())
    assert on_disk["keywords"] == ["grain", "boundary", "ferrite"] and on_disk["title"] == "Grain boundaries in steel"
    assert catalog.get("p1/d1").keywords == ("grain", "boundary", "ferrite")
    assert (locks / "p1" / "d1.lock").is_file()
    assert sorted(p.name for p in (repo / "p1" / "d1").iterdir()) == ["dataset.json", "raw"]  # no temp file left


def test_an_invalid_change_writes_nothing_and_names_the_field(setup):
    storage, catalog, repo, locks = setup
    path = repo / "p1" / "d1" / "dataset.json"
    before = path.read_bytes()
    record = catalog.get("p1/d1")
    companions = []

    def break_embargo(doc):
        doc["access"] = {"embargo_until": "next spring"}
        return doc

    with pytest.raises(MetadataUpdateError) as info:
        update_dataset(storage, catalog, "p1/d1", break_embargo, lock_dir=locks, also_write=companions.append)
    err = info.value
    assert err.stage == "change" and err.field == "access.embargo_until"
    assert "YYYY-MM-DD" in str(err) and "dataset.json is unchanged" in str(err) and str(path) in str(err)
    assert path.read_bytes() == before and companions == []
    assert catalog.get("p1/d1") == record  # still indexed, as it was


def test_values_json_cannot_hold_are_refused(setup):
    storage, catalog, repo, locks = setup
    before = (repo / "p1" / "d1" / "dataset.json").read_bytes()
    for value, words in [(float("nan"), "NaN is not valid JSON"), (object(), "JSON cannot store")]:
        with pytest.raises(MetadataUpdateError, match=words):
            update_dataset(storage, catalog, "p1/d1", lambda doc, v=value: {**doc, "domain": {"x": v}}, lock_dir=locks)
    assert (repo / "p1" / "d1" / "dataset.json").read_bytes() == before


def test_a_dataset_whose_metadata_is_invalid_now_is_not_changed(setup):
    storage, catalog, repo, locks = setup
    path = repo / "p1" / "d1" / "dataset.json"
    path.write_text(json.dumps(dataset_json(licence="CC BY")))
    before = path.read_bytes()
    with pytest.raises(MetadataUpdateError) as info:
        update_dataset(storage, catalog, "p1/d1", add_keyword("x"), lock_dir=locks)
    assert info.value.stage == "current" and info.value.field == "licence"
    assert "fix the file before changing it" in str(info.value)
    assert path.read_bytes() == before
    with pytest.raises(MetadataUpdateError, match="missing dataset.json") as info:
        update_dataset(storage, catalog, "p1/nothing-here", add_keyword("x"), lock_dir=locks)
    assert info.value.stage == "current"
    with pytest.raises(ValueError, match="must be <proposal>/<dataset>"):
        update_dataset(storage, catalog, "p1", add_keyword("x"), lock_dir=locks)
    with pytest.raises(ValueError, match="must be <proposal>/<dataset>"):
        split_dataset_id("p1/../etc")


def test_a_failing_companion_write_leaves_dataset_json_unchanged(setup):
    storage, catalog, repo, locks = setup
    before = (repo / "p1" / "d1" / "dataset.json").read_bytes()

    def fail(doc):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        update_dataset(storage, catalog, "p1/d1", add_keyword("x"), also_write=fail, lock_dir=locks)
    assert (repo / "p1" / "d1" / "dataset.json").read_bytes() == before


def test_concurrent_writers_in_threads_and_processes_lose_no_update(setup):
    storage, catalog, repo, locks = setup
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, storage.url, str(locks), f"proc{n}", "15"])
        for n in range(2)
    ]
    errors: list[BaseException] = []

    def thread_writer(tag: str) -> None:
        try:
            for i in range(5):
                update_dataset(storage, catalog, "p1/d1", add_keyword(f"{tag}-{i}"), lock_dir=locks)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=thread_writer, args=(f"thread{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=300) == 0
    assert errors == []
    keywords = json.loads((repo / "p1" / "d1" / "dataset.json").read_text())["keywords"]
    expected = {f"proc{n}-{i}" for n in range(2) for i in range(15)} | {f"thread{n}-{i}" for n in range(4) for i in range(5)}
    assert len(keywords) == 2 + len(expected) and set(keywords) == {"grain", "boundary"} | expected
    # each process wrote its own in order
    for n in range(2):
        mine = [k for k in keywords if k.startswith(f"proc{n}-")]
        assert mine == [f"proc{n}-{i}" for i in range(15)]
    catalog.index_dataset(storage, "p1", "d1")
    assert set(catalog.get("p1/d1").keywords) == set(keywords)


def test_the_lock_excludes_another_process(setup, tmp_path):
    """While this process holds the lock, another process's update waits for it."""
    storage, catalog, repo, locks = setup
    with dataset_lock("p1", "d1", lock_dir=locks):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, storage.url, str(locks), "waiting", "1"])
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # blocked on the lock (it would finish in well under a second otherwise)
        assert "waiting-0" not in (repo / "p1" / "d1" / "dataset.json").read_text()
    assert proc.wait(timeout=300) == 0
    assert "waiting-0" in json.loads((repo / "p1" / "d1" / "dataset.json").read_text())["keywords"]


def test_the_lock_folder_is_the_storage_setting(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_STATE_DIR", str(tmp_path / "state"))
    assert Storage(url=f"file://{repo}").lock_dir == str(tmp_path / "state" / "locks")
    storage = Storage(url=f"file://{repo}", lock_dir=str(tmp_path / "configured"))
    update_dataset(storage, None, "p2/d3", add_keyword("x"))
    assert (tmp_path / "configured" / "p2" / "d3.lock").is_file()
    assert not (tmp_path / "state").exists()


def test_lock_folder_errors_name_the_folder(setup, tmp_path):
    storage, catalog, repo, locks = setup
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(DassDataError, match="cannot create the metadata lock .*not-a-folder"):
        update_dataset(storage, catalog, "p1/d1", add_keyword("x"), lock_dir=blocker)


def test_publish_dataset_validates_before_writing(setup):
    storage, catalog, repo, locks = setup
    write_dataset(repo, "p1", "new", None, {"a.tif": b"II*\x00"})
    with pytest.raises(MetadataError) as info:
        publish_dataset(storage, catalog, "p1", "new", dataset_json(creators=[]), lock_dir=locks)
    assert info.value.field == "creators"
    assert not (repo / "p1" / "new" / "dataset.json").exists() and catalog.get("p1/new") is None
    md = publish_dataset(storage, catalog, "p1", "new", dataset_json("New"), lock_dir=locks)
    assert md.title == "New" and catalog.get("p1/new").title == "New"


def test_write_metadata_and_reindex_for_job_results(setup):
    storage, catalog, repo, locks = setup
    folder = storage.join("results", "job-1")
    data = write_metadata(storage, folder, dataset_json("Results", access={"users": ["alice"]}), proposal="results")
    assert (repo / "results" / "job-1" / "dataset.json").read_bytes() == data
    report = reindex_dataset(storage, catalog, "results", "job-1", lock_dir=locks)
    assert (report.indexed, report.errors) == (1, [])
    assert catalog.get("results/job-1").access_users == ("alice",)
    (repo / "results" / "job-1" / "dataset.json").write_text("{broken")
    report = reindex_dataset(storage, catalog, "results", "job-1", lock_dir=locks)
    assert [e.path for e in report.errors] == [f"file://{repo}/results/job-1/dataset.json"]


def test_validated_bytes_and_error_pickling():
    data, md = validated_bytes(dataset_json("T"), proposal="p1", url="mem://x/dataset.json")
    assert json.loads(data)["title"] == "T" and md.access_groups == ["p1"]
    err = MetadataUpdateError("f.json", "title", "is required", stage="current")
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.field, again.message, again.stage) == ("f.json", "title", "is required", "current")


def test_update_on_s3_writes_one_object_and_refuses_invalid_changes(s3_repo, s3_options, tmp_path):
    storage = Storage(url=s3_repo, options=s3_options)
    catalog = Catalog(db_url=f"sqlite:///{tmp_path}/catalog.sqlite")
    assert not catalog.scan(storage).errors
    md = update_dataset(storage, catalog, "p1/d1", add_keyword("ferrite"), lock_dir=tmp_path / "locks")
    assert md.keywords[-1] == "ferrite" and catalog.get("p1/d1").keywords[-1] == "ferrite"
    path = storage.dataset_path("p1", "d1") + "/dataset.json"
    before = storage.fs.cat_file(path)
    with pytest.raises(MetadataUpdateError, match="title"):
        update_dataset(storage, catalog, "p1/d1", lambda doc: {**doc, "title": ""}, lock_dir=tmp_path / "locks")
    assert storage.fs.cat_file(path) == before
    assert sorted(p.rsplit("/", 1)[-1] for p in storage.fs.ls(storage.dataset_path("p1", "d1"))) == ["dataset.json", "raw"]
    catalog.dispose()

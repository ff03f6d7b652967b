"""STM metadata into the catalogue: ``dass.stm.catalog.annotate_dataset`` and ``dass stm annotate``
on a repository holding a real FAST movie (pyfastspm wheel) and a real Nanonis scan
(pynxtools-spm wheel), with a sample-preparation logbook (a synthetic test logbook)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from dass.data.catalog import Catalog
from dass.data.metadata_writer import MetadataUpdateError
from dass.data.storage import Storage
from dass.stm import open_fast, open_sxm
from dass.stm.catalog import annotate_dataset
from dass.stm.logbook import read_logbook
from tests.service.service_support import dataset_json

DATASET = "p-2026-002/stm-mixed"
LOGBOOK = """\
sample,step,start,duration,temperature,notes
Gr/Ni(111),sputter Ar+,2014-10-02T16:00,20 min,,synthetic test entry
Gr/Ni(111),anneal,2014-10-02 16:30:00,60 min,650 °C,synthetic test entry
Au(111),sputter,2014-10-03T09:00,0.5 h,,"synthetic, other sample"
"""


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def repo(tmp_path, old_fast, stm_sxm):
    root = tmp_path / "repository"
    (root / "p-2026-002").mkdir(parents=True)
    (root / "p-2026-002" / "proposal.json").write_text(json.dumps({"title": "STM tests"}))
    folder = root / DATASET
    folder.mkdir()
    shutil.copy(old_fast, folder / old_fast.name)
    shutil.copy(stm_sxm, folder / stm_sxm.name)
    (folder / "broken.sxm").write_bytes(stm_sxm.read_bytes()[:3000])  # cut inside the data
    files = [old_fast.name, stm_sxm.name, "broken.sxm"]
    (folder / "dataset.json").write_text(json.dumps(dataset_json(
        "STM files for the annotate test", technique="STM", stacks=["stm"],
        checksums={n: sha(folder / n) for n in files})))
    (tmp_path / "logbook.csv").write_text(LOGBOOK)
    storage = Storage(url=f"file://{root}", lock_dir=str(tmp_path / "locks"))
    catalog = Catalog(db_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    catalog.upgrade()
    assert not catalog.scan(storage).errors
    yield storage, catalog, folder, tmp_path / "logbook.csv"
    catalog.dispose()


def test_metadata_and_logbook_go_into_dataset_json_and_the_catalogue(repo, old_fast, stm_sxm):
    storage, catalog, folder, logbook = repo
    raw = h5py.File(folder / old_fast.name, "r")["data"][()]
    report = annotate_dataset(storage, catalog, DATASET, logbook=read_logbook(logbook), write_h5=True)
    assert report["described"] == sorted([old_fast.name, stm_sxm.name])
    assert "cut off" in report["unreadable"]["broken.sxm"]
    assert report["matched"] == {old_fast.name: 2} and report["written_h5"] == [old_fast.name]

    meta = json.loads((folder / "dataset.json").read_text())
    files = meta["domain"]["stm_files"]
    with open_fast(old_fast) as movie:
        assert files[old_fast.name] == json.loads(json.dumps(movie.metadata, default=str))
    assert files[stm_sxm.name] == json.loads(json.dumps(open_sxm(stm_sxm).metadata, default=str))
    steps = meta["domain"]["preparation"][old_fast.name]
    assert [s["step"] for s in steps] == ["sputter Ar+", "anneal"]
    # the FAST file got /dass_logbook, its raw stream is untouched, its checksum follows the file
    with h5py.File(folder / old_fast.name, "r") as h5:
        assert (h5["data"][()] == raw).all()
        assert h5["dass_logbook"].attrs["count"] == 2
    assert meta["checksums"][old_fast.name] == sha(folder / old_fast.name)
    assert meta["checksums"][stm_sxm.name] == sha(folder / stm_sxm.name)  # not rewritten
    # the catalogue holds the new metadata
    record = catalog.get(DATASET)
    assert record.metadata["domain"]["preparation"][old_fast.name][1]["step"] == "anneal"


def test_cli_annotate_and_its_errors(repo, tmp_path):
    storage, catalog, folder, logbook = repo
    config = tmp_path / "dass_config.py"
    config.write_text(f"c.Storage.url = {storage.url!r}\nc.Storage.lock_dir = {storage.lock_dir!r}\n"
                      f"c.Catalog.db_url = {catalog.db_url!r}\n")
    env = dict(os.environ, DASS_STATE_DIR=str(tmp_path / "state"))

    def dass(*args):
        return subprocess.run([sys.executable, "-m", "dass", "--config", str(config), "stm", "annotate", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    r = dass(DATASET, "--logbook", str(logbook))
    assert r.returncode == 1, r.stderr  # one unreadable file: reported, the rest stored
    assert "metadata of 2 STM file(s) stored" in r.stdout and "unreadable: broken.sxm" in r.stdout
    assert "2 preparation step(s)" in r.stdout
    for args, words in [(("p-2026-002",), "must be <proposal>/<dataset>"),
                        (("p-2026-002/nope",), "no such dataset"),
                        ((DATASET, "--logbook", str(tmp_path / "missing.csv")), "missing.csv")]:
        r = dass(*args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_metadata_the_schema_refuses_leaves_dataset_json_and_the_fast_file_unchanged(repo, old_fast):
    """A logbook so long that dataset.json would pass the 1 MiB limit: refused before writing.

    Before the one metadata-writing path, annotate wrote the file first and only then learned
    that the catalogue refused it (the dataset vanished from the catalogue)."""
    storage, catalog, folder, _ = repo
    meta_before = (folder / "dataset.json").read_bytes()
    fast_before = (folder / old_fast.name).read_bytes()
    notes = "synthetic test entry " + "x" * 600
    rows = [f"Gr/Ni(111),step {i},2014-10-02T{10 + i // 60 % 6:02d}:{i % 60:02d},1 min,,{notes}" for i in range(2000)]
    logbook_file = folder.parent / "long-logbook.csv"
    logbook_file.write_text("sample,step,start,duration,temperature,notes\n" + "\n".join(rows) + "\n")
    with pytest.raises(MetadataUpdateError) as info:
        annotate_dataset(storage, catalog, DATASET, logbook=read_logbook(logbook_file), write_h5=True)
    assert info.value.stage == "change" and "1 MiB" in str(info.value) and "unchanged" in str(info.value)
    assert (folder / "dataset.json").read_bytes() == meta_before
    assert (folder / old_fast.name).read_bytes() == fast_before  # /dass_logbook not uploaded either
    assert catalog.get(DATASET) is not None  # still catalogued

"""SEM labels exported as NeXus NXem, validated with pynxtools' NeXus validator (from the registry).

A real repository and catalogue (``make_repository``): two SYNTHETIC images are stored as an
upload, classified (the suggestions recorded), one label confirmed; the export is written by
the library and by ``dass sem export-nexus`` in a subprocess, and checked by value and by
``pynxtools.dataconverter.validation.validate_hdf_group_against("NXem", ...)``. A file with an
undocumented group and one without the required sample fields are shown to fail the same
validator, so the check can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

pytest.importorskip("pynxtools", reason="the NeXus validator (pynxtools, in the test extra) is not installed")

from dass.data.access import Identity  # noqa: E402
from dass.data.catalog import Catalog  # noqa: E402
from dass.data.storage import Storage  # noqa: E402
from dass.sem.labels import confirm, record_classifications, store_upload  # noqa: E402
from dass.sem.nexus import NexusExportError, export_dataset, nxem_tree, write_nxem  # noqa: E402
from tests.sem_support import sem_png  # noqa: E402
from tests.service.service_support import make_repository  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCORES = {"Nanowires": 0.7, "Powder": 0.2, "Tips": 0.1}


def nxem_valid(path: Path) -> bool:
    from pynxtools.dataconverter.validation import validate_hdf_group_against

    with h5py.File(path, "r") as f:
        return validate_hdf_group_against("NXem", f["entry1"], str(path))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A stored upload of two images, both classified, the first confirmed as Powder by alice."""
    tmp = tmp_path_factory.mktemp("nexus")
    urls = make_repository(tmp)
    storage, catalog = Storage(url=urls["repo_url"]), Catalog(db_url=urls["db_url"])
    upload = store_upload(storage, catalog, "p-2026-001", "alice",
                          [("wires.png", sem_png("Nanowires", 1)), ("tips.png", sem_png("Tips", 2))])
    records = record_classifications(
        catalog, "alice", upload.dataset,
        [{"path": p, "file": p, "category": "Nanowires", "certainty": 0.7, "scores": SCORES} for p in upload.paths],
        model="demo-synthetic", architecture="resnet18")
    confirm(catalog, storage, Identity("alice", frozenset({"p-2026-001"})), records[0]["id"], "Powder")
    yield urls, storage, catalog, upload, records, tmp
    catalog.dispose()


def test_labels_and_outputs_become_one_note_per_image(labelled):
    urls, storage, catalog, upload, records, tmp = labelled
    out = tmp / "labels.nxs"
    assert export_dataset(storage, catalog, upload.dataset, out=str(out), atom_types="Si,O",
                          preparation_date="2026-03-14") == str(out)
    assert nxem_valid(out)
    folder = storage.dataset_path(*upload.dataset.split("/"))
    doc = json.loads(storage.fs.cat_file(f"{folder}/dataset.json"))
    with h5py.File(out, "r") as f:
        e = f["entry1"]
        assert e.attrs["NX_class"] == "NXentry" and e["definition"][()] == b"NXem"
        assert e["identifier_experiment"][()].decode() == upload.dataset
        assert e["sample/atom_types"][()] == b"Si,O"
        assert e["sample/preparation_date"][()] == b"2026-03-14T00:00:00+00:00"
        assert not e["sample/is_simulation"][()]
        notes = sorted(k for k in e if k.startswith("note_"))
        assert len(notes) == 2
        by_file = {e[n]["file_name"][()].decode(): e[n] for n in notes}
        confirmed, suggested = by_file[upload.paths[0]], by_file[upload.paths[1]]
        data = json.loads(confirmed["data"][()])
        assert data["label"]["category"] == "Powder" and data["label"]["confirmed_by"] == "alice"
        assert data["classifier"]["suggested"] == "Nanowires" and data["classifier"]["scores"] == SCORES
        assert confirmed["author"][()] == b"alice"
        assert "Powder confirmed by alice" in confirmed["description"][()].decode()
        # the image's checksum from dataset.json
        algorithm, _, digest = doc["checksums"][upload.paths[0]].partition(":")
        assert confirmed["checksum"][()].decode() == digest and confirmed["algorithm"][()].decode() == algorithm
        data = json.loads(suggested["data"][()])
        assert data["label"] is None and data["classifier"]["id"] == records[1]["id"]
        assert "not confirmed" in suggested["description"][()].decode()


def test_the_validator_refuses_what_nxem_does_not_allow(labelled, tmp_path):
    urls, storage, catalog, upload, records, tmp = labelled
    folder = storage.dataset_path(*upload.dataset.split("/"))
    doc = json.loads(storage.fs.cat_file(f"{folder}/dataset.json"))
    tree = nxem_tree(doc, upload.dataset, atom_types=["Si"], preparation_date="2026-03-14")
    # an undocumented group (a label outside an NXnote) makes the file invalid
    bad = json.loads(json.dumps(tree, default=lambda b: b.decode()))
    bad["entry1"]["classifier_label"] = {"@NX_class": "NXcollection_x", "category": "Tips"}
    write_nxem(bad, str(tmp_path / "undocumented.nxs"))
    assert not nxem_valid(tmp_path / "undocumented.nxs")
    # so does a sample without the required fields
    del tree["entry1"]["sample"]["atom_types"]
    write_nxem(tree, str(tmp_path / "no-atoms.nxs"))
    assert not nxem_valid(tmp_path / "no-atoms.nxs")


def test_missing_sample_information_is_refused_with_the_fix(labelled):
    urls, storage, catalog, upload, records, tmp = labelled
    with pytest.raises(NexusExportError, match="NXem requires sample/atom_types and sample/preparation_date.*"
                                               "--atom-types Si,O --preparation-date"):
        export_dataset(storage, catalog, upload.dataset)
    with pytest.raises(NexusExportError, match="no SEM labels or classifications"):
        export_dataset(storage, catalog, "p-2026-001/sem-grains", atom_types="Cu", preparation_date="2026-01-01")
    with pytest.raises(NexusExportError, match="not an ISO 8601 date"):
        export_dataset(storage, catalog, upload.dataset, atom_types="Si", preparation_date="yesterday")


def test_dass_sem_export_nexus_writes_a_valid_file_into_the_dataset(labelled):
    urls, storage, catalog, upload, records, tmp = labelled
    config = tmp / "dass_config.py"
    config.write_text(f"c.Storage.url = {urls['repo_url']!r}\nc.Catalog.db_url = {urls['db_url']!r}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DASS_CONFIG", None)

    def dass(*args):
        return subprocess.run([sys.executable, "-m", "dass", "--config", str(config), "sem", "export-nexus", *args],
                              capture_output=True, text=True, timeout=300, env=env, cwd=REPO)

    proc = dass(upload.dataset)
    assert proc.returncode == 2 and "NXem requires sample/atom_types" in proc.stderr
    proc = dass(upload.dataset, "--atom-types", "Si,O", "--preparation-date", "2026-03-14T09:30:00+01:00")
    assert proc.returncode == 0, proc.stderr
    written = Path(urls["repo_url"][len("file://"):]) / upload.dataset / "labels.nxs"
    assert f"written to file://{written}" in proc.stdout
    assert nxem_valid(written)

"""Tests of dass.data.mount and dass.data.session: read-only views of file:// (hard links) and
real S3 (copies), and the manifest. Reading through the data gateway (``Dataset.fs``,
``local_path``) is tested against a real service in tests/service/test_gateway.py."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

import dass.data
from dass.data.catalog import Catalog
from dass.data.access import Identity
from dass.data.errors import DassDataError, StorageError
from dass.data.mount import mount_datasets, write_manifest
from dass.data.session import Dataset, DatasetList, datasets
from dass.data.storage import Storage

ADMIN = Identity("root", frozenset(), admin=True)
TIFF = b"II*\x00fake tiff"


def records_of(storage: Storage, tmp_path: Path, wanted: list[str]):
    catalog = Catalog(db_url=f"sqlite:///{tmp_path}/catalog.sqlite")
    report = catalog.scan(storage)
    assert report.errors == []
    found = catalog.visible(ADMIN, wanted)
    catalog.dispose()
    return [found[i] for i in wanted]


def spawn(storage: Storage, tmp_path: Path, wanted: list[str], **kwargs) -> tuple[Path, Path]:
    """What the spawner does: mount, then write the manifest; returns (home, manifest)."""
    home = tmp_path / "home"
    entries = mount_datasets(storage, records_of(storage, tmp_path, wanted), home, **kwargs)
    manifest = write_manifest(
        home / ".dass" / "session.json",
        stack="sem",
        size="small",
        service_url="http://127.0.0.1:9/services/dass/",
        entries=entries,
    )
    return home, manifest


def check_session_api(manifest: Path, home: Path, monkeypatch) -> None:
    monkeypatch.setenv("DASS_SESSION_MANIFEST", str(manifest))
    ds = dass.data.datasets()
    assert isinstance(ds, DatasetList) and ds.ids == ["p1/d1", "p2/d3"]
    d1 = ds["p1/d1"]
    assert d1 is ds[0] and ds["d3"] is ds[1] and isinstance(d1, Dataset)
    assert d1.proposal == "p1" and d1.name == "d1" and d1.title == "Grain boundaries in steel"
    assert d1.path == home / "datasets" / "p1" / "d1"
    assert d1.url == "dass://p1/d1"
    assert d1.metadata["technique"] == "SEM"
    assert d1.local_path() == d1.path  # the view holds the files: no copy
    with d1.open("raw/image_001.tif") as f:  # from the local view
        assert f.read() == TIFF
    with d1.open("dataset.json", "r") as f:
        assert json.load(f)["title"] == "Grain boundaries in steel"
    assert (d1.path / "raw" / "image_001.tif").read_bytes() == TIFF  # the local mount
    for mode in ("wb", "w", "ab", "r+b", "xb"):
        with pytest.raises(PermissionError, match="datasets are read-only; write results to your home folder"):
            d1.open("raw/new.bin", mode)
    # the view itself refuses changes: folders 0555 (a user other than its owner cannot add,
    # remove or rename; tests/integration checks that as a real second user)
    for folder in (d1.path, d1.path / "raw"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    assert "p1/d1" in repr(d1) and "Grain boundaries in steel" in repr(d1)
    html = ds._repr_html_()
    assert "<table>" in html and "p2/d3" in html and "Tunnelling spectra" in html
    with pytest.raises(KeyError, match="chosen at spawn: p1/d1, p2/d3"):
        ds["p1/d2"]


def test_file_storage_views_are_hard_links_or_read_only_copies(repo, tmp_path, monkeypatch):
    storage = Storage(url=f"file://{repo}")
    image = repo / "p1" / "d1" / "raw" / "image_001.tif"
    os.chmod(image, 0o644)
    os.chmod(repo / "p1" / "d1" / "dataset.json", 0o664)  # writable by its group: never shared
    home, manifest = spawn(storage, tmp_path, ["p1/d1", "p2/d3"])
    link = home / "datasets" / "p1" / "d1"
    assert link.is_dir() and not link.is_symlink()
    shared = link / "raw" / "image_001.tif"
    assert os.path.samefile(shared, image)  # a hard link: no copy
    assert stat.S_IMODE(image.stat().st_mode) == 0o644  # the repository's mode is left alone
    copied = link / "dataset.json"
    assert not os.path.samefile(copied, repo / "p1" / "d1" / "dataset.json")
    assert stat.S_IMODE(copied.stat().st_mode) == 0o444
    doc = json.loads(manifest.read_text())
    assert doc["stack"] == "sem" and doc["size"] == "small"
    assert "storage" not in doc and doc["service_url"] == "http://127.0.0.1:9/services/dass/"
    assert str(repo) not in manifest.read_text()  # no repository location either
    assert doc["datasets"][0] == {
        "id": "p1/d1",
        "proposal": "p1",
        "name": "d1",
        "url": "dass://p1/d1",
        "mount": str(link),
        "metadata": json.loads((repo / "p1" / "d1" / "dataset.json").read_text()),
    }
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    check_session_api(manifest, home, monkeypatch)


def test_remount_replaces_and_drops_stale_mounts(repo, tmp_path):
    storage = Storage(url=f"file://{repo}")
    home, _ = spawn(storage, tmp_path, ["p1/d1", "p2/d3"])
    entries = mount_datasets(storage, records_of(storage, tmp_path, ["p1/d2"]), home)
    assert [e["id"] for e in entries] == ["p1/d2"]
    assert sorted(str(p.relative_to(home)) for p in (home / "datasets").glob("*/*")) == ["datasets/p1/d2"]


def test_refuses_to_replace_user_files(repo, tmp_path):
    storage = Storage(url=f"file://{repo}")
    mine = tmp_path / "home" / "datasets" / "p1" / "d1"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="is not a dataset mount made by dass"):
        mount_datasets(storage, records_of(storage, tmp_path, ["p1/d1"]), tmp_path / "home")
    assert (mine / "notes.txt").read_text() == "mine"


def test_manifest_missing_says_no_datasets_were_chosen(tmp_path, monkeypatch):
    monkeypatch.delenv("DASS_SESSION_MANIFEST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DassDataError, match="no datasets were chosen when this session was started"):
        datasets()
    with pytest.raises(DassDataError, match=str(tmp_path / "nope.json")):
        datasets(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DassDataError, match="not valid JSON"):
        datasets(tmp_path / "bad.json")


def test_manifest_is_private_even_when_replacing(tmp_path):
    path = tmp_path / "session.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    write_manifest(path, stack=None, size=None, service_url=None, entries=[])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert datasets(path) == []


@pytest.mark.integration
def test_s3_storage_copies_read_only(s3_repo, s3_options, tmp_path, monkeypatch):
    storage = Storage(url=s3_repo, options=s3_options)
    home, manifest = spawn(storage, tmp_path, ["p1/d1", "p2/d3"])
    copy = home / "datasets" / "p1" / "d1"
    assert copy.is_dir() and not copy.is_symlink()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o555
    assert stat.S_IMODE((copy / "raw").stat().st_mode) == 0o555
    assert stat.S_IMODE((copy / "raw" / "image_001.tif").stat().st_mode) == 0o444
    doc = json.loads(manifest.read_text())
    assert doc["datasets"][0]["url"] == "dass://p1/d1"
    text = manifest.read_text()
    for secret in (s3_options["key"], s3_options["secret"], s3_options["endpoint_url"], s3_repo):
        assert secret not in text  # no credential, endpoint or bucket reaches the session
    check_session_api(manifest, home, monkeypatch)
    # the session's fs is its read-only view (else the data gateway), never the bucket
    d1 = datasets(manifest)["p1/d1"]
    assert type(d1.fs.fs).__name__ == "LocalFileSystem" and d1.fs.path == str(copy)
    assert sorted(d1.ls()) == ["dataset.json", "raw"]
    # mounting again replaces the read-only copy; unchosen copies are removed
    mount_datasets(storage, records_of(storage, tmp_path, ["p1/d1"]), home)
    assert [p.name for p in (home / "datasets").glob("*/*")] == ["d1"]


@pytest.mark.integration
def test_s3_copy_limit(s3_repo, s3_options, tmp_path):
    storage = Storage(url=s3_repo, options=s3_options)
    with pytest.raises(StorageError, match="more than the 10 bytes that may be copied"):
        spawn(storage, tmp_path, ["p1/d1", "p2/d3"], max_copy_bytes=10)
    assert not list((tmp_path / "home" / "datasets").glob("*/*"))


def test_import_dass_data_is_light():
    import subprocess
    import sys

    code = (
        "import sys, dass.data; "
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'fsspec', 'traitlets', 'botocore') if m in sys.modules]; "
        "print(heavy); "
        "dass.data.Catalog; assert 'sqlalchemy' in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_input_dataset_and_output_dir_for_notebooks(tmp_path, monkeypatch):
    """The two helpers every service notebook starts with."""
    from dass.data.session import input_dataset, output_dir

    with pytest.raises(ValueError, match="input_dataset is empty: set it to the id of an SEM dataset, e.g. 'p/d'"):
        input_dataset("", kind="an SEM dataset", example="p/d", manifest=tmp_path / "none.json")
    monkeypatch.setenv("DASS_OUTPUT_DIR", str(tmp_path / "out" / "here"))
    assert output_dir() == tmp_path / "out" / "here" and (tmp_path / "out" / "here").is_dir()
    monkeypatch.delenv("DASS_OUTPUT_DIR")
    monkeypatch.chdir(tmp_path)
    assert output_dir() == Path("output") and (tmp_path / "output").is_dir()


def test_repository_is_the_model_registry_through_the_gateway(tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path / "session.json", stack="sem", size="small",
                              service_url="http://127.0.0.1:9/services/dass/", entries=[])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "session-token")
    monkeypatch.delenv("DASS_SERVICE_URL", raising=False)
    repository = dass.data.repository(manifest)
    assert type(repository.fs).__name__ == "DassFileSystem" and repository.fs.url == "http://127.0.0.1:9/services/dass/"
    assert repository.fs._route(f"{repository.root}/models/registry.json") == "api/models/registry.json"
    assert not hasattr(repository, "options")  # no storage options, ever
    monkeypatch.setenv("DASS_SESSION_MANIFEST", str(tmp_path / "missing.json"))
    with pytest.raises(DassDataError, match="no session manifest"):
        dass.data.repository()

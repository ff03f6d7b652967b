"""Tests of dass.data.storage against a local folder and real S3 endpoints (moto, and none)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from traitlets import TraitError

from dass.data.errors import StorageError
from dass.data.storage import S3_DEFAULT_CONFIG_KWARGS, Storage

from .conftest import free_port


def test_default_url_is_under_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_STATE_DIR", str(tmp_path / "state"))
    storage = Storage()
    assert storage.url == f"file://{tmp_path}/state/repository"
    assert storage.protocol == "file" and storage.is_local
    assert storage.root == f"{tmp_path}/state/repository"


def test_plain_path_and_trailing_slash(tmp_path):
    assert Storage(url=str(tmp_path) + "/").url == f"file://{tmp_path}"
    assert Storage(url="s3://bucket/prefix/").url == "s3://bucket/prefix"
    with pytest.raises(TraitError, match="absolute path"):
        Storage(url="relative/folder")


def test_local_repository(repo: Path):
    storage = Storage(url=f"file://{repo}")
    storage.check()
    assert list(storage.iter_dataset_dirs()) == [
        ("p1", "d1", f"{repo}/p1/d1"),
        ("p1", "d2", f"{repo}/p1/d2"),
        ("p2", "d3", f"{repo}/p2/d3"),
    ]
    assert storage.dataset_url("p1", "d1") == f"file://{repo}/p1/d1"
    files = storage.list_files(storage.dataset_path("p1", "d1"))
    assert set(files) == {"dataset.json", "raw/image_001.tif"}
    assert files["raw/image_001.tif"] == len(b"II*\x00fake tiff")
    assert storage.read_bytes(f"{repo}/p1/proposal.json", 1000).startswith(b"{")


def test_hidden_and_invalid_folders_are_skipped(repo: Path):
    (repo / ".trash" / "d9").mkdir(parents=True)
    (repo / "p1" / ".partial").mkdir()
    (repo / "p1" / "bad name").mkdir()
    (repo / "README.txt").write_text("not a proposal")
    storage = Storage(url=f"file://{repo}")
    assert [(p, d) for p, d, _ in storage.iter_dataset_dirs()] == [("p1", "d1"), ("p1", "d2"), ("p2", "d3")]


def test_invalid_names_are_refused(repo: Path):
    storage = Storage(url=f"file://{repo}")
    with pytest.raises(StorageError, match="invalid dataset name"):
        storage.dataset_url("p1", "../p2")


def test_read_bytes_limit_and_missing_file(repo: Path):
    storage = Storage(url=f"file://{repo}")
    with pytest.raises(StorageError, match="larger than the limit of 10 bytes"):
        storage.read_bytes(f"{repo}/p1/d1/dataset.json", 10)
    with pytest.raises(StorageError, match="not found"):
        storage.read_bytes(f"{repo}/p1/d1/nothing.json", 10)


def test_missing_root_says_what_to_do(tmp_path: Path):
    storage = Storage(url=f"file://{tmp_path}/nowhere")
    with pytest.raises(StorageError) as info:
        storage.check()
    assert str(info.value) == (
        f"repository root file://{tmp_path}/nowhere does not exist: create it or set c.Storage.url"
    )
    with pytest.raises(StorageError, match="does not exist"):
        list(storage.iter_dataset_dirs())


def test_s3_timeouts_are_merged_unless_given():
    storage = Storage(url="s3://bucket", options={"endpoint_url": "http://x"})
    assert storage.storage_options["config_kwargs"] == S3_DEFAULT_CONFIG_KWARGS
    assert "config_kwargs" not in storage.options  # the deployer's dict is not changed
    mine = {"connect_timeout": 30}
    storage = Storage(url="s3://bucket", options={"config_kwargs": mine})
    assert storage.storage_options["config_kwargs"] == mine
    assert "config_kwargs" not in Storage(url="file:///tmp").storage_options


def test_unreachable_s3_endpoint_fails_fast_naming_it():
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = Storage(url="s3://dass-test/repo", options={"endpoint_url": endpoint, "key": "k", "secret": "s"})
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        storage.check()
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert message.startswith(f"cannot reach the storage endpoint {endpoint}: ")
    assert "check c.Storage.options['endpoint_url'] and that the server is running" in message
    with pytest.raises(StorageError, match="cannot reach the storage endpoint"):
        list(storage.iter_dataset_dirs())


@pytest.mark.integration
def test_s3_repository(s3_repo: str, s3_options):
    storage = Storage(url=s3_repo, options=s3_options)
    storage.check()
    assert storage.protocol == "s3"
    bucket_prefix = s3_repo[len("s3://") :]
    assert storage.root == bucket_prefix
    assert [(p, d) for p, d, _ in storage.iter_dataset_dirs()] == [("p1", "d1"), ("p1", "d2"), ("p2", "d3")]
    assert storage.dataset_url("p1", "d1") == f"{s3_repo}/p1/d1"
    files = storage.list_files(storage.dataset_path("p1", "d1"))
    assert set(files) == {"dataset.json", "raw/image_001.tif"}
    assert storage.read_bytes(f"{bucket_prefix}/p1/proposal.json", 1000).startswith(b"{")


@pytest.mark.integration
def test_s3_missing_bucket_and_prefix(s3_options):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        Storage(url="s3://no-such-bucket/repo", options=s3_options).check()
    with pytest.raises(StorageError, match="holds nothing under this prefix"):
        Storage(url="s3://dass-test/no-such-prefix", options=s3_options).check()

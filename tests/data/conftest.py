"""Fixtures of the dass.data tests: a file:// repository builder and a real S3 (moto) server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MOTO_SERVER = Path(sys.executable).with_name("moto_server")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (closed again before returning)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dataset_json(title: str = "Grain boundaries", **overrides: Any) -> dict[str, Any]:
    """A valid dataset.json document; keyword arguments replace or add top-level fields."""
    doc: dict[str, Any] = {
        "schema": "dass.dataset/1",
        "title": title,
        "creators": [{"name": "Ada Lovelace", "affiliation": "Foundry", "orcid": "0000-0002-1825-0097"}],
        "dates": {"created": "2024-05-01"},
        "licence": "CC-BY-4.0",
        "keywords": ["grain", "boundary"],
        "description": "SEM images of grain boundaries",
        "instrument": "Zeiss Supra 40",
        "technique": "SEM",
        "stacks": ["sem"],
    }
    doc.update(overrides)
    return doc


def write_dataset(
    root: Path, proposal: str, name: str, doc: dict[str, Any] | str | None, files: dict[str, bytes] | None = None
) -> Path:
    """Create ``root/proposal/name`` with a dataset.json (dict, raw text, or None for none)."""
    folder = root / proposal / name
    folder.mkdir(parents=True, exist_ok=True)
    if doc is not None:
        text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
        (folder / "dataset.json").write_text(text, encoding="utf-8")
    for rel, data in (files if files is not None else {"raw/image_001.tif": b"II*\x00fake tiff"}).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small file:// repository: p1/d1 (group p1), p1/d2 (public), p2/d3 (embargoed public)."""
    root = tmp_path / "repository"
    write_dataset(root, "p1", "d1", dataset_json("Grain boundaries in steel"))
    write_dataset(
        root,
        "p1",
        "d2",
        dataset_json(
            "Strain map",
            technique="KMAP",
            instrument="ID01",
            stacks=["kmap"],
            keywords=["strain", "Bragg"],
            access={"public": True},
        ),
    )
    write_dataset(
        root,
        "p2",
        "d3",
        dataset_json(
            "Tunnelling spectra",
            technique="STM",
            instrument="Omicron",
            stacks=["stm"],
            keywords=["graphene"],
            description="dI/dV maps",
            access={"public": True, "embargo_until": "2030-01-01"},
        ),
    )
    (root / "p1" / "proposal.json").write_text(json.dumps({"title": "Steel", "pi": "Ada"}))
    return root


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {url} within {timeout} s")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 endpoint (moto in server mode on loopback) with the bucket ``dass-test``."""
    if not MOTO_SERVER.exists() and shutil.which("moto_server") is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    exe = str(MOTO_SERVER) if MOTO_SERVER.exists() else shutil.which("moto_server")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        _wait_for(endpoint + "/", proc)
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="dass-test")
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_options(s3_endpoint: str) -> dict[str, Any]:
    """Storage options for the moto endpoint."""
    return {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}


@pytest.fixture
def s3_repo(repo: Path, s3_options: dict[str, Any], request: pytest.FixtureRequest) -> str:
    """The ``repo`` fixture uploaded to a fresh prefix of the moto bucket; returns its URL."""
    import fsspec

    prefix = "repo-" + request.node.name.replace("[", "-").replace("]", "")
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3_options)
    for path in sorted(repo.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"dass-test/{prefix}/{path.relative_to(repo).as_posix()}", path.read_bytes())
    return f"s3://dass-test/{prefix}"


@pytest.fixture
def make_doc() -> Callable[..., dict[str, Any]]:
    """The ``dataset_json`` builder: ``make_doc("Title", access={...})``."""
    return dataset_json


@pytest.fixture
def make_dataset() -> Callable[..., Path]:
    """The ``write_dataset`` builder: ``make_dataset(root, "p1", "d1", doc, files)``."""
    return write_dataset

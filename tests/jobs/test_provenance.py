"""The RO-Crate of a job run (built by value) and its verification against stored files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import fsspec
import pytest
from rocrate.rocrate import ROCrate

from dass.jobs.provenance import build_crate, package_versions, verify, verify_results


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SPEC = {
    "job_id": "j1",
    "owner": "alice",
    "notebook": "input.ipynb",
    "notebook_source": "stack:sem/service/classify.ipynb",
    "parameters": {"n": 3, "scale": 1.5, "label": "x", "classes": ["a", "b"]},
    "datasets": [{"id": "p1/d1", "proposal": "p1", "name": "d1", "title": "Grains", "metadata": {}}],
    "storage": {"url": "memory://repo", "options": {}},
    "results_url": "memory://repo/results/job-j1",
    "derived": {
        "proposal": "results",
        "name": "job-j1",
        "title": "Classification of grains",
        "access_groups": [],
        "access_users": ["alice"],
        "licence": "CC-BY-4.0",
    },
    "stack": "sem",
    "size": {"name": "small", "cpu": 1, "mem_gib": 2},
    "kernel_name": "python3",
    "cell_timeout": 600,
    "created": "2026-05-01T10:00:00+00:00",
}
INPUT_FILES = {"raw/image 001.tif": b"II*\x00tiff", "dataset.json": b"{}"}
OUTPUT_FILES = {"executed.ipynb": b'{"cells": []}', "output/result.json": b'{"n": 3}', "job.log": b"log\n"}
NOTEBOOK = b'{"cells": [], "nbformat": 4}'


@pytest.fixture
def stored(request: pytest.FixtureRequest) -> tuple[Any, str, dict[str, Any]]:
    """Inputs and outputs in a fresh memory filesystem, and the crate describing them."""
    fs = fsspec.filesystem("memory")
    base = f"/{request.node.name}"
    for rel, data in INPUT_FILES.items():
        fs.pipe_file(f"{base}/repo/p1/d1/{rel}", data)
    for rel, data in {**OUTPUT_FILES, "input.ipynb": NOTEBOOK}.items():
        fs.pipe_file(f"{base}/repo/results/job-j1/{rel}", data)
    spec = dict(SPEC, results_url=f"memory://{base}/repo/results/job-j1")
    crate = build_crate(
        spec=spec,
        started="2026-05-01T10:00:05+00:00",
        finished="2026-05-01T10:01:00+00:00",
        status="COMPLETED",
        reason=None,
        notebook_sha256="sha256:" + _sha(NOTEBOOK),
        inputs=[
            {
                "id": "p1/d1",
                "url": f"memory://{base}/repo/p1/d1",
                "files": [{"path": p, "sha256": _sha(d), "size": len(d)} for p, d in INPUT_FILES.items()],
            }
        ],
        outputs=[{"path": p, "sha256": _sha(d), "size": len(d)} for p, d in OUTPUT_FILES.items()],
        packages={"python": "3.11.9", "papermill": "2.7.0", "numpy": "2.0.0"},
    )
    return fs, base, crate


def _by_id(crate: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["@id"]: e for e in crate["@graph"]}


def _memory_factory(url: str) -> tuple[Any, str]:
    return fsspec.core.url_to_fs(url)


def test_crate_records_the_run(stored):
    _, base, crate = stored
    graph = _by_id(crate)
    assert crate["@context"].startswith("https://w3id.org/ro/crate/")
    root = graph["./"]
    assert root["name"] == "Classification of grains"
    assert root["url"] == f"memory://{base}/repo/results/job-j1"
    assert root["license"] == {"@id": "https://spdx.org/licenses/CC-BY-4.0"}

    (action,) = [e for e in crate["@graph"] if e["@type"] == "CreateAction"]
    assert root["mentions"] == [{"@id": action["@id"]}]
    assert action["startTime"] == "2026-05-01T10:00:05+00:00"
    assert action["endTime"] == "2026-05-01T10:01:00+00:00"
    assert action["actionStatus"] == {"@id": "http://schema.org/CompletedActionStatus"}
    assert "error" not in action

    notebook = graph[action["instrument"]["@id"]]
    assert notebook["@id"] == "input.ipynb" and "File" in notebook["@type"]
    assert notebook["sha256"] == _sha(NOTEBOOK)
    assert notebook["identifier"] == "stack:sem/service/classify.ipynb"
    assert graph[action["agent"]["@id"]] == {"@id": "#person-alice", "@type": "Person", "name": "alice"}

    objects = [graph[o["@id"]] for o in action["object"]]
    (dataset,) = [o for o in objects if o["@type"] == "Dataset"]
    assert dataset["@id"] == f"memory://{base}/repo/p1/d1/"
    assert dataset["identifier"] == "p1/d1" and dataset["name"] == "Grains"
    parts = {graph[p["@id"]]["name"]: graph[p["@id"]] for p in dataset["hasPart"]}
    assert set(parts) == set(INPUT_FILES)
    assert parts["raw/image 001.tif"]["@id"] == f"memory://{base}/repo/p1/d1/raw/image%20001.tif"
    assert parts["raw/image 001.tif"]["sha256"] == _sha(INPUT_FILES["raw/image 001.tif"])
    params = {o["name"]: o["value"] for o in objects if o["@type"] == "PropertyValue"}
    assert params == {"n": 3, "scale": 1.5, "label": "x", "classes": '["a", "b"]'}

    results = {graph[r["@id"]]["name"]: graph[r["@id"]] for r in action["result"]}
    assert set(results) == set(OUTPUT_FILES)
    assert results["output/result.json"]["sha256"] == _sha(OUTPUT_FILES["output/result.json"])
    assert results["output/result.json"]["contentSize"] == len(OUTPUT_FILES["output/result.json"])
    assert {"@id": "output/result.json"} in root["hasPart"]

    stack = graph[notebook["softwareRequirements"]["@id"]]
    assert stack["@type"] == "SoftwareApplication" and stack["identifier"] == "sem"
    versions = {graph[s["@id"]]["name"]: graph[s["@id"]]["version"] for s in stack["softwareRequirements"]}
    assert versions == {"python": "3.11.9", "papermill": "2.7.0", "numpy": "2.0.0"}


def test_crate_is_read_back_by_rocrate(stored):
    _, _, crate = stored
    read = ROCrate(json.loads(json.dumps(crate)))
    (action,) = read.get_by_type("CreateAction")
    assert action["instrument"].id == "input.ipynb"
    assert read.get("output/result.json") is not None


def test_failed_run_records_the_error():
    crate = build_crate(
        spec=SPEC,
        started="2026-05-01T10:00:05+00:00",
        finished="2026-05-01T10:01:00+00:00",
        status="FAILED",
        reason="cell 2 raised ValueError: bad value",
        notebook_sha256=_sha(NOTEBOOK),
        inputs=[],
        outputs=[],
        packages={},
    )
    (action,) = [e for e in crate["@graph"] if e["@type"] == "CreateAction"]
    assert action["actionStatus"] == {"@id": "http://schema.org/FailedActionStatus"}
    assert action["error"] == "cell 2 raised ValueError: bad value"
    with pytest.raises(ValueError, match="COMPLETED or FAILED"):
        build_crate(
            spec=SPEC, started="", finished="", status="STOPPED", reason=None, notebook_sha256="",
            inputs=[], outputs=[], packages={},
        )


def test_package_versions():
    versions = package_versions()
    for name in ("python", "dass", "papermill", "nbclient", "ipykernel", "numpy"):
        assert versions.get(name), name
    assert "no-such-package" not in package_versions(["no-such-package"])


def test_verify_clean_tampered_missing(stored):
    fs, base, crate = stored
    assert verify(crate, _memory_factory) == []

    fs.pipe_file(f"{base}/repo/results/job-j1/output/result.json", b'{"n": 4}')
    fs.pipe_file(f"{base}/repo/p1/d1/raw/image 001.tif", b"changed")
    fs.rm(f"{base}/repo/results/job-j1/job.log")
    problems = verify(crate, _memory_factory)
    assert len(problems) == 3, problems
    changed = next(p for p in problems if "output/result.json" in p)
    assert "mismatch" in changed and _sha(OUTPUT_FILES["output/result.json"]) in changed and _sha(b'{"n": 4}') in changed
    changed_input = next(p for p in problems if "image 001.tif" in p)
    assert changed_input.startswith("input memory://") and _sha(b"changed") in changed_input
    assert any("job.log" in p and "missing" in p for p in problems)


def test_verify_resolves_outputs_against_a_moved_folder(stored):
    fs, base, crate = stored
    fs.copy(f"{base}/repo/results/job-j1", f"{base}/moved", recursive=True)
    fs.rm(f"{base}/repo/results/job-j1", recursive=True)
    assert len(verify(crate, _memory_factory)) == 4  # 3 outputs + the notebook, all gone
    assert verify(crate, _memory_factory, base_url=f"memory://{base}/moved") == []


def _write_results(folder: Path, crate: dict[str, Any], files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    crate_bytes = json.dumps(crate).encode()
    (folder / "ro-crate-metadata.json").write_bytes(crate_bytes)
    checksums = {rel: f"sha256:{_sha(d)}" for rel, d in {**files, "ro-crate-metadata.json": crate_bytes}.items()}
    (folder / "dataset.json").write_text(json.dumps({"checksums": checksums}))


def test_verify_results_on_a_local_folder(tmp_path):
    inputs = tmp_path / "repo" / "p1" / "d1"
    inputs.mkdir(parents=True)
    (inputs / "a.txt").write_bytes(b"input")
    results = tmp_path / "repo" / "results" / "job-j1"
    files = {"input.ipynb": NOTEBOOK, **OUTPUT_FILES}
    crate = build_crate(
        spec=dict(SPEC, results_url=f"file://{results}"),
        started="2026-05-01T10:00:05+00:00",
        finished="2026-05-01T10:01:00+00:00",
        status="COMPLETED",
        reason=None,
        notebook_sha256=_sha(NOTEBOOK),
        inputs=[{"id": "p1/d1", "url": f"file://{inputs}", "files": [{"path": "a.txt", "sha256": _sha(b"input"), "size": 5}]}],
        outputs=[{"path": p, "sha256": _sha(d), "size": len(d)} for p, d in OUTPUT_FILES.items()],
        packages=package_versions(),
    )
    _write_results(results, crate, files)
    report = verify_results(f"file://{results}")
    assert report.ok and report.problems == []
    assert report.checked == len(files) + 1 + 1  # results files, the crate, one input
    assert report.to_json()["ok"] is True

    # editing the crate itself is caught by dataset.json's checksum of it
    doc = json.loads((results / "ro-crate-metadata.json").read_text())
    (results / "ro-crate-metadata.json").write_text(json.dumps(doc, indent=1))
    report = verify_results(f"file://{results}")
    assert not report.ok
    assert [p for p in report.problems if p.startswith("ro-crate-metadata.json")]


def test_verify_results_without_a_crate(tmp_path):
    report = verify_results(f"file://{tmp_path}")
    assert not report.ok and report.checked == 0
    assert "ro-crate-metadata.json: missing" in report.problems[0]

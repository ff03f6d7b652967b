"""The job runner, run as the executor runs it: a real process, papermill and an ipykernel.

Repositories are the synthetic demo repository, in a local folder and on a real S3 endpoint
(moto server), behind the data gateway of a real dass service: the runner reads its inputs
and writes its results there with its job token, and the tests check what reached storage.
Notebooks: ``notebooks/runner_*.ipynb``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
import time
from pathlib import Path
from typing import Any

import fsspec
import nbformat
import psutil
import pytest

from dass.data.metadata import parse_metadata
from dass.jobs.provenance import verify_results
from dass.jobs.runner import build_derived_metadata, describe_failure, load_result

from .conftest import (
    OWNER, JobGateway, read_log, run_runner, runner_spec, start_runner, stop_tree, wait_for_log,
)
from .rocrate_check import validate_crate

DATASET = "p-2026-001/sem-nanowires"
PARAMS = {"n": 5, "scale": 2.5, "label": "hello", "input_dataset": DATASET}


def _results(gateway: JobGateway, result: dict[str, Any]) -> tuple[Any, str]:
    """``(fs, root)`` of the job's results in repository storage: ``results/job-<id>``, the
    dataset that ``result["results_url"]`` (``dass://results/job-<id>``) names."""
    job_id = result["results_url"].removeprefix("dass://results/job-")
    assert result["results_url"] == f"dass://results/job-{job_id}", result["results_url"]
    return gateway.results(job_id)


def _check_outputs(gateway: JobGateway, result: dict[str, Any]) -> dict[str, bytes]:
    """Every output listed in result.json is in the results folder with its sha256 and size."""
    import hashlib

    fs, root = _results(gateway, result)
    files = {}
    for out in result["outputs"]:
        data = fs.cat_file(f"{root}/{out['path']}")
        assert hashlib.sha256(data).hexdigest() == out["sha256"], out["path"]
        assert len(data) == out["size"], out["path"]
        files[out["path"]] = data
    return files


def _check_derived(files: dict[str, bytes], result: dict[str, Any], status: str) -> Any:
    md = parse_metadata(files["dataset.json"], path="dataset.json", proposal="results")
    assert OWNER in md.access_users
    assert md.public is False
    assert md.domain["job"]["status"] == status
    assert md.domain["job"]["owner"] == OWNER
    # checksums name every file written before dataset.json, with the hashes of result.json
    listed = {o["path"]: o["sha256"] for o in result["outputs"] if o["path"] != "dataset.json"}
    assert md.checksums == {p: f"sha256:{h}" for p, h in listed.items()}
    return md


# ---------------------------------------------------------------------------------------------
# a completed job on a file:// repository


@pytest.fixture(scope="module")
def completed_job(runner_repo: Path, runner_gateway: JobGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("job-completed")
    spec = runner_spec(
        workdir,
        notebook="runner_params.ipynb",
        gateway=runner_gateway,
        datasets=[DATASET],
        parameters=PARAMS,
    )
    rc, result, seconds = run_runner(workdir)
    assert rc == 0, read_log(workdir)
    return {"workdir": workdir, "spec": spec, "result": result, "seconds": seconds, "repo": runner_repo,
            "gateway": runner_gateway}


def test_completed_job_result_and_log(completed_job):
    workdir, result = completed_job["workdir"], completed_job["result"]
    assert result["status"] == "COMPLETED", read_log(workdir)
    assert result["reason"] is None and result["failed_cell"] is None
    assert result["results_url"] == f"dass://results/job-{completed_job['spec']['job_id']}"
    # the service kept the result the runner handed in (PUT api/jobs/<id>/result)
    fs, root = completed_job["gateway"].results(completed_job["spec"]["job_id"])
    stored = json.loads(fs.cat_file(f"{root.rsplit('/', 1)[0]}/.runs/job-{completed_job['spec']['job_id']}.json"))
    assert stored == result
    assert dt.datetime.fromisoformat(result["started"]) <= dt.datetime.fromisoformat(result["finished"])
    runner = json.loads((workdir / "runner.json").read_text())
    assert isinstance(runner["pid"], int) and runner["started"] == result["started"]

    log = (workdir / "job.log").read_text()
    assert "cell 1/4" in log and "cell 4/4" in log  # parameters, injected parameters, 2 cells
    assert "wrote ['figures', 'result.json']" in log  # the notebook's stdout
    assert "Executing Cell" not in log  # papermill's banners are replaced by cell n/N

    executed = nbformat.read(workdir / "executed.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'label = "hello"' in injected[0].source
    assert (workdir / "executed.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_completed_job_outputs(completed_job):
    result = completed_job["result"]
    files = _check_outputs(completed_job["gateway"], result)
    paths = [o["path"] for o in result["outputs"]]
    assert paths[:3] == ["input.ipynb", "executed.ipynb", "executed.html"]
    assert paths[-3:] == ["job.log", "ro-crate-metadata.json", "dataset.json"]  # dataset.json last
    assert {"output/result.json", "output/figures/bars.png"} <= set(paths)

    produced = json.loads(files["output/result.json"])
    assert (produced["n"], produced["scale"], produced["label"]) == (5, 2.5, "hello")
    assert produced["dataset"] == DATASET
    assert produced["job_id"] == completed_job["spec"]["job_id"]
    assert produced["cwd"] == str(completed_job["workdir"])
    # file:// storage: the notebook read the read-only view the service made (hard links, no
    # copy), which the runner leaves alone (the service removes it when the job ends)
    view = completed_job["workdir"] / "datasets" / DATASET
    assert f"input {DATASET} (view made by the service)" in (completed_job["workdir"] / "job.log").read_text()
    assert view.is_dir() and not view.stat().st_mode & 0o222
    assert "dataset.json" in produced["entries"] and "dataset.json" in produced["mounted"]

    from PIL import Image

    with Image.open(io.BytesIO(files["output/figures/bars.png"])) as img:
        assert img.size == (64, 32)
        assert img.getpixel((10, 10)) == 200  # 80 * scale


def test_completed_job_derived_dataset(completed_job):
    result, spec = completed_job["result"], completed_job["spec"]
    files = _check_outputs(completed_job["gateway"], result)
    md = _check_derived(files, result, "COMPLETED")
    assert md.title == spec["derived"]["title"]
    assert md.stacks == ["sem"] and md.keywords == ["dass job", "sem"]
    assert md.domain["derived_from"] == [DATASET]
    assert md.domain["job"]["parameters"] == PARAMS
    assert md.synthetic is True  # derived from synthetic demo data
    assert md.created == dt.date.fromisoformat(result["finished"][:10])


def test_completed_job_crate_verifies_and_tampering_is_reported(completed_job):
    result, repo, gateway = completed_job["result"], completed_job["repo"], completed_job["gateway"]
    url = gateway.results_url(completed_job["spec"]["job_id"])  # what the manager records

    def verify():  # as the service verifies: the crate's dass:// inputs read from its repository
        return verify_results(url, repository_url=gateway.storage_url)

    report = verify()
    assert report.ok, report.problems
    # 8 results files (dataset.json's own checksum is not recorded) + 5 input files
    inputs = len(list((repo / DATASET).iterdir()))
    assert report.checked == len(result["outputs"]) - 1 + inputs

    crate = json.loads(Path(url.removeprefix("file://"), "ro-crate-metadata.json").read_text())
    action = next(e for e in crate["@graph"] if e.get("@type") == "CreateAction")
    assert action["actionStatus"]["@id"].endswith("CompletedActionStatus")

    output = Path(url.removeprefix("file://"), "output", "result.json")
    original = output.read_bytes()
    output.write_bytes(original.replace(b'"n": 5', b'"n": 6'))
    try:
        report = verify()
        assert not report.ok
        assert len(report.problems) == 1
        assert "output/result.json" in report.problems[0] and "mismatch" in report.problems[0]
    finally:
        output.write_bytes(original)

    source = repo / DATASET / "nanowires_001.png"
    original = source.read_bytes()
    source.chmod(0o644)
    source.write_bytes(original + b"\0")
    try:
        report = verify()
        assert [p for p in report.problems if "nanowires_001.png" in p and "input" in p], report.problems
        assert len(report.problems) == 1
    finally:
        source.write_bytes(original)
    assert verify().ok


# ---------------------------------------------------------------------------------------------
# the same job on S3


def test_completed_job_on_s3(runner_s3_gateway, tmp_path):
    gateway = runner_s3_gateway
    options = gateway.storage_options
    workdir = tmp_path / "job"
    spec = runner_spec(
        workdir,
        notebook="runner_params.ipynb",
        gateway=gateway,
        datasets=[DATASET],
        parameters=PARAMS,
    )
    rc, result, _ = run_runner(workdir)
    assert rc == 0 and result["status"] == "COMPLETED", read_log(workdir)
    assert result["results_url"] == f"dass://results/job-{spec['job_id']}"
    files = _check_outputs(gateway, result)
    _check_derived(files, result, "COMPLETED")
    produced = json.loads(files["output/result.json"])
    assert produced["label"] == "hello" and "nanowires_001.png" in produced["mounted"]
    # the dataset was fetched into the job folder through the gateway, and removed at the end
    assert f"input {DATASET} (fetched through the data gateway)" in (workdir / "job.log").read_text()
    assert list((workdir / "datasets").iterdir()) == []

    url = gateway.results_url(spec["job_id"])
    report = verify_results(url, options, repository_url=gateway.storage_url)
    assert report.ok, report.problems

    fs, root = gateway.results(spec["job_id"])
    fs.pipe_file(f"{root}/output/figures/bars.png", b"not a png")
    report = verify_results(url, options, repository_url=gateway.storage_url)
    assert not report.ok and "output/figures/bars.png" in report.problems[0]


# ---------------------------------------------------------------------------------------------
# failures


def test_completed_job_crate_passes_the_reference_validator(completed_job, tmp_path):
    """roc-validator, profile ro-crate-1.3, every REQUIRED check (software with url and version)."""
    fs, root = _results(completed_job["gateway"], completed_job["result"])
    assert "file" in fs.protocol
    report = validate_crate(Path(root), tmp_path)
    assert report == {"passed": True, "issues": []}


def test_the_crate_check_catches_a_crate_without_software_urls(completed_job, tmp_path):
    """The validator as run here does fail a crate missing what the profile requires."""
    import shutil

    _, root = _results(completed_job["gateway"], completed_job["result"])
    copy = tmp_path / "crate"
    shutil.copytree(root, copy)
    crate = json.loads((copy / "ro-crate-metadata.json").read_text())
    for entity in crate["@graph"]:
        if entity.get("@type") == "SoftwareApplication":
            entity.pop("url", None)
    (copy / "ro-crate-metadata.json").write_text(json.dumps(crate))
    report = validate_crate(copy, tmp_path)
    assert not report["passed"] and any("MUST have a `url`" in i for i in report["issues"])


def test_cell_raising_fails_the_job_and_keeps_the_results(runner_gateway, tmp_path):
    workdir = tmp_path / "job"
    runner_spec(workdir, notebook="runner_raise.ipynb", gateway=runner_gateway)
    rc, result, _ = run_runner(workdir)
    assert rc == 1, read_log(workdir)
    assert result["status"] == "FAILED"
    assert result["reason"] == "cell 2 raised ValueError: bad value"
    assert result["failed_cell"] == 2
    assert "ValueError: bad value" in (workdir / "job.log").read_text()  # with its traceback

    files = _check_outputs(runner_gateway, result)
    assert {"executed.ipynb", "executed.html", "job.log", "ro-crate-metadata.json", "dataset.json"} <= set(files)
    executed = nbformat.reads(files["executed.ipynb"].decode(), as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))
    md = _check_derived(files, result, "FAILED")
    assert "cell 2 raised ValueError: bad value" in md.description
    crate = json.loads(files["ro-crate-metadata.json"])
    action = next(e for e in crate["@graph"] if e.get("@type") == "CreateAction")
    assert action["actionStatus"]["@id"].endswith("FailedActionStatus")
    assert action["error"] == result["reason"]
    url = runner_gateway.results_url(result["results_url"].removeprefix("dass://results/job-"))
    assert verify_results(url, repository_url=runner_gateway.storage_url).ok
    assert validate_crate(Path(_results(runner_gateway, result)[1]), tmp_path) == {"passed": True, "issues": []}


def test_killed_kernel_ends_the_job_promptly(runner_gateway, tmp_path):
    workdir = tmp_path / "job"
    runner_spec(workdir, notebook="runner_sleep.ipynb", gateway=runner_gateway)
    proc = start_runner(workdir)
    try:
        wait_for_log(workdir, "cell 2/3")
        time.sleep(0.3)  # inside time.sleep(60)
        kernels = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if any("ipykernel" in part for part in p.cmdline())
        ]
        assert len(kernels) == 1, [p.cmdline() for p in kernels]
        killed = time.monotonic()
        kernels[0].kill()
        rc = proc.wait(30)
        assert time.monotonic() - killed < 30
    finally:
        if proc.poll() is None:
            stop_tree(proc)
    result = load_result(workdir)
    assert rc == 1 and result["status"] == "FAILED", read_log(workdir)
    assert result["reason"] == "the kernel died while running cell 2 (out of memory or killed)"
    assert result["failed_cell"] == 2
    assert result["results_url"]  # the partial notebook and the log were kept
    files = _check_outputs(runner_gateway, result)
    assert "about to sleep" in files["job.log"].decode()


def test_cell_timeout(runner_gateway, tmp_path):
    workdir = tmp_path / "job"
    runner_spec(workdir, notebook="runner_sleep.ipynb", gateway=runner_gateway, cell_timeout=2)
    rc, result, seconds = run_runner(workdir, timeout=60)
    assert rc == 1, read_log(workdir)
    assert result["reason"] == "cell 2 timed out after 2 s"
    assert result["failed_cell"] == 2
    assert seconds < 30
    _check_outputs(runner_gateway, result)


def test_sigterm_stops_the_runner_and_its_kernel(runner_gateway, tmp_path):
    workdir = tmp_path / "job"
    runner_spec(workdir, notebook="runner_sleep.ipynb", gateway=runner_gateway)
    proc = start_runner(workdir)
    try:
        wait_for_log(workdir, "cell 2/3")
        kernels = psutil.Process(proc.pid).children(recursive=True)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        assert time.monotonic() - sent < 10
    finally:
        if proc.poll() is None:
            stop_tree(proc)
    assert rc == 128 + signal.SIGTERM
    gone, alive = psutil.wait_procs(kernels, timeout=5)
    assert not alive
    assert load_result(workdir) is None  # the service records STOPPED itself
    assert "stopped by SIGTERM" in (workdir / "job.log").read_text()


def test_missing_dataset_fails_with_the_storage_message(runner_gateway, tmp_path):
    workdir = tmp_path / "job"
    runner_spec(
        workdir,
        notebook="runner_raise.ipynb",
        gateway=runner_gateway,
        datasets=["p-2026-001/no-such-dataset"],
    )
    rc, result, _ = run_runner(workdir)
    assert rc == 1
    assert result["reason"].startswith(
        "reading dataset p-2026-001/no-such-dataset through the data gateway failed: "), result["reason"]
    assert "not found" in result["reason"]  # the gateway's own message
    assert result["failed_cell"] is None
    assert not (workdir / "executed.ipynb").exists()
    files = _check_outputs(runner_gateway, result)  # the log and the notebook are still saved
    assert set(files) == {"input.ipynb", "job.log", "ro-crate-metadata.json", "dataset.json"}


def test_unwritable_results_location_fails_the_job(runner_gateway, tmp_path):
    workdir = tmp_path / "job"
    spec = runner_spec(workdir, notebook="runner_raise.ipynb", gateway=runner_gateway)
    # a file where the results folder should be: the gateway cannot write there
    blocker = Path(runner_gateway.results(spec["job_id"])[1])
    blocker.parent.mkdir(exist_ok=True)
    blocker.write_text("a file where the results folder should be")
    (workdir / "input.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])))
    try:
        rc, result, _ = run_runner(workdir)
    finally:
        blocker.unlink()
    assert rc == 1 and result["status"] == "FAILED", read_log(workdir)
    assert result["reason"].startswith("writing input.ipynb of the results failed: "), result["reason"]
    assert str(runner_gateway.storage_url.removeprefix("file://")) not in result["reason"]
    assert result["results_url"] is None


def test_no_spec_is_a_usage_error(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dass.jobs.runner", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no spec.json" in proc.stdout


# ---------------------------------------------------------------------------------------------
# pure parts


def test_describe_failure():
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from dass.data.errors import StorageError

    err = PapermillExecutionError(3, 4, "x", "KeyError", "'a'\nsecond line", [])
    assert describe_failure(err, cell=4) == "cell 4 raised KeyError: 'a' second line"
    assert describe_failure(PapermillExecutionError(0, 1, "", "SystemExit", "", []), cell=1) == "cell 1 raised SystemExit"
    assert describe_failure(DeadKernelError("Kernel died"), cell=4) == (
        "the kernel died while running cell 4 (out of memory or killed)"
    )
    assert describe_failure(DeadKernelError("x")).startswith("the kernel died before running any cell")
    assert describe_failure(CellTimeoutError("Cell execution timed out"), cell=4, cell_timeout=600) == (
        "cell 4 timed out after 600 s"
    )
    assert describe_failure(StorageError("bucket 'x' does not exist")) == "bucket 'x' does not exist"
    assert describe_failure(KeyError("job_id")) == "internal error: KeyError: 'job_id'"
    long = describe_failure(ValueError("x" * 2000))
    assert len(long) == 500 and "\n" not in long


def test_build_derived_metadata_is_valid_and_pure():
    spec = {
        "job_id": "abc123",
        "owner": "bob",
        "notebook_source": "stack:sem/service/classify.ipynb",
        "parameters": {"threshold": 0.5},
        "datasets": [{"id": "p1/d1", "proposal": "p1", "name": "d1", "metadata": {"title": "D1"}}],
        "derived": {
            "proposal": "results",
            "name": "job-abc123",
            "title": "Classification of d1",
            "access_groups": ["p1"],
            "access_users": ["bob"],
            "licence": "CC-BY-4.0",
        },
        "stack": "sem",
    }
    frozen = json.dumps(spec, sort_keys=True)
    outputs = [{"path": "output/a.csv", "sha256": "a" * 64, "size": 3}]
    doc = build_derived_metadata(spec, outputs, dt.date(2026, 5, 1), status="FAILED", reason="cell 2 raised X: y")
    assert json.dumps(spec, sort_keys=True) == frozen
    md = parse_metadata(json.dumps(doc), path="dataset.json", proposal="results")
    assert md.created == dt.date(2026, 5, 1)
    assert md.access_groups == ["p1"] and md.access_users == ["bob"] and not md.public
    assert md.checksums == {"output/a.csv": "sha256:" + "a" * 64}
    assert md.technique is None and md.stacks == ["sem"]
    assert md.domain == {
        "job": {
            "id": "abc123",
            "owner": "bob",
            "notebook_source": "stack:sem/service/classify.ipynb",
            "parameters": {"threshold": 0.5},
            "status": "FAILED",
        },
        "derived_from": ["p1/d1"],
    }
    assert "stack:sem/service/classify.ipynb" in md.description and "p1/d1" in md.description
    assert "cell 2 raised X: y" in md.description
    assert md.synthetic is False
    # an element of a parameter sweep says which sweep, and its place in it
    doc = build_derived_metadata({**spec, "sweep": {"id": "s" * 32, "index": 2}}, outputs, dt.date(2026, 5, 1),
                                 status="COMPLETED")
    md = parse_metadata(json.dumps(doc), path="dataset.json", proposal="results")
    assert md.domain["job"]["sweep"] == {"id": "s" * 32, "index": 2}


def test_load_result(tmp_path):
    assert load_result(tmp_path) is None
    (tmp_path / "result.json").write_text("{not json")
    assert load_result(tmp_path) is None
    (tmp_path / "result.json").write_text('{"status": "COMPLETED"}')
    assert load_result(tmp_path) == {"status": "COMPLETED"}


def test_log_and_reason_hide_internal_locations(runner_repo, runner_gateway, tmp_path):
    """What the job's owner reads (job.log, the reason) names the job folder and the
    repository, never where the platform keeps them."""
    workdir = tmp_path / "state" / "jobs" / "job"
    spec = runner_spec(workdir, notebook="runner_raise.ipynb", gateway=runner_gateway, datasets=[DATASET])
    code = (
        "import os, dass.data\n"
        "print('dataset at', os.path.realpath(dass.data.datasets()[0].path))\n"
        "print('output at', os.environ['DASS_OUTPUT_DIR'])\n"
        "open(os.path.join(os.environ['DASS_OUTPUT_DIR'], 'missing.txt'))\n"
    )
    (workdir / "input.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])))
    rc, result, _ = run_runner(workdir)
    assert rc == 1 and result["status"] == "FAILED"
    log = read_log(workdir)
    for secret in (str(workdir), str(runner_repo), str(tmp_path / "state")):
        assert secret not in log, secret
        assert secret not in result["reason"], secret
    assert "dataset at <job folder>/datasets/p-2026-001/sem-nanowires" in log
    assert "output at <job folder>/output" in log
    assert "'<job folder>/output/missing.txt'" in result["reason"], result["reason"]
    assert "1 datasets under datasets/" in log
    assert f"writing the results to dataset results/job-{spec['job_id']}" in log
    # the saved copy of the log in the repository is the same hidden text
    fs, root = runner_gateway.results(spec["job_id"])
    assert str(runner_repo) not in fs.cat_file(f"{root}/job.log").decode()


def test_hide_paths_replaces_the_longest_place_first():
    from dass.jobs.runner import hide_paths

    places = {"/srv/dass": "<state>", "/srv/dass/jobs/1": "<job folder>", "/": "never", "": "never"}
    assert hide_paths("/srv/dass/jobs/1/x and /srv/dass/y", places) == "<job folder>/x and <state>/y"
    assert hide_paths("nothing here", places) == "nothing here"


def test_processes_a_notebook_leaves_behind_end_with_the_job(runner_gateway, tmp_path):
    """A process started in a session of its own does not outlive the finished job."""
    workdir = tmp_path / "job"
    runner_spec(workdir, notebook="runner_orphan.ipynb", gateway=runner_gateway)
    rc, result, _ = run_runner(workdir)
    assert rc == 0, read_log(workdir)
    pid = int((workdir / "output" / "child.pid").read_text())
    try:
        proc = psutil.Process(pid)
        assert proc.status() == psutil.STATUS_ZOMBIE or not proc.is_running(), proc.cmdline()
    except psutil.NoSuchProcess:
        pass
    assert "process(es) the notebook left running" in read_log(workdir)


def test_a_kernel_that_exits_by_itself_is_not_called_killed(runner_gateway, tmp_path):
    workdir = tmp_path / "job"
    runner_spec(workdir, notebook="runner_exit.ipynb", gateway=runner_gateway)
    rc, result, _ = run_runner(workdir)
    assert rc == 1 and result["status"] == "FAILED", read_log(workdir)
    assert result["reason"].startswith("the kernel died while running cell 2 (the kernel process exited by itself with status 0")
    assert "out of memory" not in result["reason"]


def test_kernel_death_wording():
    from nbclient.exceptions import DeadKernelError

    dead = DeadKernelError("Kernel died")
    assert describe_failure(dead, cell=3) == "the kernel died while running cell 3 (out of memory or killed)"
    assert describe_failure(dead, cell=3, kernel_exit=-9) == "the kernel died while running cell 3 (out of memory or killed)"
    assert describe_failure(dead, cell=3, kernel_exit=-15) == "the kernel died while running cell 3 (killed by SIGTERM)"
    assert "exited by itself with status 1" in describe_failure(dead, cell=1, kernel_exit=1)

"""A job's token at the data gateway of a real dass service (issue 11, items 1-2).

The token the job manager makes for a job (``dassjob_…``, its grant in the service's database)
reads the job's declared inputs and writes the job's own results dataset, nothing else, on
``file://`` and ``s3://`` alike; it stops working within seconds of its grant being revoked;
and a running job's files, environment and arguments hold no storage credential.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest

from dass.data.dassfs import DassFileSystem
from dass.data.grants import JOB

from .conftest import JobGateway, read_log, runner_spec, start_runner, stop_tree, wait_for_log

DATASET = "p-2026-001/sem-nanowires"
#: a dataset of the job owner's own proposal that is not among the job's inputs
SAME_PROPOSAL = "p-2026-001/sem-particles"
#: a dataset of another proposal
OTHER_PROPOSAL = "p-2026-002/stm-au111-fast"
#: how long a revocation may take to reach the gateway (its grant cache is 2 s; the issue: 5 s)
REVOKE_DEADLINE = 5.0


@pytest.fixture(params=["file", "s3"])
def gateway(request) -> JobGateway:
    return request.getfixturevalue("runner_gateway" if request.param == "file" else "runner_s3_gateway")


def _job(gateway: JobGateway, inputs: list[str]) -> tuple[str, str]:
    job_id = uuid.uuid4().hex[:12]
    return job_id, gateway.grant(job_id, inputs)


def test_a_job_token_reads_its_inputs_and_nothing_else(gateway):
    svc = gateway.service
    job_id, token = _job(gateway, [DATASET])
    r = svc.get(f"api/data/{DATASET}/dataset.json", token)
    assert r.status_code == 200, r.text
    storage = gateway.storage()
    assert r.content == storage.fs.cat_file(f"{storage.dataset_path(*DATASET.split('/'))}/dataset.json")
    assert svc.get(f"api/data/{DATASET}", token, params={"op": "ls"}).status_code == 200
    for other in (SAME_PROPOSAL, OTHER_PROPOSAL):  # alice may see the first; her job may not
        for params in ({"op": "ls"}, {"op": "info"}):
            r = svc.get(f"api/data/{other}", token, params=params)
            assert r.status_code == 404 and r.json()["message"] == f"dataset {other} not found", (other, r.text)
        assert svc.get(f"api/data/{other}/dataset.json", token).status_code == 404
    # the same through dass://, as the runner and the notebook read
    fs = DassFileSystem(url=gateway.url, token=token, skip_instance_cache=True)
    assert json.loads(fs.cat_file(f"{DATASET}/dataset.json"))["title"]
    with pytest.raises(FileNotFoundError):
        fs.ls(SAME_PROPOSAL)
    # and no other route of the service takes a job's token
    assert svc.get("api/datasets", token).status_code == 403


def test_a_job_token_writes_its_results_and_nothing_else(gateway):
    svc = gateway.service
    job_id, token = _job(gateway, [DATASET])
    other_job, _ = _job(gateway, [])
    storage = gateway.storage()
    fs, results = gateway.results(job_id)

    r = svc.request("PUT", f"api/data/results/job-{job_id}/output/a.txt", token, data=b"mine")
    assert r.status_code == 201, r.text
    assert fs.cat_file(f"{results}/output/a.txt") == b"mine"

    into_input = f"{storage.dataset_path(*DATASET.split('/'))}/output/evil.txt"
    r = svc.request("PUT", f"api/data/{DATASET}/output/evil.txt", token, data=b"x")
    assert r.status_code == 403 and "read-only" in r.json()["message"], r.text
    assert not storage.fs.exists(into_input)

    other_fs, other_results = gateway.results(other_job)
    r = svc.request("PUT", f"api/data/results/job-{other_job}/output/evil.txt", token, data=b"x")
    assert r.status_code == 404 and r.json()["message"] == f"dataset results/job-{other_job} not found", r.text
    assert not other_fs.exists(f"{other_results}/output/evil.txt")

    r = svc.request("PUT", f"api/data/{OTHER_PROPOSAL}/evil.txt", token, data=b"x")
    assert r.status_code == 404, r.text
    # nor may it hand in another job's result
    r = svc.request("PUT", f"api/jobs/{other_job}/result", token, json={"status": "COMPLETED"})
    assert r.status_code == 403, r.text


def test_a_revoked_job_token_is_refused_within_seconds(gateway):
    svc = gateway.service
    job_id, token = _job(gateway, [DATASET])
    path = f"api/data/{DATASET}/dataset.json"
    assert svc.get(path, token).status_code == 200  # the gateway now holds the grant in its cache
    # revoked as the job manager revokes it when the job ends (its own Grants: the gateway's
    # cache learns of it only when its entry runs out)
    assert svc.app.job_manager.grants.revoke(kind=JOB, ref=job_id) == 1
    revoked = time.monotonic()
    while True:
        r = svc.get(path, token)
        if r.status_code != 200 or time.monotonic() - revoked > REVOKE_DEADLINE:
            break
        time.sleep(0.1)
    assert r.status_code == 401, f"still {r.status_code} {REVOKE_DEADLINE} s after the revocation"
    assert "no longer valid" in r.json()["message"]
    r = svc.request("PUT", f"api/data/results/job-{job_id}/late.txt", token, data=b"x")
    assert r.status_code == 401
    # a token whose time is up is refused at once
    expired_job = uuid.uuid4().hex[:12]
    expired = gateway.grant(expired_job, [DATASET], minutes=-1)
    assert svc.get(path, expired).status_code == 401


def _search(data: bytes, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value.encode() in data]


def test_a_running_job_holds_no_storage_credential(runner_s3_gateway, tmp_path):
    """S3: spec.json, every file of the job's folder (the manifest, the fetched inputs), and the
    environment and arguments of the runner and its kernel hold neither the key nor the secret."""
    gateway = runner_s3_gateway
    secrets = {"key": gateway.storage_options["key"], "secret": gateway.storage_options["secret"]}
    workdir = tmp_path / "job"
    runner_spec(workdir, notebook="runner_sleep.ipynb", gateway=gateway, datasets=[DATASET])
    assert not _search((workdir / "spec.json").read_bytes(), secrets)
    proc = start_runner(workdir)
    try:
        wait_for_log(workdir, "cell 2/3")  # inputs fetched, the kernel inside time.sleep
        processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert any("ipykernel" in " ".join(p.cmdline()) for p in processes), [p.cmdline() for p in processes]
        for p in processes:
            environ = Path(f"/proc/{p.pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
            assert not _search(environ, secrets), (p.cmdline(), "environ")
            assert not _search(cmdline, secrets), (p.cmdline(), "cmdline")
        # what the job does hold: the gateway's address and its own token
        runner_env = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert any(v.startswith(b"DASS_TOKEN=dassjob_") for v in runner_env)
        assert f"DASS_SERVICE_URL={gateway.url}".encode() in runner_env
        files = [p for p in workdir.rglob("*") if p.is_file()]
        assert workdir / ".dass" / "session.json" in files
        assert any(DATASET in str(p) for p in files), "the inputs were fetched into the job's folder"
        for path in files:
            assert not _search(path.read_bytes(), secrets), path
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            stop_tree(proc)
    assert "stopped by SIGTERM" in read_log(workdir)

"""The whole platform on "Kubernetes": ``dass up`` with ``DassKubeSpawner`` and the
``KubernetesExecutor`` against the emulator, whose pods the test kubelet runs with podman.

What a cluster would do is the emulator (the API) and :class:`tests.kubelet.Kubelet` (the Job
controller and one node, every pod in the CI test image, on the host's network); everything
else is the product as a facility would run it: the real hub spawns alice's session pod and
routes to it through the proxy, a kernel in the pod reads her dataset through the data gateway
with the session's token, a job submitted to the service runs as a Kubernetes Job and records
its output through the gateway, and stopping the session removes its container. Skipped with
the reason where podman cannot run (not root, not installed: ``make podman``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.kube_support import Emulator
from tests.kubelet import Kubelet, containers_of, podman_test_image
from tests.support import PlatformProcess, free_port, wait_for

pytestmark = pytest.mark.integration

ALICE_DATASET = "p-2026-001/sem-nanowires"
#: a job's timeout (the service fails a job at its timeout), sized for a loaded 2-core machine
JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def kube_platform():
    image = podman_test_image()  # skips, saying why, where podman cannot run
    base = Path(tempfile.mkdtemp(prefix="dass-kube-platform-", dir="/tmp"))
    with Emulator() as emu, Kubelet(emu, image_for=lambda ref: image) as kubelet:
        extra = "\n".join([
            "c.JupyterHub.spawner_class = 'dass.hub.kubernetes.DassKubeSpawner'",
            f"c.KubeSpawner.k8s_api_host = {emu.url!r}",
            "c.KubeSpawner.namespace = 'dass'",
            "c.KubeSpawner.events_enabled = False",
            "c.KubeSpawner.ip = '127.0.0.1'",  # pods share the host's network here: loopback only
            f"c.KubeSpawner.port = {free_port()}",
            "c.JobManager.executor_class = 'dass.jobs.kubernetes.KubernetesExecutor'",
            f"c.KubernetesExecutor.api_url = {emu.url!r}",
            f"c.KubernetesExecutor.kubeconfig = {os.environ['KUBECONFIG']!r}",  # written by tests.kube_support
            "c.KubernetesExecutor.namespace = 'dass'",
        ])
        p = None
        try:
            p = PlatformProcess(base / "state", name="platform-kubernetes", extra_config=extra)
            p.emu, p.kubelet = emu, kubelet
            yield p
        finally:
            if p is not None:
                p.stop()  # the hub stops alice's server: KubeSpawner deletes its pod
            shutil.rmtree(base, ignore_errors=True)
    assert not kubelet.errors, kubelet.errors


READ_DATASET = """
import json, os
import dass.data
d = dass.data.datasets()[%r]
names = sorted(d.fs.ls("", detail=False))
with d.fs.open([n for n in names if not n.endswith("dataset.json")][0], "rb") as f:
    head = f.read(8)
print(json.dumps({"uid": os.getuid(), "names": names, "bytes": len(head), "home": os.environ["HOME"],
                  "repo": os.path.exists(%r), "env": sorted(os.environ)}))
"""


def test_alice_session_pod_reads_her_dataset_and_goes_with_its_container(kube_platform):
    p = kube_platform
    r = p.spawn("alice", {"stack": "sem", "size": "small", "datasets": [ALICE_DATASET]})
    assert r.status_code in (201, 202), r.text
    (pod,) = [x for x in p.emu.objects("v1/pods", "dass") if x["metadata"]["labels"].get("component") == "singleuser-server"]
    name = pod["metadata"]["name"]
    assert [c for c in containers_of(name) if c.endswith("-notebook")]
    out = json.loads(p.run_in_kernel("alice", READ_DATASET % (ALICE_DATASET, str(p.state / "repository")),
                                     timeout=120).strip().splitlines()[-1])
    assert out["uid"] == 1000 and out["home"] == "/home/jovyan"
    assert out["names"] and out["bytes"] > 0  # through the gateway, with the session's token
    assert out["repo"] is False and not [k for k in out["env"] if k.startswith(("AWS_", "DASS_STORAGE"))]
    p.stop_server("alice")
    assert [x for x in p.emu.objects("v1/pods", "dass") if x["metadata"]["name"] == name] == []
    assert containers_of(name) == []  # the pod went only after its container


def test_a_job_runs_as_a_kubernetes_job_and_records_its_output(kube_platform):
    p = kube_platform
    body = {"notebook": "sem/service/image_summary.ipynb", "timeout": JOB_TIMEOUT,
            "parameters": {"input_dataset": ALICE_DATASET, "max_images": 2, "thumbnail_px": 32}}
    r = p.service("POST", "api/jobs", "alice", json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    def done():
        job = p.service("GET", f"api/jobs/{job_id}", "alice").json()
        return job if job["status"] in ("COMPLETED", "FAILED", "STOPPED") else None

    job = wait_for(done, JOB_TIMEOUT + 60, f"job {job_id}", interval=0.5)
    log = p.service("GET", f"api/jobs/{job_id}/log", "alice").text
    assert job["status"] == "COMPLETED", (job, log[-3000:])
    outputs = {o["path"] for o in p.service("GET", f"api/jobs/{job_id}/outputs", "alice").json()["outputs"]}
    assert "output/summary.csv" in outputs
    assert f"job {job_id}: COMPLETED" in log  # the pod's log, read through the API
    (k8s_job,) = [j for j in p.emu.objects("batch/v1/jobs", "dass") if j["metadata"]["labels"]["dass.job-id"] == job_id]
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in k8s_job["status"]["conditions"])

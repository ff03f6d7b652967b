"""The Kubernetes executor: ``make_job`` by value for every stack × size (validated for every
supported Kubernetes version), the exit status read from a Job and its pods, and the job
manager's flow against the emulator: submit, complete, log, cancel, adopt after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import fsspec
import pytest
from traitlets.config import Config

from tests.kube_support import Emulator, validate

pytest.importorskip("kubernetes_asyncio", reason="kubernetes_asyncio is not installed (pip install 'dass[k8s]')")

from dass.data.access import Identity  # noqa: E402
from dass.data.catalog import Catalog  # noqa: E402
from dass.data.storage import Storage  # noqa: E402
from dass.demo import seed  # noqa: E402
from dass.jobs.kubejob import KubernetesJobError, exit_status, job_name, make_job, owned_by  # noqa: E402
from dass.jobs.kubernetes import KubernetesExecutor  # noqa: E402
from dass.jobs.manager import JobManager  # noqa: E402
from dass.jobs.spec import build_execution_spec  # noqa: E402
from dass.stacks.registry import StackRegistry  # noqa: E402

ALICE = Identity("alice", frozenset({"p-2026-001"}))
SEM = "sem/service/image_summary.ipynb"
GATEWAY = "http://dass-service.dass.svc:10101/services/dass/"
FILES = {"spec.json": '{"job_id": "x"}', "input.ipynb": '{"cells": []}'}
GPU_SIZE = {"gpu": {"display_name": "GPU", "cpu": 8, "mem_gib": 32, "gpus": 1}}


def _registry() -> StackRegistry:
    c = Config()
    c.StackRegistry.sizes = GPU_SIZE
    c.StackRegistry.stacks = {n: {"allowed_sizes": ["small", "medium", "large", "gpu"]} for n in ("sem", "kmap", "stm")}
    return StackRegistry(config=c)


def _exec_spec(stack, size, job_id="0123456789abcdef0123456789abcdef"):
    return build_execution_spec(
        job_id=job_id, workdir=f"/srv/dass/jobs/{job_id}", stack=stack, size=size, timeout_seconds=600,
        base_env={"PATH": "/opt/service/venv/bin", "LANG": "C.UTF-8"}, gateway_url=GATEWAY, token="job-token-1",
    )


def test_every_stack_and_size_makes_a_valid_job():
    registry = _registry()
    for stack in registry.all_stacks.values():
        for size_name in stack.allowed_sizes:
            size = registry.all_sizes[size_name]
            job, secret = make_job(_exec_spec(stack, size), files=FILES, namespace="dass",
                                   image=f"registry.example.org/dass/{stack.image}:0.1.0",
                                   gpu_node_selector={"nvidia.com/gpu.present": "true"},
                                   gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
            created = {**job, "metadata": {**job["metadata"], "uid": "5f0c1a52-0000-4000-8000-000000000001"}}
            validate(job)
            validate(owned_by(secret, created))
            pod = job["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            assert c["image"] == f"registry.example.org/dass/dass-stack-{stack.name}:0.1.0"
            assert c["command"] == ["python3", "-m", "dass.jobs.runner", "/job", "--log-stdout"]
            limits = c["resources"]["limits"]
            assert limits["memory"] == f"{int(size.mem_gib)}Gi" and float(limits["cpu"]) == size.cpu
            assert c["resources"]["requests"]["memory"] == limits["memory"]
            if size.gpus:
                assert limits["nvidia.com/gpu"] == "1" and pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
                assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
            else:
                assert "nvidia.com/gpu" not in limits and "nodeSelector" not in pod and "tolerations" not in pod
            # runs once, as a non-root user without privileges or API token
            assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
            assert job["spec"]["activeDeadlineSeconds"] == 900
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["runAsUser"] == 1000 and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"] == {"drop": ["ALL"]} and pod["automountServiceAccountToken"] is False
            # the environment: the gateway and the job's token (from the Secret), not the host's PATH
            env = {e["name"]: e for e in c["env"]}
            assert env["DASS_SERVICE_URL"]["value"] == GATEWAY and env["HOME"]["value"] == "/job"
            assert env["DASS_TOKEN"] == {"name": "DASS_TOKEN", "valueFrom": {"secretKeyRef": {
                "name": job_name("0123456789abcdef0123456789abcdef"), "key": "token"}}}
            assert "PATH" not in env and "job-token-1" not in json.dumps(job)
            assert env["DASS_STACK"]["value"] == stack.name and env["OMP_NUM_THREADS"]["value"] == str(int(size.cpu))
            # the runner's files from the Secret, into the emptyDir the runner writes
            assert {m["mountPath"] for m in c["volumeMounts"]} == {"/job", "/job/spec.json", "/job/input.ipynb"}
            assert secret["stringData"] == {**FILES, "token": "job-token-1"}
            labels = pod and job["spec"]["template"]["metadata"]["labels"]
            assert labels["dass.job-id"] == "0123456789abcdef0123456789abcdef"
            assert labels["app.kubernetes.io/component"] == "job"


def test_a_notebook_too_large_for_a_secret_is_refused_with_the_fix():
    registry = _registry()
    spec = _exec_spec(registry.get("sem"), registry.all_sizes["small"])
    with pytest.raises(KubernetesJobError, match="max_notebook_bytes"):
        make_job(spec, files={"spec.json": "{}", "input.ipynb": "x" * 1024 * 1024}, namespace="d", image="i")


@pytest.mark.parametrize("job, pods, code", [
    ({"status": {}}, [], None),  # created, no pod yet
    ({"status": {}}, [{"status": {"phase": "Pending"}}], None),
    ({"status": {}}, [{"status": {"phase": "Running", "containerStatuses": [
        {"name": "runner", "state": {"running": {}}}]}}], None),
    ({"status": {}}, [{"status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "runner", "state": {"terminated": {"exitCode": 0}}}]}}], 0),
    ({"status": {}}, [{"status": {"phase": "Failed", "containerStatuses": [
        {"name": "runner", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}], 137),
    ({"status": {}}, [{"status": {"phase": "Pending", "containerStatuses": [
        {"name": "runner", "state": {"waiting": {"reason": "InvalidImageName"}}}]}}], -1),
    ({"status": {}}, [{"status": {"phase": "Failed", "reason": "Evicted"}}], -1),
    ({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}, [], -1),
    ({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, [], 0),
    (None, [], -1),  # deleted
])
def test_exit_status_from_the_job_and_its_pods(job, pods, code):
    assert exit_status(job, pods) == code


# -- the manager's flow against the emulator ------------------------------------------------------


@pytest.fixture
def cluster():
    with Emulator() as emu:
        yield emu


@pytest.fixture
def manager_factory(tmp_path, cluster):
    seed(fsspec.filesystem("file"), str(tmp_path / "repo"))
    cfg = Config()
    cfg.Storage.url = f"file://{tmp_path / 'repo'}"
    cfg.Catalog.db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cfg.JobManager.jobs_dir = str(tmp_path / "jobs")
    cfg.JobManager.home_dir_template = str(tmp_path / "homes" / "{username}")
    cfg.JobManager.gateway_url = GATEWAY
    cfg.JobManager.executor_class = KubernetesExecutor
    cfg.KubernetesExecutor.api_url = cluster.url
    cfg.KubernetesExecutor.kubeconfig = os.environ["KUBECONFIG"]  # written by tests.kube_support
    cfg.KubernetesExecutor.namespace = "dass"
    cfg.KubernetesExecutor.image_prefix = "registry.example.org/dass/"
    cfg.KubernetesExecutor.log_refresh_seconds = 0
    catalog, storage = Catalog(config=cfg), Storage(config=cfg)
    catalog.upgrade()
    assert not catalog.scan(storage).errors

    async def identity_for(name):
        return ALICE

    def make() -> JobManager:
        return JobManager(config=cfg, catalog=catalog, storage=storage, registry=StackRegistry(config=cfg),
                          identity_for=identity_for)

    return make


async def _until(manager, job_id, statuses, timeout=20, close=True, interval=0.05):
    """Tick the manager until the job reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await manager.tick()
            job = manager.get(ALICE, job_id)
            if job["status"] in statuses:
                return job
            await asyncio.sleep(interval)
    finally:
        if close:
            await manager.executor.aclose()
    raise AssertionError(f"job {job_id} is {job['status']}, not {statuses}, after {timeout} s")


def test_submit_complete_and_read_the_log(manager_factory, cluster):
    manager = manager_factory()
    job, _ = manager.submit(ALICE, {"notebook": SEM, "parameters": {"input_dataset": "p-2026-001/sem-nanowires"}})

    async def flow():
        await _until(manager, job["id"], {"IN_PROGRESS"}, close=False)
        (k8s_job,) = await asyncio.to_thread(cluster.objects, "batch/v1/jobs", "dass")
        (secret,) = await asyncio.to_thread(cluster.objects, "v1/secrets", "dass")
        pod = await asyncio.to_thread(cluster.run_job_pod, k8s_job)
        await asyncio.to_thread(cluster.set_pod_status, "dass", pod, "Running")
        cluster.logs[pod] = b"2026-12-02T11:00:00Z INFO dass.jobs.runner: job started\n"
        await manager.tick()
        running_log = manager.log_chunk(ALICE, job["id"])[0]
        # what the runner does at its end: PUT api/jobs/<id>/result, then exit 0
        manager.store_result(job["id"], {"status": "COMPLETED", "reason": None})
        cluster.logs[pod] += b"2026-12-02T11:00:05Z INFO dass.jobs.runner: job COMPLETED\n"
        await asyncio.to_thread(cluster.set_pod_status, "dass", pod, "Succeeded", exit_code=0)
        done = await _until(manager, job["id"], {"COMPLETED", "FAILED"})
        return k8s_job, secret, running_log, done

    k8s_job, secret, running_log, done = asyncio.run(flow())
    validate(k8s_job)
    validate({k: v for k, v in secret.items() if k != "status"})
    assert k8s_job["metadata"]["name"] == job_name(job["id"])
    assert secret["metadata"]["ownerReferences"][0]["uid"] == k8s_job["metadata"]["uid"]
    spec_json = json.loads(secret["stringData"]["spec.json"])
    assert spec_json["job_id"] == job["id"] and spec_json["gateway"] == {"url": GATEWAY}
    assert "job started" in running_log
    assert done["status"] == "COMPLETED", done
    log = manager.log_chunk(ALICE, job["id"])[0]
    assert "job COMPLETED" in log  # kept in the job's folder: it outlives the pod
    assert (manager.workdir(job["id"]) / "job.log").read_bytes().endswith(b"job COMPLETED\n")
    assert manager.grants.of("job", job["id"]) == []  # the job's token is revoked


def test_cancel_deletes_the_job_and_keeps_its_log(manager_factory, cluster):
    manager = manager_factory()
    job, _ = manager.submit(ALICE, {"notebook": SEM})

    async def flow():
        await _until(manager, job["id"], {"IN_PROGRESS"}, close=False)
        (k8s_job,) = await asyncio.to_thread(cluster.objects, "batch/v1/jobs", "dass")
        pod = await asyncio.to_thread(cluster.run_job_pod, k8s_job)
        await asyncio.to_thread(cluster.set_pod_status, "dass", pod, "Running")
        cluster.logs[pod] = b"cell 1/3\n"
        manager.cancel(ALICE, job["id"])
        return await _until(manager, job["id"], {"STOPPED"})

    stopped = asyncio.run(flow())
    assert stopped["reason"] == "cancelled by alice"
    assert cluster.objects("batch/v1/jobs", "dass") == [] and cluster.objects("v1/secrets", "dass") == []
    assert manager.log_chunk(ALICE, job["id"])[0] == "cell 1/3\n"


def test_a_restarted_service_adopts_its_job_by_label(manager_factory, cluster):
    first = manager_factory()
    job, _ = first.submit(ALICE, {"notebook": SEM})
    asyncio.run(_until(first, job["id"], {"IN_PROGRESS"}))
    from dass.jobs.model import Job

    with first._db() as db, db.begin():  # the service died before it stored the handle
        db.get(Job, job["id"]).executor_handle = None
    (k8s_job,) = cluster.objects("batch/v1/jobs", "dass")
    pod = cluster.run_job_pod(k8s_job)

    second = manager_factory()

    async def after_restart():
        second.reconcile()
        assert job["id"] in second._running
        second.store_result(job["id"], {"status": "FAILED", "reason": "cell 2 raised ValueError"})
        await asyncio.to_thread(cluster.set_pod_status, "dass", pod, "Failed", exit_code=1)
        return await _until(second, job["id"], {"FAILED", "COMPLETED"})

    done = asyncio.run(after_restart())
    assert done["status"] == "FAILED" and done["reason"] == "cell 2 raised ValueError"
    assert len(cluster.objects("batch/v1/jobs", "dass")) == 1  # adopted, not started twice


def test_a_job_the_cluster_refuses_fails_with_the_reason(manager_factory, cluster):
    manager = manager_factory()
    job, _ = manager.submit(ALICE, {"notebook": SEM})

    import kmock

    def forbidden(request):
        raise kmock.KubernetesError(status=403, reason="Forbidden", message="jobs.batch is forbidden")

    async def refuse(emu):
        emu["post", "/apis/batch/v1/namespaces/dass/jobs"] << forbidden

    cluster.call(refuse)
    done = asyncio.run(_until(manager, job["id"], {"FAILED"}))
    assert "the cluster refused its Job" in done["reason"]


def test_the_pod_command_writes_the_job_log_to_its_output(tmp_path):
    """What a job pod runs (``python -m dass.jobs.runner /job --log-stdout``): the pod's log,
    which the executor reads, is the job's log."""
    from dass.jobs.runner import LOG_STDOUT_FLAG

    (tmp_path / "spec.json").write_text(json.dumps({"job_id": "k8s-log", "notebook": "input.ipynb",
                                                    "gateway": {"url": ""}, "datasets": []}))
    (tmp_path / "input.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    env = {k: v for k, v in os.environ.items() if k not in ("DASS_TOKEN", "DASS_SERVICE_URL")}
    done = subprocess.run([sys.executable, "-m", "dass.jobs.runner", str(tmp_path), LOG_STDOUT_FLAG],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    log = (tmp_path / "job.log").read_text()
    assert "job k8s-log: runner started" in log
    assert done.stdout == log  # the same lines, in the same order


# -- real jobs: the pods run by podman, the data through a real gateway ---------------------------

#: a job's timeout in these tests (the manager fails a job at its timeout): sized for a loaded
#: 2-core machine, where the image summary of two images takes well under a minute when idle
JOB_TIMEOUT = 300


@pytest.fixture
def podman_cluster(tmp_path, gateway_loop, gateway_hub):
    """The emulator with the test kubelet (tests/kubelet.py: every pod in the CI test image,
    every container removed at the end whatever happens), a real dass service as the jobs'
    data gateway on 127.0.0.1, and a JobManager with the KubernetesExecutor on the gateway's
    repository and database (the job tokens it makes are the gateway's; the gateway's own
    queue stays idle), as the service runs on a cluster."""
    from types import SimpleNamespace

    from tests.jobs.conftest import JobGateway, _start_gateway
    from tests.kubelet import Kubelet, podman_test_image

    image = podman_test_image()  # skips, saying why, where podman cannot run
    repo = tmp_path / "repo"
    seed(fsspec.filesystem("file"), str(repo))
    (tmp_path / "gateway").mkdir()
    service = _start_gateway(gateway_loop, gateway_hub, tmp_path / "gateway", f"file://{repo}", {})
    try:
        with Emulator() as emu, Kubelet(emu, image_for=lambda ref: image) as kubelet:
            cfg = Config()
            cfg.Storage.url = f"file://{repo}"
            cfg.Catalog.db_url = f"sqlite:///{tmp_path / 'gateway' / 'catalog.sqlite'}"
            cfg.JobManager.jobs_dir = str(tmp_path / "jobs")
            cfg.JobManager.home_dir_template = str(tmp_path / "homes" / "{username}")
            cfg.JobManager.gateway_url = service.url
            cfg.JobManager.executor_class = KubernetesExecutor
            cfg.KubernetesExecutor.api_url = emu.url
            cfg.KubernetesExecutor.kubeconfig = os.environ["KUBECONFIG"]  # written by tests.kube_support
            cfg.KubernetesExecutor.namespace = "dass"
            cfg.KubernetesExecutor.log_refresh_seconds = 1
            catalog, storage = Catalog(config=cfg), Storage(config=cfg)
            catalog.upgrade()

            async def identity_for(name):
                return ALICE

            manager = JobManager(config=cfg, catalog=catalog, storage=storage, registry=StackRegistry(config=cfg),
                                 identity_for=identity_for)
            yield SimpleNamespace(emu=emu, kubelet=kubelet, manager=manager, gateway=JobGateway(service, f"file://{repo}"),
                                  repo=repo)
        assert not kubelet.errors, kubelet.errors
    finally:
        service.stop()


def _pods(emu, job_id):
    return [p for p in emu.objects("v1/pods", "dass") if p["metadata"]["labels"].get("dass.job-id") == job_id]


def test_a_real_job_completes_in_its_pod_and_records_its_output_through_the_gateway(podman_cluster):
    from tests.kubelet import containers_of, inspect

    c = podman_cluster
    job, _ = c.manager.submit(ALICE, {"notebook": SEM, "timeout": JOB_TIMEOUT, "parameters": {
        "input_dataset": "p-2026-001/sem-nanowires", "max_images": 2, "thumbnail_px": 32}})
    done = asyncio.run(_until(c.manager, job["id"], {"COMPLETED", "FAILED", "STOPPED"}, timeout=JOB_TIMEOUT + 60,
                              interval=0.5))
    log = c.manager.log_chunk(ALICE, job["id"])[0]
    assert done["status"] == "COMPLETED", (done, log[-3000:])
    # the output, written by the pod through the gateway with the job's token
    assert "output/summary.csv" in {o["path"] for o in done["outputs"]}
    assert (c.repo / "results" / f"job-{job['id']}" / "output" / "summary.csv").is_file()
    assert c.gateway.grants.of("job", job["id"]) == []  # the job's token is revoked
    assert f"job {job['id']}: COMPLETED" in log  # the pod's log, read through the API
    assert (c.manager.workdir(job["id"]) / "job.log").is_file()  # and kept beside the job
    # the Job and its pod, as the controller and the kubelet left them
    (k8s_job,) = c.emu.objects("batch/v1/jobs", "dass")
    assert [cond["type"] for cond in k8s_job["status"]["conditions"] if cond["status"] == "True"][-1] == "Complete"
    (pod,) = _pods(c.emu, job["id"])
    assert pod["metadata"]["labels"]["job-name"] == job_name(job["id"]) and pod["status"]["phase"] == "Succeeded"
    (container,) = containers_of(pod["metadata"]["name"])
    details = inspect(container)
    # what the pod was given: its files, the gateway's address and its token, nothing else
    env = dict(e.split("=", 1) for e in details["Config"]["Env"])
    assert env["DASS_SERVICE_URL"] == c.gateway.url and len(env["DASS_TOKEN"]) > 20
    words = ("AWS", "SECRET", "STORAGE", "PASSWORD", "DB_URL", "DATABASE")
    assert not [k for k in env if any(w in k.upper() for w in words)]
    assert str(c.repo) not in json.dumps(details)
    assert {m["Destination"] for m in details["Mounts"]} == {"/job", "/job/spec.json", "/job/input.ipynb"}
    assert details["Config"]["User"] == "1000:100" and details["HostConfig"]["Memory"] == 2 * 1024**3


def test_a_cancelled_job_loses_its_pod_and_container_and_keeps_its_log(podman_cluster):
    from tests.integration.test_jobs import SLEEPER
    from tests.kubelet import containers_of

    c = podman_cluster
    job, _ = c.manager.submit(ALICE, {"notebook": {"upload": SLEEPER, "name": "sleep.ipynb"},
                                      "parameters": {"seconds": JOB_TIMEOUT}, "timeout": JOB_TIMEOUT})

    async def flow():
        await _until(c.manager, job["id"], {"IN_PROGRESS"}, close=False)
        deadline = time.monotonic() + JOB_TIMEOUT
        while "runner started" not in c.manager.log_chunk(ALICE, job["id"])[0]:  # the notebook is running
            assert time.monotonic() < deadline, "the job's pod did not start its runner"
            await c.manager.tick()
            await asyncio.sleep(0.5)
        (pod,) = await asyncio.to_thread(_pods, c.emu, job["id"])
        names = await asyncio.to_thread(containers_of, pod["metadata"]["name"])
        c.manager.cancel(ALICE, job["id"])
        return pod["metadata"]["name"], names, await _until(c.manager, job["id"], {"STOPPED"}, timeout=60)

    pod, running, stopped = asyncio.run(flow())
    assert running and stopped["reason"] == "cancelled by alice"
    assert "runner started" in c.manager.log_chunk(ALICE, job["id"])[0]  # kept before the pod went
    deadline = time.monotonic() + c.kubelet.grace_seconds + 60
    while _pods(c.emu, job["id"]):  # the Job's deletion reaches its pod (the garbage collector)
        assert time.monotonic() < deadline, "the cancelled job's pod is still there"
        time.sleep(0.2)
    assert containers_of(pod) == []  # a pod goes only after its containers
    assert c.emu.objects("batch/v1/jobs", "dass") == [] and c.emu.objects("v1/secrets", "dass") == []

"""The test support's node for the Kubernetes emulator (tests/kubelet.py): what it makes of a
pod and a Job, checked with podman where it runs (the flow tests of the KubeSpawner back end
and the Job executor are in tests/hub/test_kubernetes.py and tests/jobs/test_kubernetes.py)."""

from __future__ import annotations

import doctest
import time

import pytest

import tests.kube_support
import tests.kubelet
from tests.kube_support import Emulator
from tests.kubelet import FINALIZER, Kubelet, containers_of, inspect, podman_test_image, quantity

NS = "dass"
#: how long a pod of a few shell commands may take to end on a loaded 2-core machine
POD_SECONDS = 120


@pytest.mark.parametrize("module", [tests.kube_support, tests.kubelet], ids=lambda m: m.__name__)
def test_the_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed


def test_quantities_refuse_what_kubernetes_refuses():
    assert quantity("2") == 2 and quantity("100M") == 10**8 and quantity("1.5Gi") == 1.5 * 2**30
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity("2 GB")


def _until(predicate, what: str, timeout: float = POD_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def _pod(emu, name):
    return next((p for p in emu.objects("v1/pods", NS) if p["metadata"]["name"] == name), None)


def _ended(emu, name):
    pod = _pod(emu, name)
    return pod if pod and pod["status"].get("phase") in ("Succeeded", "Failed") else None


PROBE = ("id -u; id -g; id -G; cat /w/from-init /job/spec.json; echo \" token=$TOKEN pod=$POD_NAME\"; "
         "stat -c %a /job/spec.json; touch /job/x 2>/dev/null || echo read-only; echo to-stderr >&2; exit 3")


@pytest.fixture
def node():
    image = podman_test_image()
    with Emulator() as emu, Kubelet(emu, image_for=lambda ref: image) as kubelet:
        yield emu, kubelet
    assert not kubelet.errors, kubelet.errors


def test_a_pod_runs_with_its_volumes_user_env_and_limits_and_is_removed_with_its_pod(node):
    emu, kubelet = node
    emu.create("v1/secrets", NS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "files", "namespace": NS},
                                  "stringData": {"spec.json": "{}", "token": "t0k"}})
    emu.create("v1/pods", NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": NS}, "spec": {
        "restartPolicy": "Never",
        "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 2000},
        "volumes": [{"name": "w", "emptyDir": {}},
                    {"name": "s", "secret": {"secretName": "files", "defaultMode": 0o440,
                                             "items": [{"key": "spec.json", "path": "spec.json"}]}}],
        "initContainers": [{"name": "setup", "image": "registry.example.org/x:1", "command": ["sh", "-c"],
                            "args": ["echo written-by-init > /w/from-init"],
                            "volumeMounts": [{"name": "w", "mountPath": "/w"}]}],
        "containers": [{"name": "main", "image": "registry.example.org/x:1", "command": ["sh", "-c", PROBE],
                        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "files", "key": "token"}}},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                        "volumeMounts": [{"name": "w", "mountPath": "/w"},
                                         {"name": "s", "mountPath": "/job/spec.json", "subPath": "spec.json"}]}]}})
    pod = _until(lambda: _ended(emu, "probe"), "the probe pod's end")
    status = pod["status"]
    assert status["phase"] == "Failed" and status["podIP"] == "127.0.0.1"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    (main,) = status["containerStatuses"]
    assert main["state"]["terminated"]["exitCode"] == 3 and main["state"]["terminated"]["reason"] == "Error"
    assert FINALIZER in pod["metadata"]["finalizers"]
    code, log = emu.request("GET", f"/api/v1/namespaces/{NS}/pods/probe/log")
    assert code == 200
    lines = log.splitlines()
    assert lines[:2] == ["1000", "100"] and "2000" in lines[2].split()  # runAsUser:runAsGroup, fsGroup added
    assert lines[3] == "written-by-init" and lines[4] == "{} token=t0k pod=probe"
    assert lines[5] == "440" and "read-only" in lines and "to-stderr" in lines
    c = inspect("k8s-dass-probe-main")
    assert c["HostConfig"]["Memory"] == 256 * 2**20 and c["HostConfig"]["NanoCpus"] == 500_000_000
    assert not [a for a in c["Config"]["Cmd"] if "t0k" in a]  # the token is not on a command line
    assert sorted(containers_of("probe")) == ["k8s-dass-probe-main", "k8s-dass-probe-setup"]

    code, _ = emu.request("DELETE", f"/api/v1/namespaces/{NS}/pods/probe")
    assert code == 200
    _until(lambda: _pod(emu, "probe") is None, "the deleted pod to go")  # after its containers
    assert containers_of("probe") == []


def test_a_job_gets_its_pod_and_status_and_its_deletion_removes_them(node):
    emu, kubelet = node
    labels = {"app.kubernetes.io/component": "job", "dass.job-id": "j1"}
    emu.create("batch/v1/jobs", NS, {"apiVersion": "batch/v1", "kind": "Job",
                                      "metadata": {"name": "dass-job-j1", "namespace": NS, "labels": labels},
                                      "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": {
                                          "restartPolicy": "Never", "securityContext": {"runAsUser": 1000},
                                          "containers": [{"name": "runner", "image": "x", "command": ["true"]}]}}}})
    pod = _until(lambda: next(iter(emu.objects("v1/pods", NS)), None), "the Job's pod")
    name = pod["metadata"]["name"]
    assert name.startswith("dass-job-j1-") and pod["metadata"]["labels"]["job-name"] == "dass-job-j1"
    assert pod["metadata"]["labels"]["dass.job-id"] == "j1"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"

    def complete():
        (job,) = emu.objects("batch/v1/jobs", NS)
        return job if any(c["type"] == "Complete" for c in job["status"].get("conditions") or []) else None

    job = _until(complete, "the Job's Complete condition")
    assert job["status"]["succeeded"] == 1 and job["status"]["active"] == 0
    assert _pod(emu, name)["status"]["phase"] == "Succeeded"

    emu.request("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/dass-job-j1")
    _until(lambda: _pod(emu, name) is None, "the pod of the deleted Job to go")
    assert containers_of(name) == []


def test_an_image_that_is_not_here_leaves_the_pod_pending_and_says_so():
    podman_test_image()  # skips where podman cannot run
    with Emulator() as emu, Kubelet(emu, image_for=lambda ref: "localhost/dass-never-built:1") as kubelet:
        emu.create("v1/pods", NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage", "namespace": NS},
                                   "spec": {"containers": [{"name": "c", "image": "dass-stack-x:1", "command": ["true"]}]}})

        def waiting():
            pod = _pod(emu, "noimage")
            statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
            return statuses[0]["state"].get("waiting") if statuses else None

        state = _until(waiting, "the pod's waiting reason")
        assert state["reason"] == "ErrImageNeverPull"
        assert "localhost/dass-never-built:1" in state["message"] and "dass-stack-x:1" in state["message"]
        assert _pod(emu, "noimage")["status"]["phase"] == "Pending" and containers_of("noimage") == []
    assert not kubelet.errors


def test_a_test_that_fails_leaves_no_container_behind():
    image = podman_test_image()
    with pytest.raises(RuntimeError, match="the test failed"):
        with Emulator() as emu, Kubelet(emu, image_for=lambda ref: image) as kubelet:
            emu.create("v1/pods", NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "left", "namespace": NS},
                                       "spec": {"securityContext": {"runAsUser": 1000},
                                                "volumes": [{"name": "w", "emptyDir": {}}],
                                                "containers": [{"name": "c", "image": "x", "command": ["sleep", "600"],
                                                                "volumeMounts": [{"name": "w", "mountPath": "/w"}]}]}})
            _until(lambda: (_pod(emu, "left") or {}).get("status", {}).get("phase") == "Running", "the pod running")
            assert containers_of("left")
            raise RuntimeError("the test failed")
    assert containers_of("left") == [] and not kubelet.root.exists()


def test_containers_of_a_test_process_that_died_are_removed_by_the_next_kubelet():
    import subprocess

    from tests.kubelet import LABEL

    image = podman_test_image()
    name = "k8s-dass-orphan-c"
    made = subprocess.run(["podman", "create", "--name", name, "--label", f"{LABEL}=999999999-dead",
                           "--label", "io.kubernetes.pod.name=orphan", image, "true"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    try:
        with Emulator() as emu, Kubelet(emu, image_for=lambda ref: image):
            assert containers_of("orphan") == []
    finally:
        subprocess.run(["podman", "rm", "--force", "--ignore", name], capture_output=True)

"""The Kubernetes Job of one run, as a pure builder (the executor that runs it is
:mod:`dass.jobs.kubernetes`).

:func:`make_job` turns an :class:`~dass.jobs.spec.ExecutionSpec` and the runner's two files
into a ``batch/v1`` Job and the ``v1`` Secret it reads them (and the job's token) from;
:func:`owned_by` makes the Secret belong to the created Job; :func:`exit_status` reads a
run's exit status from its Job and pods. Nothing here talks to a cluster: tests compare
values and validate them against the API's schemas.
"""

from __future__ import annotations

from typing import Any

from ..errors import DassError
from ..stacks.container import (
    DEFAULT_GPU_RESOURCE,
    container_security_context,
    gpu_scheduling,
    pod_security_context,
    resources,
)
from .runner import LOG_STDOUT_FLAG, SPEC_FILE
from .spec import RUNNER_MODULE, ExecutionSpec

JOB_ID_LABEL = "dass.job-id"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: the runner's container in the job's pod
CONTAINER = "runner"
NOTEBOOK_FILE = "input.ipynb"
TOKEN_KEY = "token"
#: what one Secret may hold (the API server refuses larger ones)
SECRET_MAX_BYTES = 1024 * 1024 - 4096
#: variables of the service's environment that mean nothing in the image
_HOST_ONLY_ENV = ("PATH", "HOME", "DASS_TOKEN")
#: waiting reasons that never resolve by themselves: the run has failed
_PERMANENT_WAITING = ("InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError")


class KubernetesJobError(DassError):
    """A job cannot run on the cluster (too large, refused by the API server…)."""


def job_name(job_id: str) -> str:
    """The Job's (and its Secret's) name: ``dass-job-<id>``, a valid DNS label.

    Examples
    --------
    >>> job_name("3f2a" * 8)
    'dass-job-3f2a3f2a3f2a3f2a3f2a3f2a3f2a3f2a'
    """
    name = f"dass-job-{job_id.lower()}"
    if len(name) > 63 or not name.replace("-", "").isalnum():
        raise ValueError(f"job id {job_id!r} cannot name a Kubernetes object")
    return name


def make_job(
    spec: ExecutionSpec,
    *,
    files: dict[str, str],
    namespace: str,
    image: str,
    python: str = "python3",
    workdir: str = "/job",
    uid: int = 1000,
    gid: int = 100,
    fs_gid: int = 100,
    gpu_resource: str = DEFAULT_GPU_RESOURCE,
    node_selector: dict[str, str] | None = None,
    gpu_node_selector: dict[str, str] | None = None,
    gpu_tolerations: list[dict] | None = None,
    service_account: str = "",
    ttl_seconds_after_finished: int = 3600,
    deadline_grace_seconds: int = 300,
    cpu_request_fraction: float = 1.0,
    labels: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``batch/v1`` Job running ``spec`` and the ``v1`` Secret holding its files and token.

    Parameters
    ----------
    spec : ExecutionSpec
        From :func:`~dass.jobs.spec.build_execution_spec` (its ``cwd`` and ``argv`` are the
        service's; the pod runs ``python -m dass.jobs.runner <workdir>`` in ``image``).
    files : dict
        ``{"spec.json": …, "input.ipynb": …}``, the runner's inputs as text.
    namespace, image : str
        Where the Job is created and what it runs (the full image reference).

    Returns
    -------
    (job, secret) : tuple of dict
        Plain API objects (tests compare and validate them); the Secret is created after the
        Job and owned by it (:func:`owned_by`).

    Examples
    --------
    >>> spec = ExecutionSpec(job_id="a" * 32, argv=("python", "-m", RUNNER_MODULE, "/srv/jobs/a"),
    ...                      cwd="/srv/jobs/a", env={"PATH": "/usr/bin", "DASS_TOKEN": "t0k"},
    ...                      cpu=2, mem_bytes=4 * 1024**3, gpus=1, stack="sem")
    >>> job, secret = make_job(spec, files={"spec.json": "{}", "input.ipynb": "{}"},
    ...                        namespace="dass", image="dass-stack-sem:0.1.0")
    >>> pod = job["spec"]["template"]["spec"]
    >>> pod["containers"][0]["command"][-2:], pod["containers"][0]["resources"]["limits"]
    (['/job', '--log-stdout'], {'cpu': '2', 'memory': '4Gi', 'nvidia.com/gpu': '1'})
    >>> sorted(secret["stringData"]), [e["name"] for e in pod["containers"][0]["env"]][-1]
    (['input.ipynb', 'spec.json', 'token'], 'DASS_TOKEN')
    """
    missing = {SPEC_FILE, NOTEBOOK_FILE} - set(files)
    if missing:
        raise ValueError(f"make_job needs the runner's files; missing: {', '.join(sorted(missing))}")
    token = spec.env.get("DASS_TOKEN", "")
    size = sum(len(v.encode()) for v in files.values()) + len(token)
    if size > SECRET_MAX_BYTES:
        raise KubernetesJobError(
            f"job {spec.job_id}: its notebook and spec ({size} bytes) exceed what one Kubernetes Secret holds "
            f"(1 MiB); submit a smaller notebook, or lower c.JobManager.max_notebook_bytes to refuse them at once"
        )
    name = job_name(spec.job_id)
    all_labels = {
        "app.kubernetes.io/name": "dass",
        COMPONENT_LABEL: "job",
        "app.kubernetes.io/managed-by": "dass",
        JOB_ID_LABEL: spec.job_id,
        **({"dass.stack": spec.stack} if spec.stack else {}),
        **(labels or {}),
    }
    selector, tolerations = gpu_scheduling(
        spec.gpus, node_selector=node_selector or {}, gpu_node_selector=gpu_node_selector or {},
        gpu_tolerations=gpu_tolerations or [],
    )
    env = [{"name": k, "value": v} for k, v in sorted(spec.env.items()) if k not in _HOST_ONLY_ENV]
    env.insert(0, {"name": "HOME", "value": workdir})
    if token:
        env.append({"name": "DASS_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": TOKEN_KEY}}})
    mem = spec.mem_bytes or spec.mem_limit_bytes
    if not mem:
        raise ValueError(f"job {spec.job_id}: the spec names no memory (mem_bytes)")
    container = {
        "name": CONTAINER,
        "image": image,
        "command": [python, "-m", RUNNER_MODULE, workdir, LOG_STDOUT_FLAG],
        "workingDir": workdir,
        "env": env,
        "resources": resources(spec.cpu, mem, spec.gpus, gpu_resource=gpu_resource,
                               cpu_request_fraction=cpu_request_fraction),
        "securityContext": container_security_context(uid, gid),
        "volumeMounts": [
            {"name": "work", "mountPath": workdir},
            *({"name": "inputs", "mountPath": f"{workdir}/{f}", "subPath": f, "readOnly": True}
              for f in (SPEC_FILE, NOTEBOOK_FILE)),
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(uid, gid, fs_gid),
        "containers": [container],
        "volumes": [
            {"name": "work", "emptyDir": {}},
            {"name": "inputs", "secret": {
                "secretName": name, "defaultMode": 0o440,
                "items": [{"key": f, "path": f} for f in (SPEC_FILE, NOTEBOOK_FILE)]}},
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if selector:
        pod_spec["nodeSelector"] = selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
        "spec": {
            "backoffLimit": 0,  # a job runs once: a failed notebook is a result, not a retry
            "activeDeadlineSeconds": int(spec.timeout_seconds) + int(deadline_grace_seconds),
            "ttlSecondsAfterFinished": int(ttl_seconds_after_finished),
            "template": {"metadata": {"labels": all_labels}, "spec": pod_spec},
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
        "type": "Opaque",
        "stringData": {**files, TOKEN_KEY: token},
    }
    return job, secret


def owned_by(obj: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with an owner reference to the created ``job`` (its ``metadata.uid``), so that
    Kubernetes deletes it with the Job (a new dict; ``obj`` is not changed)."""
    meta = job["metadata"]
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
           "controller": False, "blockOwnerDeletion": False}
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": [ref]}}


def exit_status(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> int | None:
    """The run's exit status from its Job and pods: None while it goes on, the runner's exit
    code once its container ended, -1 when it ended without one (deleted, deadline, evicted,
    an image that can never run).

    Examples
    --------
    >>> done = {"status": {"phase": "Failed", "containerStatuses": [
    ...     {"name": "runner", "state": {"terminated": {"exitCode": 3}}}]}}
    >>> exit_status({"status": {}}, [done]), exit_status({"status": {}}, []), exit_status(None, [])
    (3, None, -1)
    >>> exit_status({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}, [])
    -1
    """
    for pod in pods:
        status = pod.get("status") or {}
        for c in status.get("containerStatuses") or []:
            if c.get("name") != CONTAINER:
                continue
            state = c.get("state") or {}
            if "terminated" in state:
                return int((state["terminated"] or {}).get("exitCode", -1))
            reason = ((state.get("waiting") or {}).get("reason")) or ""
            if reason in _PERMANENT_WAITING:
                return -1
        if status.get("phase") == "Succeeded":
            return 0
        if status.get("phase") == "Failed":
            return -1
    if job is None:
        return -1
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Failed", "FailureTarget"):
            return -1
        if cond.get("status") == "True" and cond.get("type") == "Complete":
            return 0
    return None

"""The Kubernetes executor: each job run is one ``batch/v1`` Job in one namespace.

:func:`~dass.jobs.kubejob.make_job` is the pure builder: an
:class:`~dass.jobs.spec.ExecutionSpec` and the two files the runner reads (``spec.json``,
``input.ipynb``) become a Job and the Secret it reads them from. The pod runs ``python -m dass.jobs.runner /job --log-stdout`` in the stack's image
with the size's CPU, memory and GPUs, as a non-root user without privileges or Kubernetes API
token; ``/job`` is an ``emptyDir`` into which the two files are mounted read-only, the job's
token comes from the Secret as ``$DASS_TOKEN``, and the runner reads its inputs and writes its
results and ``result.json`` through the data gateway (``$DASS_SERVICE_URL``): the pod shares no
folder with the service (``shares_files`` is False) and never holds a storage credential.

:class:`KubernetesExecutor` runs those objects: ``start`` creates the Job then the Secret
(owned by the Job, so Kubernetes deletes it with the Job); ``refresh``, once per scheduling
tick, reads the Jobs and pods of the runs it watches (by the label ``dass.job-id``) and their
logs; ``status`` and ``read_log`` answer from what it read
(:func:`~dass.jobs.kubejob.exit_status` maps a Job and its pods to an exit status);
``cancel`` keeps the log and deletes the Job with its pods and Secret; ``adopt`` finds a run again after a restart by its label. The log of an ended run
is kept in the job's folder on the service's side (``job.log``), so it outlives the pod.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, Integer, List, Unicode, default

from .. import __version__
from ..stacks.container import DEFAULT_GPU_RESOURCE, image_ref
from .executor import LOG_FILE, Executor, Handle
from .kubejob import (
    CONTAINER,
    COMPONENT_LABEL,
    JOB_ID_LABEL,
    NOTEBOOK_FILE,
    KubernetesJobError,
    exit_status,
    job_name,
    make_job,
    owned_by,
)
from .runner import SPEC_FILE
from .spec import ExecutionSpec


class KubernetesExecutor(Executor):
    """Jobs as Kubernetes Jobs (see the module docstring). Handle state: the Job's name and
    namespace, and the job's folder on the service's side (where the ended run's log is kept)."""

    name = "kubernetes"
    shares_files = False

    namespace = Unicode(
        help="""Namespace the Jobs run in (the service account of the dass service must be
        allowed to create, read, list, watch and delete Jobs, pods, pods/log and Secrets there;
        the Helm chart's Role does exactly that). Default: the service's own namespace when it
        runs in a pod, else ``default``.""",
    ).tag(config=True)

    image_prefix = Unicode(
        "",
        help="""Registry and folder put before a stack's image name that has none (as
        ``c.DassKubeSpawner.image_prefix``; set both alike).""",
    ).tag(config=True)

    image_tag = Unicode(
        __version__,
        help="Tag given to a stack's image that names none. Default: the dass version.",
    ).tag(config=True)

    python = Unicode("python3", help="The Python of the stack's image (with dass installed) that runs the job.").tag(
        config=True
    )

    workdir = Unicode("/job", help="The job's folder inside its pod (an emptyDir).").tag(config=True)

    uid = Integer(1000, help="User id the job runs as (never 0).").tag(config=True)
    gid = Integer(100, help="Group id the job runs as.").tag(config=True)
    fs_gid = Integer(100, help="Group owning the job's volumes (the pod's fsGroup).").tag(config=True)

    gpu_resource = Unicode(
        DEFAULT_GPU_RESOURCE, help="The extended resource a GPU size's jobs request (``nvidia.com/gpu``)."
    ).tag(config=True)
    node_selector = Dict(help="Node labels every job pod must run on.").tag(config=True)
    gpu_node_selector = Dict(
        {"nvidia.com/gpu.present": "true"},
        help="Node labels added for jobs of a GPU size (as ``c.DassKubeSpawner.gpu_node_selector``).",
    ).tag(config=True)
    gpu_tolerations = List(
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        help="Tolerations of jobs of a GPU size.",
    ).tag(config=True)
    cpu_request_fraction = Float(
        1.0, help="Part of a size's CPUs a job requests (its limit is always the size's CPUs)."
    ).tag(config=True)

    extra_labels = Dict(
        help="""Labels added to every Job and job pod (e.g. ``app.kubernetes.io/instance``, which
        the Helm chart's NetworkPolicies select job pods by).""",
    ).tag(config=True)

    service_account = Unicode(
        "",
        help="""Service account of the job pods. Empty: the namespace's default; the pods get
        no API token either way (``automountServiceAccountToken: false``).""",
    ).tag(config=True)

    ttl_seconds_after_finished = Integer(
        3600,
        help="""Seconds Kubernetes keeps an ended Job and its pod (then deletes them, with the
        Secret holding the job's files). The service keeps the log itself.""",
    ).tag(config=True)

    deadline_grace_seconds = Integer(
        300,
        help="""Seconds added to a job's timeout for the Job's ``activeDeadlineSeconds``: the
        service cancels a job at its timeout; Kubernetes ends it this much later if the service
        cannot.""",
    ).tag(config=True)

    api_url = Unicode(
        "",
        help="""Address of the Kubernetes API server. Empty: the in-cluster address when the
        service runs in a pod, else the kubeconfig's.""",
    ).tag(config=True)

    kubeconfig = Unicode(
        "", help="Kubeconfig file used outside a cluster. Empty: ``$KUBECONFIG`` or ``~/.kube/config``."
    ).tag(config=True)

    in_cluster = Bool(
        help="Use the pod's service account to reach the API. Default: true when running in a pod.",
    ).tag(config=True)

    log_refresh_seconds = Float(
        2.0, help="Seconds between two reads of a running job's log from its pod."
    ).tag(config=True)

    request_timeout = Float(30.0, help="Seconds one call to the Kubernetes API may take.").tag(config=True)

    @default("in_cluster")
    def _default_in_cluster(self) -> bool:
        return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not self.kubeconfig

    @default("namespace")
    def _default_namespace(self) -> str:
        try:
            return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
        except OSError:
            return "default"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clients: dict[int, Any] = {}  # event loop -> ApiClient (aiohttp sessions are per loop)
        self._codes: dict[str, int | None] = {}  # job id -> exit status as last read
        self._logs: dict[str, tuple[float, bytes]] = {}  # job id -> (read at, log)

    # -- the API ---------------------------------------------------------------------------------

    async def _configuration(self) -> Any:
        from kubernetes_asyncio import client, config

        cfg = client.Configuration()
        if self.in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            await config.load_kube_config(config_file=self.kubeconfig or None, client_configuration=cfg)
        if self.api_url:
            cfg.host = self.api_url.rstrip("/")
        return cfg

    async def _api(self) -> Any:
        """An ApiClient of the running event loop."""
        from kubernetes_asyncio import client

        loop = asyncio.get_running_loop()
        api = self._clients.get(id(loop))
        if api is None:
            for old in self._clients.values():  # made in a loop that has ended
                try:
                    await old.close()
                except Exception:  # noqa: BLE001 - its loop is gone
                    pass
            self._clients.clear()
            api = self._clients[id(loop)] = client.ApiClient(configuration=await self._configuration())
        return api

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One API call with a timeout and up to three tries on network errors (logged each);
        API answers (404, 409…) are raised at once."""
        import aiohttp
        from kubernetes_asyncio.client.exceptions import ApiException

        delay = 0.5
        for attempt in range(1, 4):
            try:
                return await asyncio.wait_for(fn(*args, **kwargs), self.request_timeout)
            except ApiException:
                raise
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                if attempt == 3:
                    raise KubernetesJobError(f"the Kubernetes API did not answer ({what}): {e}") from e
                self.log.warning("kubernetes: %s failed (%s); try %d of 3 in %.1f s", what, e, attempt + 1, delay)
                await asyncio.sleep(delay)
                delay *= 2

    def _image(self, spec: ExecutionSpec) -> str:
        return image_ref(spec.image, prefix=self.image_prefix, tag=self.image_tag)

    def build(self, spec: ExecutionSpec, files: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """:func:`make_job` with this executor's settings."""
        return make_job(
            spec, files=files, namespace=self.namespace, image=self._image(spec), python=self.python,
            workdir=self.workdir, uid=self.uid, gid=self.gid, fs_gid=self.fs_gid, gpu_resource=self.gpu_resource,
            node_selector=dict(self.node_selector), gpu_node_selector=dict(self.gpu_node_selector),
            gpu_tolerations=list(self.gpu_tolerations), service_account=self.service_account,
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            deadline_grace_seconds=self.deadline_grace_seconds, cpu_request_fraction=self.cpu_request_fraction,
            labels=dict(self.extra_labels),
        )

    def _handle(self, job_id: str, workdir: str) -> Handle:
        return Handle(job_id=job_id, executor=self.name,
                      state={"job": job_name(job_id), "namespace": self.namespace, "workdir": str(workdir)})

    # -- the Executor interface ------------------------------------------------------------------

    async def start(self, spec: ExecutionSpec) -> Handle:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        folder = Path(spec.cwd)
        files = {f: (folder / f).read_text(encoding="utf-8") for f in (SPEC_FILE, NOTEBOOK_FILE)}
        job, secret = self.build(spec, files)
        api = await self._api()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        name = job["metadata"]["name"]
        try:
            created = await self._call(f"create Job {name}", batch.create_namespaced_job, self.namespace, job)
            created = api.sanitize_for_serialization(created)
        except ApiException as e:
            if e.status != 409:
                raise KubernetesJobError(f"job {spec.job_id}: the cluster refused its Job: {e.reason}") from e
            # made before a restart of the service: the same run, not a second one
            self.log.warning("job %s: Job %s already exists; watching it", spec.job_id, name)
            created = api.sanitize_for_serialization(
                await self._call(f"read Job {name}", batch.read_namespaced_job, name, self.namespace))
        try:
            await self._call(f"create Secret {name}", core.create_namespaced_secret, self.namespace,
                             owned_by(secret, created))
        except ApiException as e:
            if e.status != 409:
                raise KubernetesJobError(f"job {spec.job_id}: the cluster refused its Secret: {e.reason}") from e
        self._codes[spec.job_id] = None
        self.log.info("job %s: Job %s created in %s (image %s)", spec.job_id, name, self.namespace,
                      job["spec"]["template"]["spec"]["containers"][0]["image"])
        return self._handle(spec.job_id, spec.cwd)

    async def refresh(self, handles: list[Handle]) -> None:
        """Read the Jobs and pods of ``handles`` (two list calls), their exit statuses and, at
        most every ``log_refresh_seconds`` while running and once at the end, their logs."""
        from kubernetes_asyncio import client

        mine = [h for h in handles if h.executor == self.name]
        if not mine:
            return
        from kubernetes_asyncio.client.exceptions import ApiException

        api = await self._api()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        selector = f"{COMPONENT_LABEL}=job"
        try:
            jobs = api.sanitize_for_serialization(
                await self._call("list Jobs", batch.list_namespaced_job, self.namespace, label_selector=selector))
            pods = api.sanitize_for_serialization(
                await self._call("list pods", core.list_namespaced_pod, self.namespace, label_selector=selector))
        except (ApiException, KubernetesJobError) as e:  # the runs' states stay as last read
            self.log.warning("kubernetes: cannot read the state of %d job(s) now: %s", len(mine), e)
            return
        by_id_job = {_label(j): j for j in jobs.get("items") or []}
        by_id_pods: dict[str, list] = {}
        for p in pods.get("items") or []:
            by_id_pods.setdefault(_label(p), []).append(p)
        for h in mine:
            code = exit_status(by_id_job.get(h.job_id), by_id_pods.get(h.job_id, []))
            pod_list = by_id_pods.get(h.job_id, [])
            if pod_list and (code is not None or self._log_due(h.job_id)):
                await self._read_pod_log(core, h, pod_list[0]["metadata"]["name"], final=code is not None)
            if code is not None and self._codes.get(h.job_id) is None:
                self.log.info("job %s: its pod ended with exit status %s", h.job_id, code)
            self._codes[h.job_id] = code

    def _log_due(self, job_id: str) -> bool:
        read_at = self._logs.get(job_id, (0.0, b""))[0]
        return time.monotonic() - read_at >= self.log_refresh_seconds

    async def _read_pod_log(self, core: Any, handle: Handle, pod: str, *, final: bool) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            text = await self._call(f"read log of {pod}", core.read_namespaced_pod_log, pod, self.namespace,
                                    container=CONTAINER)
        except (ApiException, KubernetesJobError) as e:
            self.log.warning("job %s: log of pod %s unreadable: %s", handle.job_id, pod, e)
            return
        data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text or b"")
        self._logs[handle.job_id] = (time.monotonic(), data)
        if final:
            self._keep_log(handle, data)

    def _keep_log(self, handle: Handle, data: bytes) -> None:
        """Keep an ended run's log in its folder on the service's side (it outlives the pod)."""
        folder = Path(str(handle.state.get("workdir") or ""))
        if data and folder.is_dir():
            (folder / LOG_FILE).write_bytes(data)

    def status(self, handle: Handle) -> int | None:
        return self._codes.get(handle.job_id)

    def read_log(self, handle: Handle, offset: int = 0, limit: int = 1024**2) -> bytes:
        kept = Path(str(handle.state.get("workdir") or "")) / LOG_FILE
        if kept.is_file():
            with open(kept, "rb") as f:
                f.seek(offset)
                return f.read(limit)
        data = self._logs.get(handle.job_id, (0.0, b""))[1]
        return data[offset: offset + limit]

    async def cancel(self, handle: Handle) -> None:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        api = await self._api()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        name, namespace = handle.state.get("job") or job_name(handle.job_id), handle.state.get("namespace") or self.namespace
        pods = api.sanitize_for_serialization(await self._call(
            "list pods", core.list_namespaced_pod, namespace, label_selector=f"{JOB_ID_LABEL}={handle.job_id}"))
        mine = [p for p in pods.get("items") or [] if _label(p) == handle.job_id]
        if mine:  # keep what it wrote so far: the pod's log goes with the pod
            await self._read_pod_log(core, handle, mine[0]["metadata"]["name"], final=True)
        self.log.info("job %s: deleting Job %s and its pods", handle.job_id, name)
        for what, fn in (("Job", batch.delete_namespaced_job), ("Secret", core.delete_namespaced_secret)):
            try:
                await self._call(f"delete {what} {name}", fn, name, namespace, propagation_policy="Background")
            except ApiException as e:
                if e.status != 404:
                    raise KubernetesJobError(f"job {handle.job_id}: the cluster refused to delete its {what}: {e.reason}") from e
        self._codes[handle.job_id] = 128 + 15  # ended by SIGTERM, as a cancelled local run

    def adopt(self, job_id: str, workdir: str, stored: Handle | None) -> Handle | None:
        """The stored handle; else the Job labelled with this job's id, when there is one
        (None: it was never created, the manager queues the job again)."""
        if stored is not None and stored.executor == self.name and stored.state.get("job"):
            self._codes.setdefault(job_id, None)
            return stored
        found = _run_in_own_loop(self._find(job_id))
        if not found:
            return None
        self.log.info("job %s: found its Job %s again by its label", job_id, found)
        self._codes.setdefault(job_id, None)
        return self._handle(job_id, workdir)

    async def _find(self, job_id: str) -> str | None:
        from kubernetes_asyncio import client

        cfg = await self._configuration()
        async with client.ApiClient(configuration=cfg) as api:
            jobs = api.sanitize_for_serialization(await self._call(
                "list Jobs", client.BatchV1Api(api).list_namespaced_job, self.namespace,
                label_selector=f"{JOB_ID_LABEL}={job_id}"))
        names = [j["metadata"]["name"] for j in jobs.get("items") or [] if _label(j) == job_id]
        return names[0] if names else None

    async def aclose(self) -> None:
        """Close the API client of the running loop (e.g. before the loop ends)."""
        api = self._clients.pop(id(asyncio.get_running_loop()), None)
        if api is not None:
            await api.close()

    def close(self) -> None:
        self._clients.clear()  # their sessions close with their loop


def _label(obj: dict[str, Any]) -> str:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(JOB_ID_LABEL, "")


def _run_in_own_loop(coro: Any) -> Any:
    """Run ``coro`` to its end from synchronous code, also when this thread runs an event loop
    (the manager adopts runs synchronously at start): in a thread with a loop of its own."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="k8s-adopt") as pool:
        return pool.submit(asyncio.run, coro).result()

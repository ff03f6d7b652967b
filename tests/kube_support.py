"""Kubernetes without a cluster, for the session, job and chart tests.

- :func:`validate`: every rendered object against the API schemas of every Kubernetes
  version the chart supports (``kubernetes-validate --strict``: unknown fields are errors).
- :func:`write_kubeconfig`: a syntactically valid kubeconfig (KubeSpawner loads one even to
  render manifests).
- :class:`Emulator`: kmock's ``KubernetesEmulator`` (an in-memory API server over HTTP) on a
  loopback port, in a thread of its own so that synchronous callers (the job manager's
  ``status``/``adopt``) and asynchronous ones (KubeSpawner) reach it alike, with the four
  gaps between it and a real API server filled (see ``../shared/ENVIRONMENT.md``): its bundled
  resource list loaded, ``metadata.uid``/``namespace``/``creationTimestamp`` stamped on
  create, new pods and Jobs given a ``status``, and ``watch=True`` taken as ``watch=true``. It
  also answers ``pods/<name>/log`` from :attr:`Emulator.logs`, else from
  :attr:`Emulator.log_reader` (the podman kubelet's). Pods never run by themselves: a test
  sets their status with :meth:`Emulator.set_pod_status`, or runs them with podman
  (:class:`tests.kubelet.Kubelet`, which is also the Job controller).
- :func:`job_pod`: the pod the Job controller makes from a Job's template (pure).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import os
import re
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (pip install 'dass[test]')"
)



def write_kubeconfig(path: Path, server: str = "https://127.0.0.1:6443", namespace: str = "dass") -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: test
  user: {{token: not-a-real-token}}
contexts:
- name: test
  context: {{cluster: test, user: test, namespace: {namespace}}}
current-context: test
"""
    )
    return path


# KubeSpawner loads a kubeconfig even to render a manifest, from $KUBECONFIG as it was when
# kubernetes_asyncio was imported: set one before that import (tests set the API's address
# with c.KubeSpawner.k8s_api_host / c.KubernetesExecutor.api_url)
if "KUBECONFIG" not in os.environ:
    if "kubernetes_asyncio.config" in sys.modules:
        raise RuntimeError("import tests.kube_support before kubernetes_asyncio (it sets $KUBECONFIG)")
    os.environ["KUBECONFIG"] = str(write_kubeconfig(Path(tempfile.mkdtemp(prefix="dass-kube-")) / "kubeconfig"))

#: the Kubernetes versions the chart supports (helm/dass/Chart.yaml kubeVersion: >=1.30)
KUBE_VERSIONS = ("1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")


def validate(obj: dict[str, Any], versions: tuple[str, ...] = KUBE_VERSIONS) -> None:
    """Fail with the object's kind, name, version and the schema's complaint when ``obj`` is
    not valid (strictly: no unknown field) for every version in ``versions``."""
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            name = (obj.get("metadata") or {}).get("name")
            path = "/".join(str(p) for p in e.path)
            pytest.fail(f"{obj.get('kind')}/{name} is invalid for Kubernetes {version} at {path}: {e.message}")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Emulator:
    """kmock's KubernetesEmulator on ``127.0.0.1:<port>`` in a thread (see the module docstring)."""

    def __init__(self) -> None:
        self.url = ""
        self.logs: dict[str, bytes] = {}  # pod name -> its log
        #: ``async (namespace, pod, container) -> bytes | None``: a pod's log when ``logs`` has none
        self.log_reader: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)
        self.emulator: Any = None

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> "Emulator":
        pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed (pip install 'dass[test]')")
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes emulator did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import kmock

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        emulator = _filled_emulator_class()()
        emulator.resources.load_bundled()  # gap 1: the API's resource list
        emulator.pod_logs = self.logs
        emulator.log_reader = lambda *args: self.log_reader(*args) if self.log_reader else None
        self.emulator = emulator
        async with emulator, kmock.Server(emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    # -- what tests do ----------------------------------------------------------------------------

    def call(self, coro_fn, *args: Any) -> Any:
        """Run ``coro_fn(emulator, *args)`` in the emulator's loop; returns its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(self.emulator, *args), self._loop).result(30)

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The live objects of ``resource`` (``"v1/pods"``, ``"batch/v1/jobs"``…)."""

        async def read(emu: Any) -> list[dict[str, Any]]:
            out = []
            for (res, ns, _name), obj in list(emu.objects.items()):
                if f"{res.group + '/' if res.group else ''}{res.version}/{res.plural}" == resource and not obj.deleted:
                    if namespace is None or ns == namespace:
                        out.append(copy.deepcopy(obj.raw))  # a snapshot: the store changes under it
            return out

        return self.call(read)

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        """One HTTP request to the emulator's API, as any client makes it (watchers are told
        of the change); returns ``(status, decoded JSON or text)``."""

        async def send(emu: Any) -> tuple[int, Any]:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                kwargs = {} if body is None else {"json": body, "headers": {"Content-Type": content_type}}
                async with http.request(method, f"{self.url}{path}", **kwargs) as r:
                    text = await r.text()
                    try:
                        return r.status, json.loads(text)
                    except ValueError:
                        return r.status, text

        return self.call(send)

    def patch(self, resource: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Change a stored object as a controller or the kubelet would (and tell watchers)."""

        async def apply(emu: Any) -> None:
            import aiohttp

            group_version, plural = resource.rsplit("/", 1)
            prefix = "/api/" if "/" not in group_version else "/apis/"
            url = f"{self.url}{prefix}{group_version}/namespaces/{namespace}/{plural}/{name}"
            async with aiohttp.ClientSession() as http:
                async with http.patch(url, json=patch, headers={"Content-Type": "application/merge-patch+json"}) as r:
                    assert r.status == 200, await r.text()

        self.call(apply)

    def create(self, resource: str, namespace: str, obj: dict[str, Any]) -> None:
        """Create an object as a controller would (e.g. the pod of a Job)."""

        async def post(emu: Any) -> None:
            import aiohttp

            group_version, plural = resource.rsplit("/", 1)
            prefix = "/api/" if "/" not in group_version else "/apis/"
            url = f"{self.url}{prefix}{group_version}/namespaces/{namespace}/{plural}"
            async with aiohttp.ClientSession() as http:
                async with http.post(url, json=obj) as r:
                    assert r.status in (200, 201), await r.text()

        self.call(post)

    def run_job_pod(self, job: dict[str, Any]) -> str:
        """What the Job controller does: create the Job's pod from its template; returns its name."""
        pod = job_pod(job, "x1")
        self.create("v1/pods", job["metadata"]["namespace"], pod)
        return pod["metadata"]["name"]

    def set_pod_status(self, namespace: str, name: str, phase: str, *, exit_code: int | None = None,
                       ip: str = "127.0.0.1") -> None:
        """What the kubelet would report: ``Running`` (ready, with an IP), or ended with
        ``exit_code`` (``Succeeded`` for 0, ``Failed`` otherwise)."""
        status: dict[str, Any] = {"phase": phase, "podIP": ip, "hostIP": ip, "startTime": _now()}
        if phase == "Running":
            status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]
            status["containerStatuses"] = [{"name": "notebook", "ready": True, "restartCount": 0, "image": "x",
                                            "imageID": "", "state": {"running": {"startedAt": _now()}}}]
        elif exit_code is not None:
            status["containerStatuses"] = [{"name": "runner", "ready": False, "restartCount": 0, "image": "x",
                                            "imageID": "", "state": {"terminated": {
                                                "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                                "startedAt": _now(), "finishedAt": _now()}}}]
        self.patch("v1/pods", namespace, name, {"status": status})


def job_pod(job: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The pod Kubernetes' Job controller makes for ``job`` (pure): named ``<job>-<suffix>``,
    its template's labels plus the ones the controller adds (``job-name``,
    ``batch.kubernetes.io/job-name``, ``controller-uid``…), owned by the Job (so that deleting
    the Job deletes it), its template's spec.

    Examples
    --------
    >>> job = {"metadata": {"name": "dass-job-1", "namespace": "dass", "uid": "u1"},
    ...        "spec": {"template": {"metadata": {"labels": {"dass.job-id": "1"}},
    ...                              "spec": {"containers": [{"name": "runner"}]}}}}
    >>> pod = job_pod(job, "x1")
    >>> pod["metadata"]["name"], pod["metadata"]["labels"]["job-name"], pod["metadata"]["ownerReferences"][0]["uid"]
    ('dass-job-1-x1', 'dass-job-1', 'u1')
    """
    meta = job["metadata"]
    template = job["spec"]["template"]
    labels = {**(template.get("metadata") or {}).get("labels", {}),
              "job-name": meta["name"], "batch.kubernetes.io/job-name": meta["name"]}
    pod_meta: dict[str, Any] = {"name": f"{meta['name']}-{suffix}", "namespace": meta["namespace"], "labels": labels}
    if meta.get("uid"):
        labels |= {"controller-uid": meta["uid"], "batch.kubernetes.io/controller-uid": meta["uid"]}
        pod_meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": copy.deepcopy(template["spec"])}


def _filled_emulator_class():
    """KubernetesEmulator with the gaps filled in its request handling (a subclass, as the
    emulator's own documentation advises for "special" behaviour)."""
    import attrs
    import kmock
    from kmock._internal import enums

    log_path = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")

    @attrs.define(kw_only=True)
    class FilledEmulator(kmock.KubernetesEmulator):
        pod_logs: dict = attrs.field(factory=dict)
        log_reader: Any = None

        async def _handle(self, request):  # noqa: ANN001 - kmock's Request
            import aiohttp.web

            match = log_path.match(request.url.path)
            if match and request.method == "GET":  # the pods/log sub-resource
                namespace, pod = match.groups()
                body = self.pod_logs.get(pod)
                if body is None and self.log_reader is not None:
                    reading = self.log_reader(namespace, pod, request.params.get("container"))
                    body = await reading if reading is not None else None
                return aiohttp.web.Response(body=body or b"", content_type="text/plain")
            if request.params.get("watch", "").lower() == "true" and request.action != enums.action.WATCH:
                # gap 4: watch=True; the emulator finds its requests by identity, so swap it there too
                watch = attrs.evolve(request, action=enums.action.WATCH)
                self._requests[:] = [watch if r is request else r for r in self._requests]
                request = watch
            if request.action == enums.action.CREATE and isinstance(request.data, dict):
                meta = request.data.setdefault("metadata", {})  # gap 2: what the API server stamps
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("namespace", request.namespace)
                meta.setdefault("creationTimestamp", _now())
                meta.setdefault("resourceVersion", "1")
                if request.resource is not None and request.resource.plural == "pods":
                    request.data.setdefault("status", {"phase": "Pending"})  # gap 3: a status
                elif request.resource is not None and request.resource.plural == "jobs":
                    request.data.setdefault("status", {})
            return await super()._handle(request)

    return FilledEmulator

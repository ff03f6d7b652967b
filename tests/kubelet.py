"""A node for the Kubernetes emulator: its pods run as podman containers on this machine.

kmock's emulator (:class:`tests.kube_support.Emulator`) stores objects; nothing runs them.
:class:`Kubelet` plays the parts of a one-node cluster that run things, for one namespace, by
polling the emulator's store and writing back through its HTTP API (so KubeSpawner's watches
see every change):

- **Job controller**: a Job without a pod gets one from its template (:func:`job_pod`: the
  ``job-name`` and ``controller-uid`` labels, owned by the Job); the Job's ``status`` follows
  its pod (``active``, ``startTime``; then ``succeeded``/``failed``, ``completionTime`` and the
  ``Complete``/``Failed`` conditions). One pod per Job: no retries (dass's Jobs have
  ``backoffLimit: 0``), no ``activeDeadlineSeconds``, no ``ttlSecondsAfterFinished``.
- **Garbage collector**: pods and Secrets whose owning Job is gone are deleted (what
  ``propagationPolicy: Background`` asks of a cluster).
- **Kubelet**: every pod gets a finalizer when admitted, so that a delete only marks it
  (``deletionTimestamp``) until its containers are gone, as a real kubelet's graceful
  deletion does. Its volumes are made (``persistentVolumeClaim``: one host folder per claim,
  kept across pods; ``emptyDir``; ``secret`` from the Secret's ``data``/``stringData``, with
  its items, modes and the pod's ``fsGroup``); a pod waits (``Pending``) until its Secrets and
  claims exist. Its init containers run one after the other, then its containers, each with
  ``podman run``: the image mapped to a local one (``image_for``; never pulled), ``command`` +
  ``args``, ``env`` (values, ``secretKeyRef``, ``fieldRef``) passed through podman's
  environment (never its command line), ``workingDir``, ``runAsUser``/``runAsGroup`` as
  ``--user`` and ``fsGroup``/``supplementalGroups`` as ``--group-add``, the CPU and memory
  limits as ``--cpus``/``--memory`` (both enforced on this machine, see the README),
  ``readOnlyRootFilesystem``, the volume mounts (``subPath``, ``readOnly``), on the host's
  network: a pod's IP is 127.0.0.1 and it listens on the host's ports. Containers always run
  without capabilities or new privileges and under an init process
  (:func:`dass.stacks.containers.podman_run_argv`, the container back end's own builder).
  The pod's ``status`` goes ``Pending`` → ``Running`` (``podIP`` 127.0.0.1, ``Ready``: there
  are no probes) → ``Succeeded``/``Failed`` with each container's exit code (``OOMKilled``
  when the kernel killed it). Containers are not restarted. ``pods/<name>/log`` is answered
  from ``podman logs`` (stdout and stderr), as long as the pod exists. An image that is not
  here leaves the pod ``Pending`` with ``ErrImageNeverPull``; what this kubelet cannot run (a
  volume kind it does not make, a container without ``runAsUser``) leaves it ``Pending`` with
  ``CreateContainerConfigError`` and a message saying what.
- When a pod is deleted its containers are stopped (``terminationGracePeriodSeconds``, at
  most ``grace_seconds``) and removed, its volumes (not its claims) removed, and its
  finalizer dropped, which ends its deletion.

Every container carries the label ``dass.test.kubelet=<pid>-<id>``: leaving the ``with`` block
removes all of this kubelet's containers and folders whatever happened in the test, and a new
kubelet removes those of kubelets whose test process died.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dass.stacks.containers import Bind, ContainerRun, container_name, container_state, podman, podman_run_argv
from tests.kube_support import Emulator, job_pod

log = logging.getLogger(__name__)

#: the finalizer that keeps a deleted pod until its containers are gone
FINALIZER = "dass.test/kubelet"
#: the label of every container a kubelet started: ``<pid>-<id>`` of the test process
LABEL = "dass.test.kubelet"
#: the IP every pod gets (host network)
POD_IP = "127.0.0.1"
#: what podman itself needs of this process's environment (a container's values are added)
_PODMAN_ENV = ("PATH", "HOME", "LANG", "XDG_RUNTIME_DIR", "CONTAINERS_CONF")
_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 1e-3}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value: Any) -> float:
    """A Kubernetes resource quantity (``"500m"``, ``"2"``, ``"4Gi"``, ``2147483648``) as a number.

    Examples
    --------
    >>> quantity("500m"), quantity("4Gi"), quantity(2.5), quantity("1e3")
    (0.5, 4294967296, 2.5, 1000.0)
    """
    if isinstance(value, (int, float)):
        return value
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)")
    number = float(match.group(1)) if any(c in match.group(1) for c in ".eE") else int(match.group(1))
    return number * _SUFFIXES[match.group(2)]


class PodNotReady(Exception):
    """What a pod needs is not there yet (a Secret, a claim): it stays Pending, tried again."""


class PodConfigError(Exception):
    """What this kubelet cannot run; the pod stays Pending with this message."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Volume:
    """A pod's volume on this machine."""

    path: Path
    read_only: bool = False


@dataclass
class _Pod:
    """What the kubelet holds of one admitted pod."""

    namespace: str
    name: str
    uid: str
    spec: dict[str, Any]
    folder: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: container name in the pod -> podman container name (those started)
    containers: dict[str, str] = field(default_factory=dict)
    terminating: bool = False
    waits: list[subprocess.Popen] = field(default_factory=list)


class Kubelet:
    """Runs the pods of ``namespace`` in ``emulator`` with podman (see the module docstring).

    ``image_for`` maps a pod's image reference to a local image (default: the same);
    ``poll_seconds`` is how often the store is read; ``pending_timeout`` how long a pod may
    wait for its Secrets and claims; ``grace_seconds`` caps a deleted pod's
    ``terminationGracePeriodSeconds``. Use it as a context manager.
    """

    def __init__(self, emulator: Emulator, *, namespace: str = "dass",
                 image_for: Callable[[str], str] = lambda image: image, poll_seconds: float = 0.2,
                 pending_timeout: float = 120, grace_seconds: int = 10,
                 podman_command: tuple[str, ...] = ("podman",)) -> None:
        self.emu = emulator
        self.namespace = namespace
        self.image_for = image_for
        self.poll_seconds = poll_seconds
        self.pending_timeout = pending_timeout
        self.grace_seconds = grace_seconds
        self.podman = podman_command
        self.run_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        #: what went wrong in the kubelet's own threads (tests assert it stays empty)
        self.errors: list[str] = []
        self._pods: dict[str, _Pod] = {}  # pod uid -> what runs it
        self._job_pods: dict[str, str] = {}  # Job uid -> the name of its pod
        self._job_phase: dict[str, str] = {}  # Job uid -> the pod phase last written to it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        #: the folder of the pods' volumes and the claims (``claims/<name>``), made on entering
        self.root = Path("/nonexistent")

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> "Kubelet":
        self._sweep_dead_kubelets()
        self.root = Path(tempfile.mkdtemp(prefix="dass-kubelet-", dir="/tmp"))
        self.root.chmod(0o755)  # the pods' users traverse it to their volumes
        (self.root / "claims").mkdir(mode=0o755)
        (self.root / "pods").mkdir(mode=0o755)
        self.emu.log_reader = self.read_log
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)
        self.emu.log_reader = None
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            with pod.lock:
                pod.terminating = True
        self._remove_containers(f"label={LABEL}={self.run_id}")
        for pod in pods:
            for wait in pod.waits:
                if wait.poll() is None:
                    wait.kill()
                    wait.wait(30)
        for thread in list(self._threads):
            thread.join(30)
        if self.root.name.startswith("dass-kubelet-"):
            shutil.rmtree(self.root, ignore_errors=True)

    def _remove_containers(self, label_filter: str) -> None:
        names = podman(self.podman, "ps", "--all", "--filter", label_filter, "--format", "{{.Names}}").stdout.split()
        if names:
            podman(self.podman, "rm", "--force", "--time", "0", "--ignore", *names)

    def _sweep_dead_kubelets(self) -> None:
        """Remove the containers of kubelets whose test process is gone (killed mid-test)."""
        out = podman(self.podman, "ps", "--all", "--filter", f"label={LABEL}",
                     "--format", f'{{{{.Names}}}} {{{{index .Labels "{LABEL}"}}}}').stdout
        for line in out.splitlines():
            name, _, run_id = line.partition(" ")
            pid = run_id.split("-", 1)[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                log.warning("kubelet: removing container %s of a test process that is gone", name)
                podman(self.podman, "rm", "--force", "--time", "0", "--ignore", name)

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        thread = threading.Thread(target=self._guarded, args=(target, *args), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except Exception as e:  # noqa: BLE001 - recorded for the test to see
            log.exception("kubelet: %s failed", getattr(target, "__name__", target))
            self.errors.append(f"{getattr(target, '__name__', target)}: {e!r}")

    # -- the API ------------------------------------------------------------------------------------

    def _path(self, resource: str, name: str = "") -> str:
        group_version, plural = resource.rsplit("/", 1)
        prefix = "/api/" if "/" not in group_version else "/apis/"
        return f"{prefix}{group_version}/namespaces/{self.namespace}/{plural}" + (f"/{name}" if name else "")

    def _patch(self, resource: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch an object; False when it is gone (deleted meanwhile)."""
        status, body = self.emu.request("PATCH", self._path(resource, name), patch, "application/merge-patch+json")
        if status == 404:
            return False
        if status != 200:
            raise RuntimeError(f"PATCH {resource}/{name}: {status} {body}")
        return True

    def _delete(self, resource: str, name: str) -> None:
        status, body = self.emu.request("DELETE", self._path(resource, name))
        if status not in (200, 202, 404):
            raise RuntimeError(f"DELETE {resource}/{name}: {status} {body}")

    def _get(self, resource: str, name: str) -> dict[str, Any] | None:
        for obj in self.emu.objects(resource, self.namespace):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    # -- the control loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self._sync()
            except Exception as e:  # noqa: BLE001 - the loop goes on; the test sees it
                log.exception("kubelet: sync failed")
                self.errors.append(f"sync: {e!r}")

    def _sync(self) -> None:
        jobs = self.emu.objects("batch/v1/jobs", self.namespace)
        pods = self.emu.objects("v1/pods", self.namespace)
        job_uids = {j["metadata"]["uid"] for j in jobs}
        by_owner: dict[str, dict[str, Any]] = {}
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Job":
                    by_owner[ref["uid"]] = pod
        # the Job controller
        for job in jobs:
            uid = job["metadata"]["uid"]
            pod = by_owner.get(uid)
            if pod is None and uid not in self._job_pods:
                made = job_pod(job, secrets.token_hex(3)[:5])
                status, body = self.emu.request("POST", self._path("v1/pods"), made)
                if status not in (200, 201):
                    raise RuntimeError(f"creating the pod of Job {job['metadata']['name']}: {status} {body}")
                self._job_pods[uid] = made["metadata"]["name"]
                self._patch("batch/v1/jobs", job["metadata"]["name"], {"status": {"active": 1, "startTime": _now()}})
            elif pod is not None:
                self._job_status(job, pod)
        # the garbage collector
        for kind, objects in (("v1/pods", pods), ("v1/secrets", self.emu.objects("v1/secrets", self.namespace))):
            for obj in objects:
                refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("kind") == "Job"]
                if refs and not any(r["uid"] in job_uids for r in refs) and not obj["metadata"].get("deletionTimestamp"):
                    log.info("kubelet: %s %s: its Job is gone; deleting it", kind, obj["metadata"]["name"])
                    self._delete(kind, obj["metadata"]["name"])
        # the kubelet
        live = set()
        for pod in pods:
            meta = pod["metadata"]
            live.add(meta["uid"])
            with self._lock:
                known = self._pods.get(meta["uid"])
            if meta.get("deletionTimestamp"):
                if known is not None and not known.terminating:
                    with known.lock:
                        known.terminating = True
                    self._spawn(self._terminate, known, pod, name=f"kubelet-stop-{meta['name']}")
                elif known is None and FINALIZER in (meta.get("finalizers") or []):
                    self._drop_finalizer(pod)
            elif known is None:
                self._admit(pod)
        with self._lock:
            gone = [p for uid, p in self._pods.items() if uid not in live and not p.terminating]
        for pod in gone:  # deleted before it was admitted, or its finalizer was removed by hand
            with pod.lock:
                pod.terminating = True
            self._spawn(self._terminate, pod, None, name=f"kubelet-stop-{pod.name}")

    def _job_status(self, job: dict[str, Any], pod: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if self._job_phase.get(uid) == phase or phase not in ("Succeeded", "Failed"):
            return
        now = _now()
        if phase == "Succeeded":
            status = {"active": 0, "succeeded": 1, "completionTime": now, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "lastTransitionTime": now, "lastProbeTime": now},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "lastTransitionTime": now, "lastProbeTime": now}]}
        else:
            status = {"active": 0, "failed": 1, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": now,
                 "lastProbeTime": now},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": now,
                 "lastProbeTime": now}]}
        if self._patch("batch/v1/jobs", job["metadata"]["name"], {"status": status}):
            self._job_phase[uid] = phase

    def _admit(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if not self._patch("v1/pods", meta["name"], {"metadata": {"finalizers": [*finalizers, FINALIZER]}}):
            return
        folder = self.root / "pods" / meta["uid"]
        folder.mkdir(mode=0o755)
        state = _Pod(meta["namespace"], meta["name"], meta["uid"], pod["spec"], folder)
        with self._lock:
            self._pods[meta["uid"]] = state
        self._spawn(self._run_pod, state, name=f"kubelet-pod-{meta['name']}")

    def _drop_finalizer(self, pod: dict[str, Any]) -> None:
        rest = [f for f in pod["metadata"].get("finalizers") or [] if f != FINALIZER]
        self._patch("v1/pods", pod["metadata"]["name"], {"metadata": {"finalizers": rest}})

    # -- one pod -------------------------------------------------------------------------------------

    def _status(self, pod: _Pod, status: dict[str, Any]) -> bool:
        """Write the pod's status unless it is being deleted; False when it is (or is gone)."""
        with pod.lock:
            if pod.terminating:
                return False
        return self._patch("v1/pods", pod.name, {"status": status})

    def _run_pod(self, pod: _Pod) -> None:
        spec = pod.spec
        started = _now()
        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": started}
        try:
            binds = self._volumes(pod)
            for c in (*spec.get("initContainers", []), *spec["containers"]):
                self._image(c)
        except PodConfigError as e:
            log.error("kubelet: pod %s cannot run: %s", pod.name, e)
            self._status(pod, {"phase": "Pending", "conditions": [scheduled], "containerStatuses": [
                _waiting(c, e.reason, str(e)) for c in spec["containers"]]})
            return
        if binds is None:
            return  # deleted while it waited
        init_statuses = []
        for c in spec.get("initContainers", []):
            self._status(pod, {"phase": "Pending", "hostIP": POD_IP, "podIP": POD_IP, "startTime": started,
                               "conditions": [scheduled, {"type": "Initialized", "status": "False",
                                                          "lastTransitionTime": _now()}],
                               "initContainerStatuses": [*init_statuses, _running(c, False)]})
            if not self._start(pod, c, binds):
                return
            ended = self._wait(pod, c)
            if ended is None:
                return
            init_statuses.append(_terminated(c, ended))
            if ended["exitCode"] != 0:
                self._status(pod, {"phase": "Failed", "conditions": [scheduled], "hostIP": POD_IP, "podIP": POD_IP,
                                   "startTime": started, "initContainerStatuses": init_statuses,
                                   "containerStatuses": [_waiting(c2, "PodInitializing", "")
                                                         for c2 in spec["containers"]]})
                return
        for c in spec["containers"]:
            if not self._start(pod, c, binds):
                return
        now = _now()
        ready = [scheduled] + [{"type": t, "status": "True", "lastTransitionTime": now}
                               for t in ("Initialized", "ContainersReady", "Ready")]
        if not self._status(pod, {"phase": "Running", "hostIP": POD_IP, "podIP": POD_IP,
                                  "podIPs": [{"ip": POD_IP}], "startTime": started, "conditions": ready,
                                  "initContainerStatuses": init_statuses,
                                  "containerStatuses": [_running(c, True) for c in spec["containers"]]}):
            return
        ends = []
        for c in spec["containers"]:
            ended = self._wait(pod, c)
            if ended is None:
                return
            ends.append(_terminated(c, ended))
        ok = all(s["state"]["terminated"]["exitCode"] == 0 for s in ends)
        now = _now()
        self._status(pod, {"phase": "Succeeded" if ok else "Failed", "conditions": [scheduled] + [
            {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
            for t in ("ContainersReady", "Ready")], "containerStatuses": ends})
        log.info("kubelet: pod %s ended (%s)", pod.name, "Succeeded" if ok else "Failed")

    def _image(self, c: dict[str, Any]) -> str:
        image = self.image_for(c["image"])
        if podman(self.podman, "image", "exists", image).returncode != 0:
            raise PodConfigError(f'container "{c["name"]}": image {image} (for {c["image"]}) is not on this '
                                 f"machine and is never pulled", "ErrImageNeverPull")
        return image

    def _start(self, pod: _Pod, c: dict[str, Any], binds: dict[str, _Volume]) -> bool:
        """Start container ``c`` of ``pod`` (detached); False when the pod is being deleted."""
        try:
            run = self.container_run(pod, c, binds)
        except PodConfigError as e:
            self._status(pod, {"phase": "Pending", "containerStatuses": [_waiting(c, e.reason, str(e))]})
            return False
        argv = podman_run_argv(run, podman=self.podman)
        extra = [a for g in self._groups(pod.spec) for a in ("--group-add", str(g))]
        argv[len(self.podman) + 1:len(self.podman) + 1] = extra  # right after "run"
        env = run.process_env({k: os.environ[k] for k in _PODMAN_ENV if k in os.environ})
        with pod.lock:
            if pod.terminating:
                return False
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                pod.containers[c["name"]] = run.name
        if done.returncode != 0:
            message = f'container "{c["name"]}" did not start: {done.stderr.strip()[-500:]}'
            log.error("kubelet: pod %s: %s", pod.name, message)
            self._status(pod, {"phase": "Failed", "containerStatuses": [_waiting(c, "RunContainerError", message)]})
            return False
        log.info("kubelet: pod %s: container %s started as %s", pod.name, c["name"], run.name)
        return True

    def _wait(self, pod: _Pod, c: dict[str, Any]) -> dict[str, Any] | None:
        """Wait for container ``c`` to end; its State, or None when the pod is being deleted."""
        name = pod.containers[c["name"]]
        with pod.lock:
            if pod.terminating:
                return None
            wait = subprocess.Popen([*self.podman, "wait", name], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            pod.waits.append(wait)
        wait.wait()
        with pod.lock:
            if pod.terminating:
                return None
        state = container_state(self.podman, name)
        if state is None:
            raise RuntimeError(f"pod {pod.name}: container {name} vanished")
        return {"exitCode": int(state.get("ExitCode", -1)), "oom": bool(state.get("OOMKilled")),
                "startedAt": _seconds(state.get("StartedAt")), "finishedAt": _seconds(state.get("FinishedAt"))}

    def _terminate(self, pod: _Pod, obj: dict[str, Any] | None) -> None:
        """Stop and remove the pod's containers and volumes, then let its deletion end."""
        grace = min(int(pod.spec.get("terminationGracePeriodSeconds", 30)), self.grace_seconds)
        with pod.lock:
            names = list(pod.containers.values())
        if names:
            podman(self.podman, "rm", "--force", "--ignore", "--time", str(grace), *names, timeout=grace + 120)
        log.info("kubelet: pod %s deleted; containers removed: %s", pod.name, ", ".join(names) or "none")
        shutil.rmtree(pod.folder, ignore_errors=True)
        with self._lock:
            self._pods.pop(pod.uid, None)
        if obj is not None:
            self._drop_finalizer(obj)

    # -- what a container gets -------------------------------------------------------------------------

    @staticmethod
    def _groups(spec: dict[str, Any]) -> list[int]:
        sc = spec.get("securityContext") or {}
        groups = [int(g) for g in sc.get("supplementalGroups") or []]
        if sc.get("fsGroup") is not None:
            groups.append(int(sc["fsGroup"]))
        return sorted(set(groups))

    def container_run(self, pod: _Pod, c: dict[str, Any], binds: dict[str, _Volume]) -> ContainerRun:
        """The :class:`~dass.stacks.containers.ContainerRun` of container ``c`` of ``pod``."""
        where = f'container "{c["name"]}" of pod {pod.name}'
        sc = {**(pod.spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        if sc.get("runAsUser") is None:
            raise PodConfigError(f"{where}: no runAsUser (this kubelet does not read the image's user)")
        uid = int(sc["runAsUser"])
        if uid == 0 and sc.get("runAsNonRoot"):
            raise PodConfigError(f"{where}: runAsNonRoot and runAsUser 0")
        user = f"{uid}:{int(sc['runAsGroup'])}" if sc.get("runAsGroup") is not None else str(uid)
        limits = (c.get("resources") or {}).get("limits") or {}
        mounts = []
        for m in c.get("volumeMounts") or []:
            if m["name"] not in binds:
                raise PodConfigError(f"{where}: volume {m['name']!r} is mounted but not declared")
            volume = binds[m["name"]]
            source = volume.path / m["subPath"] if m.get("subPath") else volume.path
            mounts.append(Bind(str(source), m["mountPath"], bool(m.get("readOnly")) or volume.read_only))
        return ContainerRun(
            name=container_name("k8s", pod.namespace, pod.name, c["name"]),
            image=self._image(c),
            argv=(*(c.get("command") or ()), *(c.get("args") or ())),
            user=user,
            env=self._env(pod, c, where),
            workdir=c.get("workingDir", ""),
            binds=tuple(mounts),
            cpu=float(quantity(limits["cpu"])) if "cpu" in limits else 0,
            mem_bytes=int(quantity(limits["memory"])) if "memory" in limits else 0,
            labels={LABEL: self.run_id, "io.kubernetes.pod.name": pod.name,
                    "io.kubernetes.pod.namespace": pod.namespace, "io.kubernetes.pod.uid": pod.uid,
                    "io.kubernetes.container.name": c["name"]},
            read_only=bool(sc.get("readOnlyRootFilesystem")),
        )

    def _env(self, pod: _Pod, c: dict[str, Any], where: str) -> dict[str, str]:
        if c.get("envFrom"):
            raise PodConfigError(f"{where}: envFrom is not supported by this kubelet")
        env = {}
        for e in c.get("env") or []:
            source = e.get("valueFrom")
            if source is None:
                env[e["name"]] = str(e.get("value", ""))
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[e["name"]] = self._secret_data(ref["name"], where).get(ref["key"], b"").decode()
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                fields = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid,
                          "status.podIP": POD_IP, "status.hostIP": POD_IP, "spec.nodeName": "podman"}
                if path not in fields:
                    raise PodConfigError(f"{where}: env {e['name']}: fieldRef {path} is not supported")
                env[e["name"]] = fields[path]
            else:
                raise PodConfigError(f"{where}: env {e['name']}: {sorted(source)} is not supported by this kubelet")
        return env

    def _secret_data(self, name: str, where: str) -> dict[str, bytes]:
        secret = self._get("v1/secrets", name)
        if secret is None:
            raise PodNotReady(f"{where}: Secret {name} not found")
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        data |= {k: v.encode() for k, v in (secret.get("stringData") or {}).items()}  # the API server merges them
        return data

    def _volumes(self, pod: _Pod) -> dict[str, _Volume] | None:
        """Each volume's folder on this machine, once its Secrets and claims exist (None when
        the pod is deleted while it waits)."""
        deadline = time.monotonic() + self.pending_timeout
        while True:
            try:
                return self._make_volumes(pod)
            except PodNotReady as e:
                if time.monotonic() > deadline:
                    raise PodConfigError(f"{e} after {self.pending_timeout} s") from None
                with pod.lock:
                    if pod.terminating:
                        return None
                self._stop.wait(self.poll_seconds)
                if self._stop.is_set():
                    return None

    def _make_volumes(self, pod: _Pod) -> dict[str, _Volume]:
        fs_group = (pod.spec.get("securityContext") or {}).get("fsGroup")
        out: dict[str, _Volume] = {}
        for v in pod.spec.get("volumes") or []:
            name, where = v["name"], f"volume {v['name']!r} of pod {pod.name}"
            if "emptyDir" in v:
                path = pod.folder / "empty" / name
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)  # as Kubernetes makes an emptyDir
            elif "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                if self._get("v1/persistentvolumeclaims", claim) is None:
                    raise PodNotReady(f"{where}: PersistentVolumeClaim {claim} not found")
                path = self.root / "claims" / claim
                if not path.exists():
                    path.mkdir()
                    if fs_group is not None:  # what a provisioner's volume gets with fsGroup
                        os.chown(path, 0, int(fs_group))
                        path.chmod(0o2775)
            elif "secret" in v:
                src = v["secret"]
                data = self._secret_data(src["secretName"], where)
                path = pod.folder / "secrets" / name
                path.mkdir(parents=True, exist_ok=True)
                items = src.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        raise PodConfigError(f"{where}: key {item['key']!r} is not in Secret {src['secretName']}")
                    target = path / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data[item["key"]])
                    target.chmod(int(item.get("mode", src.get("defaultMode", 0o644))))
                    if fs_group is not None:
                        os.chown(target, 0, int(fs_group))
            else:
                kind = sorted(k for k in v if k != "name")
                raise PodConfigError(f"{where}: this kubelet does not make volumes of kind {kind} "
                                     f"(emptyDir, persistentVolumeClaim and secret only)")
            out[name] = _Volume(path, read_only="secret" in v)  # a Secret's files are read-only in a pod
        return out

    # -- logs ----------------------------------------------------------------------------------------

    async def read_log(self, namespace: str, pod_name: str, container: str | None) -> bytes | None:
        """``pods/<name>/log``: the container's output (stdout and stderr, in order), from podman."""
        with self._lock:
            pod = next((p for p in self._pods.values() if p.name == pod_name and p.namespace == namespace), None)
        if pod is None:
            return None
        name = pod.containers.get(container or pod.spec["containers"][0]["name"])
        if name is None:
            return b""
        proc = await asyncio.create_subprocess_exec(*self.podman, "logs", name, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return out if proc.returncode == 0 else b""


def _seconds(stamp: str | None) -> str:
    """podman's time (RFC 3339 with nanoseconds) as the API writes it (whole seconds, UTC)."""
    if not stamp:
        return _now()
    try:
        return dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")) \
            .astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return _now()


def _running(c: dict[str, Any], ready: bool) -> dict[str, Any]:
    return {"name": c["name"], "image": c["image"], "imageID": "", "ready": ready, "started": True,
            "restartCount": 0, "state": {"running": {"startedAt": _now()}}}


def _waiting(c: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    return {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}


def _terminated(c: dict[str, Any], ended: dict[str, Any]) -> dict[str, Any]:
    code = ended["exitCode"]
    reason = "OOMKilled" if ended["oom"] else ("Completed" if code == 0 else "Error")
    return {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
            "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason,
                                                        "startedAt": ended["startedAt"],
                                                        "finishedAt": ended["finishedAt"]}}}


_IMAGE: list[str] = []


def podman_test_image() -> str:
    """The image every pod runs in these tests: the container tests' CI image (the base image:
    Debian, Python, JupyterLab, papermill, dass; no torch), built by
    :func:`tests.support.build_test_image` once per change of its inputs. Skips the calling
    test, saying why, where podman cannot run (not root, not installed: ``make podman``)."""
    import pytest

    from tests.support import ARTIFACTS, build_test_image, podman_missing

    if not _IMAGE:
        reason = podman_missing()
        if reason:
            pytest.skip(reason)
        ARTIFACTS.mkdir(exist_ok=True)
        tag, seconds = build_test_image(ARTIFACTS / "test-image-build.log")
        log.info("kubelet: test image %s ready in %.1f s", tag, seconds)
        _IMAGE.append(tag)
    return _IMAGE[0]


def containers_of(pod_name: str, podman_command: tuple[str, ...] = ("podman",)) -> list[str]:
    """The names of the containers (running or not) of the pod ``pod_name``."""
    out = podman(podman_command, "ps", "--all", "--filter", f"label=io.kubernetes.pod.name={pod_name}",
                 "--format", "{{.Names}}").stdout
    return out.split()


def inspect(name: str, podman_command: tuple[str, ...] = ("podman",)) -> dict[str, Any]:
    """``podman container inspect`` of container ``name``."""
    import json

    done = podman(podman_command, "container", "inspect", name)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]

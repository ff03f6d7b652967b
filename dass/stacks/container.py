"""Pure builders of what a stack and a size mean in a container: image, resources, security.

The Kubernetes session back end (:mod:`dass.hub.kubernetes`) and the Kubernetes job executor
(:mod:`dass.jobs.kubernetes`) render a session and a job from the same figures, so a size
means the same CPU, memory and GPUs in a pod as in a Job, and both run as the same non-root
user without privileges. Nothing here talks to a cluster; tests compare values.
"""

from __future__ import annotations

from typing import Any

#: the extended resource GPUs are requested as (NVIDIA's device plug-in)
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


def image_ref(image: str, *, prefix: str = "", tag: str = "") -> str:
    """The full reference of a stack's ``image``.

    A name without a registry gets ``prefix`` (e.g. ``"registry.example.org/dass/"``), and a
    name without a tag or digest gets ``tag``; a full reference is kept as it is.

    Examples
    --------
    >>> image_ref("dass-stack-sem", prefix="registry.example.org/dass/", tag="0.1.0")
    'registry.example.org/dass/dass-stack-sem:0.1.0'
    >>> image_ref("ghcr.io/lab/sem:2026.1", prefix="registry.example.org/dass/", tag="0.1.0")
    'ghcr.io/lab/sem:2026.1'
    >>> image_ref("")
    Traceback (most recent call last):
    ...
    ValueError: the stack has no image; set c.StackRegistry.stacks[<stack>]['image']
    """
    if not image:
        raise ValueError("the stack has no image; set c.StackRegistry.stacks[<stack>]['image']")
    last = image.rsplit("/", 1)[-1]
    first = image.split("/", 1)[0]
    # a registry host as docker reads one: a dot, a port or "localhost" before the first slash
    has_registry = "/" in image and ("." in first or ":" in first or first == "localhost")
    ref = image if has_registry or not prefix else prefix.rstrip("/") + "/" + image
    if ":" not in last and "@" not in last and tag:
        ref = f"{ref}:{tag}"
    return ref


def cpu_quantity(cpu: float) -> str:
    """A Kubernetes CPU quantity: whole cores as ``"2"``, fractions in millicores.

    Examples
    --------
    >>> cpu_quantity(2), cpu_quantity(0.5), cpu_quantity(1.25)
    ('2', '500m', '1250m')
    """
    milli = round(float(cpu) * 1000)
    if milli <= 0:
        raise ValueError(f"a size needs a positive CPU count, not {cpu!r}")
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def mem_quantity(mem_bytes: int) -> str:
    """A Kubernetes memory quantity: whole GiB or MiB when exact, else bytes.

    Examples
    --------
    >>> mem_quantity(2 * 1024**3), mem_quantity(1536 * 1024**2), mem_quantity(1000)
    ('2Gi', '1536Mi', '1000')
    """
    mem_bytes = int(mem_bytes)
    if mem_bytes <= 0:
        raise ValueError(f"a size needs a positive memory, not {mem_bytes!r}")
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2)):
        if mem_bytes % factor == 0:
            return f"{mem_bytes // factor}{unit}"
    return str(mem_bytes)


def resources(
    cpu: float,
    mem_bytes: int,
    gpus: int = 0,
    *,
    gpu_resource: str = DEFAULT_GPU_RESOURCE,
    cpu_request_fraction: float = 1.0,
) -> dict[str, dict[str, str]]:
    """Container ``resources`` of a size: its CPU and memory as limits and requests (memory is
    requested in full, so a node never overcommits it; CPU is requested at
    ``cpu_request_fraction`` of the limit), and its GPUs as limits of ``gpu_resource``
    (Kubernetes sets the request of an extended resource to its limit).

    Examples
    --------
    >>> resources(2, 4 * 1024**3, 1, cpu_request_fraction=0.5)
    {'requests': {'cpu': '1', 'memory': '4Gi'}, 'limits': {'cpu': '2', 'memory': '4Gi', 'nvidia.com/gpu': '1'}}
    """
    if not 0 < cpu_request_fraction <= 1:
        raise ValueError(f"cpu_request_fraction must be in (0, 1], not {cpu_request_fraction!r}")
    limits = {"cpu": cpu_quantity(cpu), "memory": mem_quantity(mem_bytes)}
    requests = {"cpu": cpu_quantity(max(float(cpu) * cpu_request_fraction, 0.001)), "memory": limits["memory"]}
    if gpus:
        limits[gpu_resource] = str(int(gpus))
    return {"requests": requests, "limits": limits}


def container_security_context(uid: int, gid: int) -> dict[str, Any]:
    """A container that runs as ``uid``:``gid`` (never root), cannot gain privileges, has no
    Linux capabilities and the runtime's default seccomp profile.

    Examples
    --------
    >>> container_security_context(1000, 100)["capabilities"]
    {'drop': ['ALL']}
    """
    if int(uid) == 0:
        raise ValueError("sessions and jobs never run as root: choose a uid other than 0")
    return {
        "runAsUser": int(uid),
        "runAsGroup": int(gid),
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context(uid: int, gid: int, fs_gid: int) -> dict[str, Any]:
    """The pod's part: the same user, and ``fs_gid`` owning the volumes (the home).

    Examples
    --------
    >>> pod_security_context(1000, 100, 100)["fsGroup"]
    100
    """
    return {
        "runAsUser": int(uid),
        "runAsGroup": int(gid),
        "runAsNonRoot": True,
        "fsGroup": int(fs_gid),
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def gpu_scheduling(
    gpus: int, *, node_selector: dict[str, str], gpu_node_selector: dict[str, str], gpu_tolerations: list[dict]
) -> tuple[dict[str, str], list[dict]]:
    """The node selector and tolerations of a run with ``gpus`` GPUs: the GPU ones added to
    the general selector only when the size has GPUs.

    Examples
    --------
    >>> gpu_scheduling(1, node_selector={"zone": "a"}, gpu_node_selector={"gpu": "true"},
    ...                gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    ({'zone': 'a', 'gpu': 'true'}, [{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}])
    >>> gpu_scheduling(0, node_selector={}, gpu_node_selector={"gpu": "true"}, gpu_tolerations=[])
    ({}, [])
    """
    if not gpus:
        return dict(node_selector), []
    return {**node_selector, **gpu_node_selector}, [dict(t) for t in gpu_tolerations]

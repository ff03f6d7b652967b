"""The Kubernetes back end of the dass spawner: each session is a pod (KubeSpawner).

:class:`DassKubeSpawner` is :class:`~dass.hub.spawner.DassSpawnerMixin` (form, validation,
access checks, the :class:`~dass.stacks.session.SessionSpec`, the data grant) on top of
KubeSpawner. Its :meth:`~DassKubeSpawner.render_session` only turns the spec into KubeSpawner's
settings through the pure :func:`pod_settings`; KubeSpawner then creates the user's home
volume claim and the pod, waits for it and stops it, as it always does.

What a session pod gets (and what it never gets):

- the stack's image (``c.StackRegistry.stacks[<stack>]['image']`` completed by
  ``image_prefix`` and ``image_tag``), the size's CPU and memory as requests and limits, a GPU
  size's ``nvidia.com/gpu`` (``gpu_resource``) with ``gpu_node_selector`` and
  ``gpu_tolerations``;
- one persistent volume claim per user for the home (``dass-home-<user>``, KubeSpawner's
  ``storage_*`` settings);
- a non-root user (``uid``/``gid``/``fs_gid``), no privilege escalation, no capabilities,
  the runtime's seccomp profile, no Kubernetes API token;
- the session's environment from the spec (``DASS_SERVICE_URL``, ``DASS_STACK``, thread-pool
  sizes) and JupyterHub's own (``JUPYTERHUB_API_TOKEN``: the session's token, which the data
  gateway knows through the grant made at spawn); an init container writes the session
  manifest (datasets, gateway; no storage location) and copies the stack's notebooks into
  the home. **No storage credential, database URL or platform secret ever reaches the pod.**
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubespawner import KubeSpawner
from traitlets import Dict, Float, List, Unicode, default

from .. import __version__
from ..stacks.container import (
    DEFAULT_GPU_RESOURCE,
    container_security_context,
    cpu_quantity,
    gpu_scheduling,
    image_ref,
    pod_security_context,
)
from ..stacks.session import SessionSpec
from .homes import LAB_PAGE_CONFIG
from .spawner import DassSpawnerMixin, _spawn_error

#: labels every session pod carries (NetworkPolicies and ``kubectl get -l`` select by them)
STACK_LABEL = "dass.stack"
SIZE_LABEL = "dass.size"
#: where the session manifest is written in the home
MANIFEST_REL = ".dass/session.json"

#: JupyterLab's configuration folder of a session (as the local back end has it)
LAB_CONFIG_REL = ".dass/jupyter-config"

#: the init container's script: write the manifest and JupyterLab's page config (no news
#: pop-up), copy the stack's notebooks once (a user's own changes to them are kept: ``cp -n``
#: never overwrites)
INIT_SCRIPT = r"""set -eu
mkdir -p "$HOME/.dass/jupyter-config/labconfig" "$HOME/notebooks"
umask 077
printf '%s' "$DASS_MANIFEST_B64" | base64 -d > "$HOME/.dass/session.json.tmp"
mv -f "$HOME/.dass/session.json.tmp" "$HOME/.dass/session.json"
printf '%s' "$DASS_LAB_CONFIG_B64" | base64 -d > "$HOME/.dass/jupyter-config/labconfig/page_config.json"
src="$("$DASS_PYTHON" -c 'import dass, os, sys; print(os.path.join(os.path.dirname(dass.__file__), "notebooks", sys.argv[1]))' "$DASS_STACK")"
if [ -d "$src" ]; then cp -Rn "$src" "$HOME/notebooks/"; fi
"""


def session_manifest(spec: SessionSpec) -> dict[str, Any]:
    """The manifest ``dass.data.datasets()`` reads in the pod: the datasets through the
    gateway (``dass://``), no local view, no storage location (see
    :func:`dass.data.mount.write_manifest`, of which this is the pod's form)."""
    from ..data.mount import MANIFEST_VERSION

    return {
        "version": MANIFEST_VERSION,
        "stack": spec.stack,
        "size": spec.size,
        "service_url": spec.service_url,
        "local_copy_max_bytes": None,
        "datasets": [
            {"id": d.id, "proposal": d.proposal, "name": d.name, "url": f"dass://{d.id}", "mount": None,
             "metadata": {"title": d.title} if d.title else {}}
            for d in spec.datasets
        ],
    }


def pod_settings(
    spec: SessionSpec,
    *,
    image_prefix: str = "",
    image_tag: str = "",
    home: str = "/home/jovyan",
    python: str = "python3",
    uid: int = 1000,
    gid: int = 100,
    gpu_resource: str = DEFAULT_GPU_RESOURCE,
    node_selector: dict[str, str] | None = None,
    gpu_node_selector: dict[str, str] | None = None,
    gpu_tolerations: list[dict] | None = None,
    cpu_request_fraction: float = 1.0,
) -> dict[str, Any]:
    """KubeSpawner's settings for the session of ``spec`` (pure: values in, values out).

    Returns a dict of KubeSpawner trait names to values: ``image``, ``cpu_limit``,
    ``cpu_guarantee``, ``mem_limit``, ``mem_guarantee``, ``extra_resource_limits``,
    ``node_selector``, ``tolerations``, ``extra_labels``, ``environment``, ``init_containers``
    and ``default_url``.

    Examples
    --------
    >>> from dass.stacks.runtime import Limits
    >>> spec = SessionSpec(user="alice", server_name="", stack="sem", size="gpu", datasets=(),
    ...                    image="dass-stack-sem", environment="", default_url="/lab",
    ...                    limits=Limits(cpu=4, mem_bytes=16 * 1024**3, gpus=1),
    ...                    service_url="http://dass:8001/services/dass/")
    >>> s = pod_settings(spec, image_prefix="registry.example.org/dass", image_tag="0.1.0",
    ...                  gpu_node_selector={"nvidia.com/gpu.present": "true"})
    >>> s["image"], s["mem_limit"], s["extra_resource_limits"], s["node_selector"]
    ('registry.example.org/dass/dass-stack-sem:0.1.0', 17179869184, {'nvidia.com/gpu': '1'}, {'nvidia.com/gpu.present': 'true'})
    """
    lim = spec.limits
    selector, tolerations = gpu_scheduling(
        lim.gpus,
        node_selector=node_selector or {},
        gpu_node_selector=gpu_node_selector or {},
        gpu_tolerations=gpu_tolerations or [],
    )
    image = image_ref(spec.image, prefix=image_prefix, tag=image_tag)
    init = {
        "name": "dass-session-setup",
        "image": image,
        "command": ["/bin/sh", "-c", INIT_SCRIPT],
        "env": [
            {"name": "HOME", "value": home},
            {"name": "DASS_STACK", "value": spec.stack},
            {"name": "DASS_PYTHON", "value": python},
            # base64: KubeSpawner expands {braces} in what it is given, and JSON is full of them
            {"name": "DASS_MANIFEST_B64", "value": base64.b64encode(
                json.dumps(session_manifest(spec), sort_keys=True).encode()).decode()},
            {"name": "DASS_LAB_CONFIG_B64", "value": base64.b64encode(LAB_PAGE_CONFIG.encode()).decode()},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": cpu_quantity(lim.cpu), "memory": "512Mi"},
        },
        "securityContext": container_security_context(uid, gid),
        "volumeMounts": [{"name": "home", "mountPath": home}],
    }
    return {
        "image": image,
        "cpu_limit": float(lim.cpu),
        "cpu_guarantee": float(lim.cpu) * cpu_request_fraction,
        "mem_limit": int(lim.mem_bytes),
        "mem_guarantee": int(lim.mem_bytes),
        "extra_resource_limits": {gpu_resource: str(lim.gpus)} if lim.gpus else {},
        "node_selector": selector,
        "tolerations": tolerations,
        "extra_labels": {STACK_LABEL: spec.stack, SIZE_LABEL: spec.size},
        "environment": {
            **dict(spec.env),
            "HOME": home,
            "DASS_SESSION_MANIFEST": f"{home}/{MANIFEST_REL}",
            "JUPYTER_CONFIG_PATH": f"{home}/{LAB_CONFIG_REL}",
        },
        "init_containers": [init],
        "default_url": spec.default_url,
    }


class DassKubeSpawner(DassSpawnerMixin, KubeSpawner):
    """Sessions as Kubernetes pods (see the module docstring).

    Configure it like KubeSpawner (``c.KubeSpawner.namespace``, ``storage_class``…); the image,
    limits, labels, environment and init container of each pod come from the validated
    choice of stack, size and datasets and are not settings.
    """

    size_note = "CPU, memory and GPUs of the chosen size are the pod's requests and limits."

    image_prefix = Unicode(
        "",
        help="""Registry and folder put before a stack's image name that has none, e.g.
        ``registry.example.org/dass/`` (``dass-stack-sem`` becomes
        ``registry.example.org/dass/dass-stack-sem:<image_tag>``). Empty: the name as it is
        (images loaded into the nodes' runtime, or a registry mirror configured there).""",
    ).tag(config=True)

    image_tag = Unicode(
        __version__,
        help="""Tag given to a stack's image that names none. Default: the dass version, the
        tag ``make images`` gives the images it builds.""",
    ).tag(config=True)

    python = Unicode(
        "python3",
        help="The Python of the stack's image (with dass installed) that the session's setup step runs.",
    ).tag(config=True)

    home_path = Unicode(
        "/home/jovyan",
        help="Where the user's home volume is mounted in the session (``$HOME``).",
    ).tag(config=True)

    gpu_resource = Unicode(
        DEFAULT_GPU_RESOURCE,
        help="""The extended resource a GPU size requests (``gpus`` of
        ``c.StackRegistry.sizes``), as many as the size has: ``nvidia.com/gpu`` for NVIDIA's
        device plug-in, ``amd.com/gpu`` for AMD's.""",
    ).tag(config=True)

    gpu_node_selector = Dict(
        {"nvidia.com/gpu.present": "true"},
        help="""Node labels a session of a GPU size must run on, added to
        ``c.KubeSpawner.node_selector``. Default: the label NVIDIA's GPU feature discovery
        sets. Sessions of sizes without GPUs get only ``node_selector``.""",
    ).tag(config=True)

    gpu_tolerations = List(
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        help="""Tolerations of sessions of a GPU size (GPU nodes are often tainted so that
        nothing else lands there), added to ``c.KubeSpawner.tolerations``.""",
    ).tag(config=True)

    cpu_request_fraction = Float(
        1.0,
        help="""Part of a size's CPUs a session requests (its limit is always the size's
        CPUs): 1 reserves them in full; 0.25 lets four idle sessions share a core's worth of
        requests. Memory is always requested in full.""",
    ).tag(config=True)

    # -- KubeSpawner's defaults, as dass wants them --------------------------------------------

    @default("uid")
    def _default_uid(self):
        return 1000

    @default("gid")
    def _default_gid(self):
        return 100

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("automount_service_account_token")
    def _default_automount(self):
        return False  # a session never talks to the Kubernetes API

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        return "dass-home-{username}"  # one home per user, shared by their named servers

    @default("storage_capacity")
    def _default_storage_capacity(self):
        return "10Gi"

    @default("volumes")
    def _default_volumes(self):
        return {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}}

    @default("volume_mounts")
    def _default_volume_mounts(self):
        return {"home": {"name": "home", "mountPath": self.home_path}}

    @default("container_security_context")
    def _default_container_security_context(self):
        return container_security_context(self.uid, self.gid)

    @default("pod_security_context")
    def _default_pod_security_context(self):
        return pod_security_context(self.uid, self.gid, self.fs_gid)

    @default("working_dir")
    def _default_working_dir(self):
        return self.home_path

    @default("cmd")
    def _default_cmd(self):
        return ["jupyterhub-singleuser"]  # not the image's CMD: JupyterHub's arguments must reach it

    # -- the seam ----------------------------------------------------------------------------

    def _configured(self) -> dict[str, Any]:
        """The deployer's own values of the traits a spawn sets, taken at the first spawn:
        each spawn adds to them, never to the previous spawn's."""
        return self.__dict__.setdefault("_dass_configured", {
            "tolerations": self._sorted_dict_values(self.tolerations),
            "node_selector": dict(self.node_selector),
            "extra_labels": dict(self.extra_labels),
            "environment": dict(self.environment),
            "init_containers": self._sorted_dict_values(self.init_containers),
        })

    def pod_settings(self, spec: SessionSpec) -> dict[str, Any]:
        """:func:`pod_settings` with this spawner's settings."""
        return pod_settings(
            spec,
            image_prefix=self.image_prefix,
            image_tag=self.image_tag,
            home=self.home_path,
            python=self.python,
            uid=int(self.uid),
            gid=int(self.gid),
            gpu_resource=self.gpu_resource,
            node_selector=self._configured()["node_selector"],
            gpu_node_selector=dict(self.gpu_node_selector),
            gpu_tolerations=list(self.gpu_tolerations),
            cpu_request_fraction=self.cpu_request_fraction,
        )

    async def render_session(self, spec: SessionSpec) -> None:
        """Set KubeSpawner's traits from ``spec``; KubeSpawner's ``start`` then makes the
        home's claim and the pod."""
        base = self._configured()
        try:
            settings = self.pod_settings(spec)
        except ValueError as e:
            self.log.error("Cannot start %s: %s", self._log_name, e)
            raise _spawn_error(f"the stack {spec.stack!r} cannot start on this cluster: {e}") from None
        settings["tolerations"] = [*base["tolerations"], *settings["tolerations"]]
        settings["extra_labels"] = {**base["extra_labels"], **settings["extra_labels"]}
        settings["environment"] = {**base["environment"], **settings["environment"]}
        settings["init_containers"] = [*base["init_containers"], *settings["init_containers"]]
        for name, value in settings.items():
            setattr(self, name, value)
        self.log.info("Session pod of %s: image %s, stack %s, size %s", self._log_name, self.image, spec.stack, spec.size)

"""The Kubernetes session back end: pod manifests by value for every stack × size (validated
for every supported Kubernetes version), and spawn → ready → stop against the emulator."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
from types import SimpleNamespace

import fsspec
import pytest
from traitlets.config import Config

from tests.kube_support import Emulator, validate

pytest.importorskip("kubespawner", reason="jupyterhub-kubespawner is not installed (pip install 'dass[k8s]')")

from kubernetes_asyncio.client import ApiClient  # noqa: E402

from dass.hub.kubernetes import DassKubeSpawner, pod_settings  # noqa: E402
from dass.stacks.registry import StackRegistry  # noqa: E402
from dass.stacks.selection import Selection  # noqa: E402
from dass.stacks.session import build_session_spec  # noqa: E402

SERVICE = "http://dass-service.dass.svc:10101/services/dass/"
GPU_SIZE = {"gpu": {"display_name": "GPU: 8 CPU, 32 GiB, 1 GPU", "cpu": 8, "mem_gib": 32, "gpus": 1}}
SECRET_WORDS = ("aws_", "secret_access", "storage_options", "db_url", "sqlite", "postgresql", "cookie_secret")


def _config(**spawner) -> Config:
    c = Config()
    c.StackRegistry.sizes = GPU_SIZE
    c.StackRegistry.stacks = {name: {"allowed_sizes": ["small", "medium", "large", "gpu"]} for name in ("sem", "kmap", "stm")}
    c.DassSpawnerMixin.service_url = SERVICE
    c.DassKubeSpawner.image_prefix = "registry.example.org/dass/"
    c.KubeSpawner.namespace = "dass"
    for key, value in spawner.items():
        setattr(c.DassKubeSpawner, key, value)
    return c


def _user(name="alice"):
    return SimpleNamespace(name=name, id=1, url=f"/user/{name}/", groups=[SimpleNamespace(name="p-2026-001")],
                           admin=False)


def _spec(registry: StackRegistry, stack: str, size: str, token="hub-token-of-the-session"):
    ds = SimpleNamespace(id="p-2026-001/sem-nanowires", proposal="p-2026-001", name="sem-nanowires", title="Nanowires")
    selection = Selection(registry.get(stack), registry.all_sizes[size], (ds,))
    return build_session_spec(selection, user="alice", service_url=SERVICE, token=token)


@pytest.fixture
def kubeconfig():
    """KubeSpawner renders after loading a kubeconfig (tests.kube_support set one)."""


async def _manifests(config: Config, stack: str, size: str):
    spawner = DassKubeSpawner(_mock=True, config=config, user=_user())
    spec = _spec(spawner.registry, stack, size)
    spawner.session_spec = spec
    spawner.api_token = spec.token
    await spawner.render_session(spec)
    await spawner.load_user_options()
    pod = ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
    pvc = ApiClient().sanitize_for_serialization(spawner.get_pvc_manifest())
    return spawner, pod, pvc


def test_every_stack_and_size_renders_a_valid_pod(kubeconfig):
    config = _config()
    registry = StackRegistry(config=config)

    async def render_all():
        return {(stack, size): await _manifests(config, stack, size)
                for stack, s in registry.all_stacks.items() for size in s.allowed_sizes}

    rendered = asyncio.run(render_all())
    assert len(rendered) == len(registry.all_stacks) * 4
    for (stack, size_name), (spawner, pod, pvc) in rendered.items():
        size = registry.all_sizes[size_name]
        validate(pod)
        validate(pvc)
        container = pod["spec"]["containers"][0]
        assert container["image"] == f"registry.example.org/dass/dass-stack-{stack}:0.1.0"
        res = container["resources"]
        assert res["limits"]["cpu"] == res["requests"]["cpu"] == size.cpu
        assert int(res["limits"]["memory"]) == int(res["requests"]["memory"]) == size.mem_bytes
        if size.gpus:
            assert res["limits"]["nvidia.com/gpu"] == "1"
            assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "nvidia.com/gpu" not in res["limits"]
            assert not pod["spec"].get("nodeSelector") and not pod["spec"].get("tolerations")
        # non-root, no privileges, no API token
        sc = container["securityContext"]
        assert sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and not sc.get("privileged")
        assert pod["spec"]["securityContext"]["fsGroup"] == 100
        assert pod["spec"]["automountServiceAccountToken"] is False
        # the home: one claim per user, mounted at $HOME
        assert pvc["metadata"]["name"] == "dass-home-alice"
        assert {"name": "home", "persistentVolumeClaim": {"claimName": "dass-home-alice"}} in pod["spec"]["volumes"]
        assert {"name": "home", "mountPath": "/home/jovyan"} in container["volumeMounts"]
        # labels the NetworkPolicies and operators select by
        labels = pod["metadata"]["labels"]
        assert labels["component"] == "singleuser-server"
        assert (labels["dass.stack"], labels["dass.size"]) == (stack, size_name)
        # the environment: the gateway and the session's own token, nothing of the platform's
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DASS_SERVICE_URL"] == SERVICE and env["DASS_STACK"] == stack and env["DASS_SIZE"] == size_name
        assert env["JUPYTERHUB_API_TOKEN"] == "hub-token-of-the-session"
        assert env["OMP_NUM_THREADS"] == str(int(size.cpu))
        assert env["DASS_SESSION_MANIFEST"] == "/home/jovyan/.dass/session.json"
        assert env["JUPYTER_CONFIG_PATH"] == "/home/jovyan/.dass/jupyter-config"
        assert container["args"][0] == "jupyterhub-singleuser"
        init = pod["spec"]["initContainers"][0]
        assert init["name"] == "dass-session-setup" and init["securityContext"] == sc | {"runAsGroup": 100}
        manifest = json.loads(base64.b64decode(next(e["value"] for e in init["env"] if e["name"] == "DASS_MANIFEST_B64")))
        assert manifest["datasets"][0]["url"] == "dass://p-2026-001/sem-nanowires"
        assert manifest["service_url"] == SERVICE
        text = json.dumps(pod).lower()
        assert not [w for w in SECRET_WORDS if w in text], "a platform secret or storage setting reached the pod"


def test_deployer_settings_are_kept_and_spawns_do_not_accumulate(kubeconfig):
    config = _config(gpu_node_selector={"gpu": "a100"}, image_tag="2026.12")
    config.KubeSpawner.node_selector = {"pool": "users"}
    config.KubeSpawner.tolerations = [{"key": "users", "operator": "Exists", "effect": "NoSchedule"}]
    config.KubeSpawner.extra_labels = {"facility": "nffa"}

    async def twice():
        spawner = DassKubeSpawner(_mock=True, config=config, user=_user())
        for size in ("gpu", "gpu", "small"):
            spec = _spec(spawner.registry, "sem", size)
            spawner.session_spec = spec
            await spawner.render_session(spec)
        return ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest()), spawner

    pod, spawner = asyncio.run(twice())
    # the dass form and validation, not KubeSpawner's profile list
    from dass.stacks.selection import options_from_form

    assert spawner.options_from_form is options_from_form
    assert spawner.options_form == DassKubeSpawner.render_options_form
    validate(pod)
    assert pod["spec"]["nodeSelector"] == {"pool": "users"}
    assert pod["spec"]["tolerations"] == [{"key": "users", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["metadata"]["labels"]["facility"] == "nffa"
    assert pod["spec"]["containers"][0]["image"].endswith("dass-stack-sem:2026.12")
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["dass-session-setup"]


def test_pod_settings_by_value():
    registry = StackRegistry(config=_config())
    spec = _spec(registry, "kmap", "gpu")
    s = pod_settings(spec, image_tag="1", gpu_resource="amd.com/gpu", gpu_node_selector={"gpu": "mi300"},
                     cpu_request_fraction=0.25)
    assert s["image"] == "dass-stack-kmap:1"
    assert (s["cpu_limit"], s["cpu_guarantee"], s["mem_guarantee"]) == (8.0, 2.0, 32 * 1024**3)
    assert s["extra_resource_limits"] == {"amd.com/gpu": "1"} and s["node_selector"] == {"gpu": "mi300"}
    assert s["default_url"] == "/lab/tree/notebooks/kmap/welcome.ipynb"
    with pytest.raises(ValueError, match="no image"):
        pod_settings(spec.__class__(**{**spec.__dict__, "image": ""}))


# -- spawn, ready, stop against the emulator ------------------------------------------------------


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory):
    from dass.data.catalog import Catalog
    from dass.data.storage import Storage
    from dass.demo import seed

    tmp = tmp_path_factory.mktemp("k8s-repo")
    seed(fsspec.filesystem("file"), str(tmp / "repo"), today=datetime.date(2026, 11, 22))
    cfg = Config()
    cfg.Storage.url = f"file://{tmp / 'repo'}"
    cfg.Catalog.db_url = f"sqlite:///{tmp / 'catalog.sqlite'}"
    cat = Catalog(config=cfg)
    cat.upgrade()
    assert not cat.scan(Storage(config=cfg)).errors
    return cfg


async def _with_own_reflectors(flow):
    """``await flow()``, then stop KubeSpawner's reflectors: it shares them class-wide between the
    spawners of a process, and these watch this test's emulator, which ends with the test (a
    later test's spawner would otherwise watch a dead API and never see its pod)."""
    try:
        return await flow()
    finally:
        await DassKubeSpawner._stop_all_reflectors()  # KubeSpawner's own hook for tests


def test_spawn_ready_stop_against_the_emulator(tmp_path, monkeypatch, demo_catalog):
    from dass.data.grants import Grants

    with Emulator() as emu:
        config = _config()
        config.merge(demo_catalog)
        config.KubeSpawner.k8s_api_host = emu.url
        config.KubeSpawner.start_timeout = 60
        config.KubeSpawner.events_enabled = False

        async def flow():
            spawner = DassKubeSpawner(_mock=True, config=config, user=_user())
            spawner.api_token = "session-token-of-alice"
            spawner.user_options = {"stack": "stm", "size": "gpu", "datasets": ["p-2026-001/sem-nanowires"]}
            started = asyncio.ensure_future(spawner.start())
            pod = None
            deadline = time.monotonic() + 30
            while pod is None and time.monotonic() < deadline:  # the kubelet's part: run the pod
                await asyncio.sleep(0.1)
                pods = await asyncio.to_thread(emu.objects, "v1/pods", "dass")
                pod = pods[0] if pods else None
            assert pod is not None, "no pod was created"
            await asyncio.to_thread(emu.set_pod_status, "dass", pod["metadata"]["name"], "Running")
            url = await asyncio.wait_for(started, 60)
            grant = Grants(spawner.catalog.engine, cache_seconds=0).get("session-token-of-alice")
            state = spawner.get_state()
            polled = await spawner.poll()
            await spawner.stop(now=True)
            return url, pod, grant, state, polled, spawner

        url, pod, grant, state, polled, spawner = asyncio.run(_with_own_reflectors(flow))
        validate(pod)
        assert url == "http://127.0.0.1:8888" or url.endswith(":8888")
        assert polled is None  # running
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert [p["metadata"]["name"] for p in emu.objects("v1/persistentvolumeclaims", "dass")] == ["dass-home-alice"]
        assert emu.objects("v1/pods", "dass") == []  # stopped: the pod is gone
        assert state["pvc_name"] == "dass-home-alice"
        assert grant is not None and grant.read == {"p-2026-001/sem-nanowires"}
        assert Grants(spawner.catalog.engine, cache_seconds=0).get("session-token-of-alice") is None  # revoked at stop


def test_the_setup_script_writes_the_manifest_and_notebooks_once(kubeconfig, tmp_path):
    """The init container's script, run here with /bin/sh as the pod would: the manifest and
    JupyterLab's page config are rewritten at every start, the stack's notebooks copied once
    (a user's changes survive the next start)."""
    import subprocess
    import sys

    config = _config()

    async def render():
        spawner = DassKubeSpawner(_mock=True, config=config, user=_user())
        spec = _spec(spawner.registry, "sem", "small")
        return pod_settings(spec, python=sys.executable)["init_containers"][0]

    init = asyncio.run(render())
    import os

    env = {e["name"]: e["value"] for e in init["env"]} | {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    env |= {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}  # this checkout's dass
    for _ in range(2):
        subprocess.run(init["command"], env=env, check=True, timeout=60)
        manifest = json.loads((tmp_path / ".dass" / "session.json").read_text())
        assert manifest["datasets"][0]["id"] == "p-2026-001/sem-nanowires" and manifest["service_url"] == SERVICE
        welcome = tmp_path / "notebooks" / "sem" / "welcome.ipynb"
        assert welcome.is_file()
        welcome.write_text("my own changes")
    assert welcome.read_text() == "my own changes"
    page = json.loads((tmp_path / ".dass" / "jupyter-config" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == {"@jupyterlab/apputils-extension:announcements": True}
    assert oct((tmp_path / ".dass" / "session.json").stat().st_mode & 0o777) == "0o600"


# -- spawn, ready, stop with the pod run by podman -------------------------------------------------


def test_a_session_pod_runs_jupyter_in_a_container_until_stopped(demo_catalog):
    """The emulator's pod run by the test kubelet (tests/kubelet.py) in the CI test image:
    the init container writes the session's manifest into the home claim, JupyterLab's server
    answers on 127.0.0.1 at the port the spawner chose (what the hub waits for), as uid 1000
    with the size's limits, and stop removes the container before the pod is gone. The hub
    API the server checks at its start is the service tests' stand-in hub."""
    from tests.kubelet import podman_test_image
    from tests.service.service_support import FakeHub, LoopThread

    image = podman_test_image()  # skips, saying why, where podman cannot run
    loop, hub_api = LoopThread(), FakeHub()
    loop.run(hub_api.start())
    hub = SimpleNamespace(api_url=hub_api.api_url, public_host="", url="/hub/", base_url="/hub/")
    try:
        _session_in_a_container(demo_catalog, hub, image)
    finally:
        loop.run(hub_api.stop())
        loop.close()


def _session_in_a_container(demo_catalog, hub, image):
    import os
    import urllib.parse
    import urllib.request

    from jupyterhub.utils import wait_for_http_server

    from dass.platform import Platform
    from tests.kubelet import Kubelet, containers_of, inspect
    from tests.support import free_port

    with Emulator() as emu, Kubelet(emu, image_for=lambda ref: image) as kubelet:
        config = _config()
        config.merge(demo_catalog)
        config.KubeSpawner.k8s_api_host = emu.url
        config.KubeSpawner.events_enabled = False
        config.KubeSpawner.ip = "127.0.0.1"  # pods share the host's network here: loopback only
        config.KubeSpawner.port = free_port()
        # what the platform gives a spawner, sized for a loaded 2-core machine
        config.KubeSpawner.start_timeout = Platform.spawn_start_timeout.default_value
        config.KubeSpawner.http_timeout = Platform.spawn_http_timeout.default_value

        async def flow():
            spawner = DassKubeSpawner(_mock=True, config=config, user=_user(), hub=hub)
            spawner.api_token = "session-token-of-alice"
            spawner.user_options = {"stack": "sem", "size": "small", "datasets": ["p-2026-001/sem-nanowires"]}
            url = await asyncio.wait_for(spawner.start(), spawner.start_timeout)
            # the server's prefix (/user/alice/ under a hub with an ORM server, / here)
            prefix = urllib.parse.urlparse(spawner.get_env()["JUPYTERHUB_SERVICE_URL"]).path
            # what the hub does before it calls a session ready: any HTTP answer at its URL
            try:
                await wait_for_http_server(f"{url}{prefix}", timeout=spawner.http_timeout)
            except TimeoutError:
                _, log = await asyncio.to_thread(emu.request, "GET", f"/api/v1/namespaces/dass/pods/{spawner.pod_name}/log")
                raise AssertionError(f"the session did not answer; its log:\n{log[-5000:]}") from None
            with urllib.request.urlopen(f"{url}{prefix}api", timeout=30) as r:  # jupyter_server's own
                api = json.loads(r.read())
            pod_name = spawner.pod_name
            (container,) = [n for n in containers_of(pod_name) if n.endswith("-notebook")]
            details = inspect(container)
            polled = await spawner.poll()
            await spawner.stop(now=True)
            return url, api, pod_name, container, details, polled

        url, api, pod_name, container, details, polled = asyncio.run(_with_own_reflectors(flow))
        assert url == f"http://127.0.0.1:{config.KubeSpawner.port}"
        assert "version" in api and polled is None
        assert details["Config"]["User"] == "1000:100"
        assert details["HostConfig"]["Memory"] == 2 * 1024**3 and details["HostConfig"]["NanoCpus"] == 1_000_000_000
        env = dict(e.split("=", 1) for e in details["Config"]["Env"])
        assert env["DASS_SERVICE_URL"] == SERVICE and env["JUPYTERHUB_API_TOKEN"] == "session-token-of-alice"
        assert not [k for k in env if any(w in k.lower() for w in SECRET_WORDS)]
        # the init container's work, in the home claim on this machine
        home = kubelet.root / "claims" / "dass-home-alice"
        manifest = home / ".dass" / "session.json"
        assert oct(manifest.stat().st_mode & 0o777) == "0o600" and manifest.stat().st_uid == 1000
        assert json.loads(manifest.read_text())["datasets"][0]["url"] == "dass://p-2026-001/sem-nanowires"
        assert (home / "notebooks" / "sem" / "welcome.ipynb").is_file()
        # stopped: the pod went only after its containers
        assert emu.objects("v1/pods", "dass") == [] and containers_of(pod_name) == []
        assert os.path.isdir(home)  # the claim outlives the pod
    assert not kubelet.errors, kubelet.errors

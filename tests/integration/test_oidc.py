"""Login through a real OpenID Connect provider: the groups claim decides the proposals."""

import json
import re
import secrets
import shutil
import subprocess
from urllib.parse import urljoin

import pytest
import requests

from tests.support import ARTIFACTS, ROOT, PlatformProcess, free_port, wait_for

pytestmark = pytest.mark.integration

PROVIDER = ROOT / "tests" / "oidc" / "provider.mjs"
ACCOUNTS = {"carol": ["p-2026-002"], "dave": []}


def _missing() -> str:
    if not shutil.which("node"):
        return "node is not installed (the OIDC provider is the npm package oidc-provider)"
    if not (ROOT / "node_modules" / "oidc-provider").is_dir():
        return "node_modules/oidc-provider missing: run `make test` (npm install)"
    return ""


@pytest.fixture(scope="module")
def oidc_platform(tmp_path_factory):
    if _missing():
        pytest.skip(_missing())
    hub_port, idp_port = free_port(), free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    idp = f"http://127.0.0.1:{idp_port}"
    secret = secrets.token_hex(16)
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "oidc-provider.log", "w")
    provider = subprocess.Popen(
        ["node", str(PROVIDER), str(idp_port), "dass-hub", secret, f"{hub_url}/hub/oauth_callback",
         json.dumps(ACCOUNTS)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: requests.get(f"{idp}/.well-known/openid-configuration", timeout=2).ok, 30,
                 "the OIDC provider")
        config = "\n".join([
            'c.JupyterHub.authenticator_class = "generic-oauth"',
            'c.GenericOAuthenticator.client_id = "dass-hub"',
            f'c.GenericOAuthenticator.client_secret = "{secret}"',
            f'c.GenericOAuthenticator.oauth_callback_url = "{hub_url}/hub/oauth_callback"',
            f'c.GenericOAuthenticator.authorize_url = "{idp}/auth"',
            f'c.GenericOAuthenticator.token_url = "{idp}/token"',
            f'c.GenericOAuthenticator.userdata_url = "{idp}/me"',
            'c.GenericOAuthenticator.scope = ["openid", "profile", "groups"]',
            'c.GenericOAuthenticator.username_claim = "preferred_username"',
            'c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"',
            'c.GenericOAuthenticator.manage_groups = True',
            'c.GenericOAuthenticator.allow_all = True',
            'c.GenericOAuthenticator.basic_auth = True',
        ])
        platform = PlatformProcess(tmp_path_factory.mktemp("platform-oidc"), extra_config=config,
                                   name="platform-oidc", port=hub_port)
        yield platform
        platform.stop()
    finally:
        provider.terminate()
        provider.wait(10)
        log.close()


def oidc_login(base_url: str, login: str) -> tuple[requests.Session, requests.Response]:
    """Log in as a person would: the hub sends us to the provider's forms, we fill them in."""
    s = requests.Session()
    r = s.get(f"{base_url}/hub/oauth_login", timeout=30)
    for data in ({"prompt": "login", "login": login, "password": "any"}, {"prompt": "consent"}):
        match = re.search(r'<form[^>]*action="([^"]+)"', r.text)
        if not match:
            break
        r = s.post(urljoin(r.url, match.group(1)), data=data, timeout=30)
    return s, r


def test_groups_claim_becomes_hub_groups_and_proposals(oidc_platform):
    p = oidc_platform
    s, r = oidc_login(p.url, "carol")
    assert r.url.startswith(p.url + "/hub/"), (r.url, r.text[:300])
    model = p.api("GET", "/users/carol").json()
    assert model["groups"] == ["p-2026-002"]
    # the spawn form offers carol's proposal and the public data, not p-2026-001
    form = s.get(f"{p.url}/hub/spawn/carol", timeout=30).text
    offered = set(re.findall(r'name="datasets" value="([^"]+)"', form))
    assert "p-2026-002/stm-au111-fast" in offered and "p-2025-900/sem-reference-public" in offered
    assert not any(d.startswith("p-2026-001/") for d in offered)
    # the dass service, reached with the browser's cookie through the hub's OAuth
    page = s.get(f"{p.url}/services/dass/", timeout=30)
    assert page.status_code == 200 and "p-2026-002/stm-au111-fast" in page.text
    assert "p-2026-001/sem-nanowires" not in page.text


def test_a_user_without_groups_sees_only_public_data(oidc_platform):
    p = oidc_platform
    s, r = oidc_login(p.url, "dave")
    assert r.url.startswith(p.url + "/hub/")
    ids = {d["id"] for d in p.service("GET", "api/datasets", "dave").json()["datasets"]}
    assert ids == {"p-2025-900/sem-reference-public"}


def test_an_unknown_login_is_refused_by_the_provider(oidc_platform):
    p = oidc_platform
    s, r = oidc_login(p.url, "mallory")
    assert not r.url.startswith(p.url + "/hub/spawn")
    assert p.api("GET", "/users/mallory").status_code == 404

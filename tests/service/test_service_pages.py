"""The home page and the browser login through the hub's OAuth."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import requests

from tests.service.service_support import CLIENT_ID, PREFIX


def oauth_login(service, hub, token: str) -> requests.Session:
    """Log a browser session in the way JupyterHub's OAuth does it, returning the session."""
    browser = requests.Session()
    r = browser.get(service.url + "?q=grain", allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    location = urlparse(r.headers["Location"])
    assert location.path == "/hub/api/oauth2/authorize"
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == PREFIX + "oauth_callback"
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    # the hub authorizes and sends the browser back with a code
    hub.codes["code-" + token] = token
    r = browser.get(
        service.url + "oauth_callback",
        params={"code": "code-" + token, "state": params["state"]},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == PREFIX + "?q=grain"
    assert ("oauth2/token", "code-" + token) in hub.calls
    return browser


def test_home_redirects_a_browser_to_the_hub_login(service):
    r = service.get("")
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize?" in r.headers["Location"]


def test_oauth_login_then_cookie_authenticates_pages_and_api(service, hub):
    browser = oauth_login(service, hub, "alice-token")
    page = browser.get(service.url, timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    assert '<strong id="user">alice</strong>' in page.text
    me = browser.get(service.url + "api/me", timeout=10)
    assert me.status_code == 200 and me.json()["name"] == "alice"


def test_home_lists_visible_datasets_by_proposal(service):
    page = service.get("", "alice-token")
    assert page.status_code == 200
    html = page.text
    assert 'id="proposal-p-2026-001"' in html
    assert "Copper and SiGe microstructure" in html  # the proposal's title
    assert "sem-grains" in html and "kmap-strain" in html and "public-tips" in html
    assert "stm-movie" not in html and "p-2026-002" not in html
    assert "embargoed" not in html
    assert '<form method="get" action="/services/dass/"' in html and 'name="q"' in html
    assert "api/openapi.json" in html
    assert "SEM image classification" in html  # a stack alice may use
    assert "STM movies" not in html  # restricted to p-2026-002 in the test config
    assert "<script" not in html and "http://" not in html and "https://" not in html  # no external assets


def test_home_search(service):
    html = service.get("", "alice-token", params={"q": "grain"}).text
    assert "sem-grains" in html and "kmap-strain" not in html
    assert 'value="grain"' in html
    html = service.get("", "alice-token", params={"q": "nothing-matches-this"}).text
    assert "No dataset you may see matches" in html


def test_home_escapes_the_query(service):
    html = service.get("", "alice-token", params={"q": '<script>alert("x")</script>'}).text
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_unknown_page_is_404_html(service):
    r = service.get("no-such-page")
    assert r.status_code == 404
    assert "text/html" in r.headers["Content-Type"]
    assert "404" in r.text


def test_oauth_callback_errors_are_pages(service):
    r = service.get("oauth_callback")
    assert r.status_code == 400
    assert "text/html" in r.headers["Content-Type"]
    assert "OAuth callback made without a token" in r.text
    r = service.get("oauth_callback", params={"code": "x", "state": "forged"})
    assert r.status_code == 403
    assert "oauth state does not match" in r.text

"""Stacks add routes, pages, header links and settings to the service through the registry,
and every DassError they raise is answered once, by BaseHandler.write_error."""

from __future__ import annotations

import pytest

from dass.stacks.registry import StackConfigError
from dass.service.app import DassService
from tests.service.service_support import make_repository, service_env, start_service
from tests.service.toy_stack import ToySettings, ToyWeb

TOY = ("{'display_name': 'Toy', 'landing_notebook': 'toy/welcome.ipynb', 'default_size': 'small', "
       "'allowed_sizes': ['small'], 'web': 'tests.service.toy_stack:ToyWeb'}")


@pytest.fixture(scope="module")
def toy_service(loop_thread, hub, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    repo = make_repository(tmp)
    svc = start_service(loop_thread, tmp, hub.api_url, **repo, extra_config="\n".join([
        # a deployer's own stack with a service part, and the SEM stack removed
        f"c.StackRegistry.stacks = {{'toy': {TOY}, 'sem': None}}",
        "c.ToySettings.greeting = 'moin'",
    ]))
    yield svc
    svc.stop()


def test_a_stack_adds_a_page_with_its_header_link_and_banner(toy_service):
    r = toy_service.get("toy", "alice-token")
    assert r.status_code == 200, r.text
    assert '<p id="toy">toy page, shown 0 time(s) before</p>' in r.text
    assert f'<a href="{toy_service.app.base_url}toy" id="nav-toy">Toy page</a>' in r.text
    assert '<div class="muted" id="toy-banner">moin, alice</div>' in r.text  # its config, its values
    assert "shown 1 time(s)" in toy_service.get("toy", "alice-token").text  # its settings entry
    home = toy_service.get("", "bob-token").text
    assert 'id="nav-toy"' in home and "moin, bob" in home and 'id="nav-jobs"' in home


def test_a_removed_stack_takes_its_pages_and_routes_along(toy_service):
    home = toy_service.get("", "alice-token").text
    assert 'id="nav-sem"' not in home and "sem-model-banner" not in home
    r = toy_service.request("POST", "api/classify", "alice-token", json={"dataset": "p-2026-001/sem-grains"})
    assert r.status_code == 404 and r.json()["status"] == 404
    assert toy_service.get("sem", "alice-token").status_code == 404
    assert "sem_service" not in toy_service.app.web_app.settings


@pytest.mark.parametrize("path, status, message", [
    ("api/toy/busy", 409, "the toy is busy; try again in a minute"),
    ("api/toy/input", 422, "frame 7 has 3 axes; send 2-D frames"),
    ("api/toy/down", 503, "the dataset catalogue is unavailable right now; try again later or see the service log"),
    ("api/toy/bug", 500, "internal error; see the service log"),
])
def test_a_dass_error_is_answered_with_its_status_and_user_message(toy_service, path, status, message):
    r = toy_service.get(path, "alice-token")
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": status, "message": message}
    assert "/srv/secret" not in r.text and "Traceback" not in r.text


def test_the_stack_sees_the_service_start_and_stop(loop_thread, hub, tmp_path):
    ToyWeb.events.clear()
    repo = make_repository(tmp_path)
    svc = start_service(loop_thread, tmp_path, hub.api_url, **repo,
                        extra_config=f"c.StackRegistry.stacks = {{'toy': {TOY}}}")
    try:
        assert ToyWeb.events == ["start"]
        names = [type(ext).__name__ for ext in svc.app.extensions]
        assert names == ["SemWeb", "ToyWeb"]  # declaration order: built-in sem, then the deployer's
        assert ToySettings in svc.app.classes
    finally:
        svc.stop()
    assert ToyWeb.events == ["start", "stop"]


@pytest.mark.parametrize("spec, message", [
    ("tests.service.no_such_module:Web", "stack 'toy': web 'tests.service.no_such_module:Web' cannot be imported"),
    ("tests.service.toy_stack:NoSuchClass", "module tests.service.toy_stack has no 'NoSuchClass'"),
    ("tests.service.toy_stack", "write it as 'package.module:attribute'"),
    ("tests.service.toy_stack:ToySettings", "is not a ServiceExtension subclass"),
])
def test_a_bad_web_plugin_stops_the_start_with_its_stack_named(monkeypatch, hub, tmp_path, spec, message):
    config = tmp_path / "dass_config.py"
    toy = TOY.replace("tests.service.toy_stack:ToyWeb", spec)
    config.write_text(f"c.Storage.url = 'file://{tmp_path}/repo'\n"
                      f"c.Catalog.db_url = 'sqlite:///{tmp_path}/catalog.sqlite'\n"
                      f"c.StackRegistry.stacks = {{'toy': {toy}}}\n")
    for key, value in service_env(hub.api_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DASS_CONFIG", raising=False)
    with pytest.raises(StackConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        DassService().initialize([f"--config={config}"])


def test_the_service_names_no_stack():
    """Routes, pages and links of stacks come from the registry: no module or template of the
    service imports or links a stack."""
    from tests.test_cli import ROOT, _static_imports

    for path in sorted((ROOT / "dass" / "service").glob("*.py")):
        bad = [n for n in _static_imports(path) if n.startswith(("dass.sem", "dass.kmap", "dass.stm"))]
        assert not bad, f"dass/service/{path.name} imports {bad}"
    for path in sorted((ROOT / "dass" / "service" / "templates").glob("*.html")):
        text = path.read_text()
        assert "sem" not in text.replace("semantic", ""), f"{path.name} names the SEM stack"

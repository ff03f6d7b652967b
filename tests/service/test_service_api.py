"""The REST API of the dass service, against a real service and a small real hub."""

from __future__ import annotations

import re
import time

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

import dass
from dass.service.handlers import BaseHandler, default_handlers

from tests.service.service_support import DATASETS, PREFIX

ALICE_SEES = {"p-2026-001/sem-grains", "p-2026-001/kmap-strain", "p-2025-009/public-tips"}


def ids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {d["id"] for d in response.json()["datasets"]}


def assert_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "message"}
    assert body["status"] == status
    for word in words:
        assert word in body["message"], body["message"]
    assert "Traceback" not in response.text
    return body


# -- public routes ---------------------------------------------------------------------------


def test_health(service):
    r = service.get("api/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": dass.__version__, "datasets": len(DATASETS)}


def test_openapi_is_valid_and_describes_every_route(service):
    r = service.get("api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == dass.__version__
    assert doc["servers"][0]["url"] == PREFIX.rstrip("/")
    documented = set(doc["paths"])
    from dass.service.jobs_handlers import default_handlers as jobs_handlers

    for path, _handler in [*default_handlers, *jobs_handlers]:
        templated = "/" + path.replace("([^/]+)/([^/]+)", "{proposal}/{dataset}")
        templated = templated.replace("([0-9a-zA-Z]+)", "{id}").replace("(.+)", "{path}")
        assert templated in documented, f"route {path!r} is not in openapi.yaml"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("description") or op.get("summary"), f"{method} {path} undocumented"
            assert op["responses"], f"{method} {path} has no responses"


# -- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["api/me", "api/datasets", "api/datasets/p-2026-001/sem-grains", "api/stacks"])
def test_api_without_token_is_401_json_never_a_redirect(service, path):
    r = service.get(path)
    assert_error(r, 401, "Authorization: token")
    assert "Location" not in r.headers


def test_invalid_token_is_401(service):
    assert_error(service.get("api/me", "not-a-token"), 401)


def test_bearer_header_is_accepted(service):
    r = service.get("api/me", headers={"Authorization": "Bearer alice-token"})
    assert r.status_code == 200
    assert r.json()["name"] == "alice"


def test_user_without_access_scope_is_403(service):
    assert_error(service.get("api/me", "eve-token"), 403, "eve", "access:services")


def test_me_groups_come_from_the_hub_users_api(service, hub):
    r = service.get("api/me", "alice-token")
    assert r.json() == {"name": "alice", "groups": ["p-2026-001"], "admin": False}
    assert service.get("api/me", "carol-token").json() == {"name": "carol", "groups": [], "admin": True}
    assert hub.lookups("alice") >= 1


def test_identity_is_cached_then_refreshed(service, hub):
    # dave is only used here; the service caches identities for 1 s (see conftest)
    assert ids(service.get("api/datasets", "dave-token")) == {"p-2025-009/public-tips"}
    for _ in range(3):
        service.get("api/me", "dave-token")
    assert hub.lookups("dave") == 1
    hub.users["dave"] = (["p-2026-002"], False)
    assert service.get("api/me", "dave-token").json()["groups"] == []  # still cached
    time.sleep(1.1)
    assert service.get("api/me", "dave-token").json()["groups"] == ["p-2026-002"]
    assert "p-2026-002/stm-movie" in ids(service.get("api/datasets", "dave-token"))
    assert hub.lookups("dave") == 2


def test_hub_failure_on_user_lookup_is_503(service, hub):
    hub.fail_users = True
    try:
        assert_error(service.get("api/me", "frank-token"), 503, "JupyterHub")
    finally:
        hub.fail_users = False
    assert service.get("api/me", "frank-token").status_code == 200


def test_hub_service_token_sees_public_data_only(service):
    r = service.get("api/datasets", "robot-token")
    assert ids(r) == {"p-2025-009/public-tips"}


# -- datasets --------------------------------------------------------------------------------


def test_alice_sees_her_proposal_and_public_data(service):
    r = service.get("api/datasets", "alice-token")
    assert ids(r) == ALICE_SEES
    body = r.json()
    assert body["total"] == 3 and body["limit"] == 100 and body["offset"] == 0
    one = next(d for d in body["datasets"] if d["id"] == "p-2026-001/sem-grains")
    assert one["title"] == "Grain boundaries in annealed copper"
    assert one["technique"] == "SEM" and one["stacks"] == ["sem"]
    assert one["url"].startswith("file://")


def test_bob_sees_his_proposal_not_alices(service):
    assert ids(service.get("api/datasets", "bob-token")) == {"p-2026-002/stm-movie", "p-2025-009/public-tips"}


def test_admin_sees_everything(service):
    assert ids(service.get("api/datasets", "carol-token")) == set(DATASETS)


def test_detail_of_a_visible_dataset(service):
    r = service.get("api/datasets/p-2026-001/kmap-strain", "alice-token")
    assert r.status_code == 200
    assert r.json()["id"] == "p-2026-001/kmap-strain"
    assert r.json()["metadata"]["schema"] == "dass.dataset/1"
    assert service.get("api/datasets/p-2025-009/public-tips", "alice-token").status_code == 200


@pytest.mark.parametrize(
    "dataset_id", ["p-2026-002/stm-movie", "p-2026-003/embargoed", "p-2026-001/no-such-thing", "nope/nothing"]
)
def test_hidden_and_missing_datasets_answer_the_same_404(service, dataset_id):
    r = service.get(f"api/datasets/{dataset_id}", "alice-token")
    body = assert_error(r, 404)
    assert body["message"] == f"dataset {dataset_id} not found"


def test_admin_sees_embargoed_detail(service):
    assert service.get("api/datasets/p-2026-003/embargoed", "carol-token").status_code == 200


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"q": "grain"}, {"p-2026-001/sem-grains"}),
        ({"q": "COPPER annealed"}, {"p-2026-001/sem-grains"}),
        ({"q": "diffusion"}, set()),  # bob's: not visible to alice
        ({"proposal": "p-2026-001"}, {"p-2026-001/sem-grains", "p-2026-001/kmap-strain"}),
        ({"proposal": "p-2026-002"}, set()),
        ({"technique": "stm"}, {"p-2025-009/public-tips"}),
        ({"technique": "SEM"}, {"p-2026-001/sem-grains"}),
        ({"instrument": "zeiss supra 40"}, {"p-2026-001/sem-grains"}),
        ({"stack": "kmap"}, {"p-2026-001/kmap-strain"}),
        ({"q": "", "proposal": ""}, ALICE_SEES),
    ],
)
def test_filters(service, query, expected):
    r = service.get("api/datasets", "alice-token", params=query)
    assert ids(r) == expected
    assert r.json()["total"] == len(expected)


def test_paging(service):
    first = service.get("api/datasets", "carol-token", params={"limit": 2}).json()
    second = service.get("api/datasets", "carol-token", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == len(DATASETS)
    assert len(first["datasets"]) == 2 and first["limit"] == 2
    assert second["offset"] == 2
    assert not {d["id"] for d in first["datasets"]} & {d["id"] for d in second["datasets"]}


@pytest.mark.parametrize("value", ["0", "501", "ten", "-1", "1.5"])
def test_bad_limit_is_400_naming_limit(service, value):
    assert_error(service.get("api/datasets", "alice-token", params={"limit": value}), 400, "limit", "500")


def test_bad_offset_is_400_naming_offset(service):
    assert_error(service.get("api/datasets", "alice-token", params={"offset": "-3"}), 400, "offset")


def test_unknown_parameter_is_400_naming_it(service):
    r = service.get("api/datasets", "alice-token", params={"techniq": "SEM", "q": "x"})
    assert_error(r, 400, "techniq", "technique")


def test_unknown_parameter_on_detail_and_stacks(service):
    assert_error(service.get("api/stacks", "alice-token", params={"all": "1"}), 400, "all")
    assert_error(service.get("api/datasets/p-2026-001/sem-grains", "alice-token", params={"x": "1"}), 400, "x")


# -- stacks ----------------------------------------------------------------------------------


def stacks_of(service, token: str) -> dict[str, list[str]]:
    r = service.get("api/stacks", token)
    assert r.status_code == 200, r.text
    return {s["name"]: [size["name"] for size in s["sizes"]] for s in r.json()["stacks"]}


def test_stacks_follow_groups(service):
    assert stacks_of(service, "alice-token") == {
        "sem": ["small", "medium", "large"],
        "kmap": ["small", "medium", "large"],
    }
    assert "stm" in stacks_of(service, "bob-token")
    assert stacks_of(service, "staffer-token")["sem"] == ["small", "medium", "large", "xl"]
    admin = stacks_of(service, "carol-token")
    assert set(admin) == {"sem", "kmap", "stm"} and "xl" in admin["sem"]


def test_stack_json_fields(service):
    sem = next(s for s in service.get("api/stacks", "alice-token").json()["stacks"] if s["name"] == "sem")
    assert sem["display_name"] and sem["default_size"] == "small"
    assert sem["allowed_sizes"] == ["small", "medium", "large", "xl"]
    assert sem["sizes"][0] == {"name": "small", "display_name": "Small: 1 CPU, 2 GiB", "cpu": 1.0,
                               "mem_gib": 2.0, "groups": [], "gpus": 0}


# -- errors ----------------------------------------------------------------------------------


def test_unknown_api_route_is_404_json(service):
    assert_error(service.get("api/nothing-here", "alice-token"), 404, "api/openapi.json")


def test_wrong_method_is_405_json(service):
    body = assert_error(service.request("POST", "api/datasets", "alice-token", json={}), 405, "GET")
    assert "POST" in body["message"]
    assert_error(service.request("DELETE", "api/health"), 405)
    assert_error(service.request("PUT", "api/me"), 405)  # even before authentication


class BoomHandler(BaseHandler):
    def get(self):
        raise RuntimeError("secret internals /etc/passwd")


def test_unexpected_exception_is_500_without_traceback(service):
    service.app.web_app.add_handlers(r".*$", [(PREFIX + "api/boom", BoomHandler)])
    body = assert_error(service.get("api/boom", "alice-token"), 500)
    assert re.fullmatch(r"internal error; see the service log \(error id [0-9a-f]{12}\)", body["message"])
    assert "secret" not in body["message"]


def test_cache_control_no_store(service):
    assert service.get("api/datasets", "alice-token").headers["Cache-Control"] == "no-store"
    assert service.get("api/me").headers["Cache-Control"] == "no-store"


def test_prefix_without_slash_redirects(service):
    r = requests.get(service.url.rstrip("/"), allow_redirects=False, timeout=10)
    assert r.status_code in (301, 302) and r.headers["Location"] == PREFIX


@pytest.mark.parametrize(
    "path, token, schema",
    [
        ("api/health", None, "Health"),
        ("api/me", "alice-token", "Identity"),
        ("api/datasets", "carol-token", "DatasetPage"),
        ("api/datasets/p-2026-001/sem-grains", "alice-token", "Dataset"),
        ("api/datasets/p-2026-002/stm-movie", "alice-token", "Error"),
        ("api/datasets?limit=0", "alice-token", "Error"),
        ("api/me", None, "Error"),
    ],
)
def test_answers_match_the_openapi_schemas(service, path, token, schema):
    doc = service.get("api/openapi.json").json()
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    )
    validator.validate(service.get(path, token).json())


def test_stacks_answer_matches_the_openapi_schema(service):
    doc = service.get("api/openapi.json").json()
    op = doc["paths"]["/api/stacks"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**op, "components": doc["components"]}).validate(
        service.get("api/stacks", "carol-token").json()
    )

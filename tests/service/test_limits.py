"""The pure checks of request bodies and names (dass.service.limits), by value, and the
``c.DassService`` limits reaching the handlers."""

from __future__ import annotations

import pytest

from dass.service.limits import MAX_INTEGER, RequestLimits, RequestRefused, check_name, parse_json
from tests.service.service_support import make_repository, start_service

LIMITS = RequestLimits(max_json_depth=4, max_name_length=8)


@pytest.mark.parametrize("body, expected", [
    (b'{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]}),
    (b"", None),
    (b'"\\u00e9\\ud83d\\ude00"', "\u00e9\U0001F600"),  # a surrogate *pair* is one character
    (b"%d" % MAX_INTEGER, MAX_INTEGER),
    (b"1.5e300", 1.5e300),
])
def test_what_is_accepted(body, expected):
    assert parse_json(body, LIMITS) == expected


@pytest.mark.parametrize("body, words", [
    (b"[" * 60_000 + b"]" * 60_000, "deeper than 4 levels"),  # no RecursionError
    (b"[[[[[]]]]]", "deeper than 4 levels"),
    (b'{"a": {"b": {"c": {"d": {}}}}}', "deeper than 4 levels"),
    (b"%d" % (MAX_INTEGER + 1), "out of range"),
    (b"[-%d]" % (10**30), "out of range"),
    (b"1e999", "too large"),
    (b"NaN", "not a JSON number"),
    (b'{"x": -Infinity}', "not a JSON number"),
    (b'"a\\u0000b"', "NUL"),
    (b'{"a\\u0000": 1}', "a key"),
    (b'["\\udc00"]', "invalid unicode"),
    (b"\xff\xfe\x00\x00", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"1" * 5000, "not valid JSON"),  # more digits than Python converts
])
def test_what_is_refused_says_why(body, words):
    with pytest.raises(RequestRefused, match=words) as info:
        parse_json(body, LIMITS)
    assert info.value.status == 400


def test_parse_json_never_changes_its_limits_argument():
    limits = RequestLimits()
    parse_json(b"[]", limits)
    assert limits == RequestLimits()


@pytest.mark.parametrize("value, path", [("a" * 8, False), ("ab/cd.ipynb", True), ("\u00e9t\u00e9", False)])
def test_names_accepted(value, path):
    assert check_name(value, "field", LIMITS, path=path) == value


@pytest.mark.parametrize("value, path, words", [
    ("a" * 9, False, "at most 8 characters"),
    ("ok/" + "b" * 9, True, "each part of a path"),
    ("a\x00", False, "NUL"),
    ("a\nb", False, "control character"),
    ("\udc80", False, "invalid unicode"),
    (5, False, "must be a string, not int"),
    ("/".join(["a"] * 3000), True, "too long"),
])
def test_names_refused_name_the_field(value, path, words):
    with pytest.raises(RequestRefused, match=words) as info:
        check_name(value, "notebook.home", LIMITS, path=path)
    assert str(info.value).startswith("notebook.home")


@pytest.fixture(scope="module")
def strict(loop_thread, hub, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("strict")
    urls = make_repository(tmp / "data")
    (tmp / "service").mkdir()
    extra = "\n".join([
        "c.JobManager.max_concurrency = 0",
        f"c.JobManager.jobs_dir = {str(tmp / 'jobs')!r}",
        "c.DassService.max_json_depth = 3",
        "c.DassService.max_name_length = 12",
        "c.DassService.max_body_bytes = 1000",
    ])
    svc = start_service(loop_thread, tmp / "service", hub.api_url, extra_config=extra, **urls)
    yield svc
    svc.stop()


def test_the_configured_limits_reach_the_handlers(strict):
    r = strict.request("POST", "api/jobs", "alice-token", json={"notebook": "sem/service/x.ipynb",
                                                                "parameters": {"p": [[1]]}})
    assert r.status_code == 400 and "deeper than 3 levels" in r.json()["message"]
    r = strict.request("POST", "api/jobs", "alice-token", json={"notebook": "sem/service/x.ipynb",
                                                                "idempotency_key": "k" * 13})
    assert r.status_code == 400 and "c.DassService.max_name_length" in r.json()["message"]
    # a route without a limit of its own takes max_body_bytes: 1000 bytes
    r = strict.request("POST", "api/classify/" + "0" * 32 + "/confirm", "alice-token", data=b" " * 1001,
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "1000 bytes" in r.json()["message"]

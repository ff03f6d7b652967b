"""SessionSpec: one validated selection described once, by value, for every back end."""

import datetime
import json

import pytest

from dass.data.access import Identity
from dass.stacks.registry import StackRegistry
from dass.stacks.runtime import THREAD_ENV, address_space_limit, limits, thread_env
from dass.stacks.selection import validate_selection
from dass.stacks.session import SessionSpec, build_session_spec

TODAY = datetime.date(2026, 11, 22)
ALICE = Identity("alice", frozenset({"p-2026-001"}))
ADMIN = Identity("root", frozenset(), admin=True)
SERVICE = "http://127.0.0.1:10101/services/dass/"


def test_every_stack_and_size_becomes_a_spec(catalog):
    reg = StackRegistry()
    for stack in reg.all_stacks.values():
        for size in reg.sizes_for(stack, ADMIN):
            sel = validate_selection({"stack": stack.name, "size": size.name}, ADMIN, reg, catalog,
                                     max_datasets=8, today=TODAY)
            spec = build_session_spec(sel, user="root", service_url=SERVICE, token="t0ken")
            assert (spec.stack, spec.size, spec.user) == (stack.name, size.name, "root")
            assert spec.limits == limits(size) and spec.limits.mem_bytes == int(size.mem_gib * 1024**3)
            assert spec.default_url == f"/lab/tree/notebooks/{stack.landing_notebook}"
            assert spec.image == stack.image and spec.environment == stack.environment
            assert spec.env["DASS_STACK"] == stack.name and spec.env["DASS_SIZE"] == size.name
            assert spec.env["DASS_SERVICE_URL"] == SERVICE
            assert {k: spec.env[k] for k in THREAD_ENV} == thread_env(size)


def test_the_spec_names_datasets_not_storage(catalog):
    reg = StackRegistry()
    sel = validate_selection({"stack": "sem", "datasets": ["p-2026-001/sem-nanowires"]}, ALICE, reg, catalog,
                             max_datasets=8, today=TODAY)
    spec = build_session_spec(sel, user="alice", service_url=SERVICE, token="s3cr3t-token")
    assert spec.dataset_ids == ["p-2026-001/sem-nanowires"]
    assert spec.datasets[0].proposal == "p-2026-001" and spec.datasets[0].name == "sem-nanowires"
    doc = spec.to_json()
    text = json.dumps(doc)
    assert "s3cr3t-token" not in text and "s3cr3t-token" not in repr(spec)
    assert "file://" not in text and "storage" not in text  # where the data lives is not the session's business
    assert set(doc) == set(SessionSpec.__dataclass_fields__) - {"token"}


def test_address_space_limit_is_the_process_back_ends_view():
    reg = StackRegistry()
    small = reg.all_sizes["small"]
    assert address_space_limit(small.mem_bytes, headroom_bytes=2 * 1024**3) == small.mem_bytes + 2 * 1024**3
    assert address_space_limit(small.mem_bytes, headroom_bytes=2 * 1024**3, enforce=False) is None

"""Tests of dass.data.access: the access rule of docs/metadata.md."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from dass.data.access import Identity, can_see
from dass.data.metadata import parse_metadata

TODAY = dt.date(2026, 3, 15)
ALICE = Identity("alice", frozenset({"p1"}))
BOB = Identity("bob", frozenset({"p2"}))
ADMIN = Identity("root", frozenset(), admin=True)


def ds(groups=("p1",), public=False, embargo=None):
    return SimpleNamespace(access_groups=list(groups), public=public, embargo_until=embargo)


def test_group_member_sees_private_dataset():
    assert can_see(ALICE, ds(), TODAY)
    assert not can_see(BOB, ds(), TODAY)


def test_admin_sees_everything():
    assert can_see(ADMIN, ds(groups=()), TODAY)


@pytest.mark.parametrize(
    "embargo, visible",
    [(None, True), (TODAY - dt.timedelta(days=1), True), (TODAY, True), (TODAY + dt.timedelta(days=1), False)],
)
def test_public_after_embargo(embargo, visible):
    assert can_see(BOB, ds(public=True, embargo=embargo), TODAY) is visible
    assert can_see(ALICE, ds(public=True, embargo=embargo), TODAY)  # members see it anyway


def test_embargo_without_public_hides():
    assert not can_see(BOB, ds(public=False, embargo=TODAY - dt.timedelta(days=10)), TODAY)


def test_works_on_parsed_metadata_with_default_groups():
    md = parse_metadata(
        '{"schema": "dass.dataset/1", "title": "t", "creators": [{"name": "a"}],'
        ' "dates": {"created": "2024-01-01"}, "licence": "CC0-1.0"}',
        path="x",
        proposal="p1",
    )
    assert can_see(ALICE, md, TODAY) and not can_see(BOB, md, TODAY)


def test_identity_accepts_any_collection_of_groups():
    ident = Identity("carol", {"p1", "p3"})  # type: ignore[arg-type]
    assert ident.groups == frozenset({"p1", "p3"})
    hash(ident)
    with pytest.raises(TypeError):
        Identity("dave", "p1")  # type: ignore[arg-type]


def test_named_users_see_a_dataset_besides_its_groups(tmp_path):
    """access.users (e.g. the owner of a job's results) — in can_see and in the SQL filter."""
    import json

    from traitlets.config import Config

    from dass.data.catalog import Catalog
    from dass.data.storage import Storage

    ds = tmp_path / "repo" / "results" / "job-1"
    ds.mkdir(parents=True)
    (ds / "dataset.json").write_text(json.dumps({
        "schema": "dass.dataset/1", "title": "derived", "creators": [{"name": "alice"}],
        "dates": {"created": "2026-01-01"}, "licence": "CC-BY-4.0",
        "access": {"groups": ["p1"], "users": ["alice"]},
    }))
    cfg = Config()
    cfg.Storage.url = f"file://{tmp_path / 'repo'}"
    cfg.Catalog.db_url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    cat = Catalog(config=cfg)
    assert not cat.scan(Storage(config=cfg)).errors
    rec = cat.get("results/job-1")
    assert rec.access_users == ("alice",) and rec.access_groups == ("p1",)
    today = dt.date(2026, 1, 2)
    for who, expected in [(Identity("alice", frozenset()), True), (Identity("carol", frozenset({"p1"})), True),
                          (Identity("bob", frozenset({"user:alice"})), False), (Identity("bob", frozenset()), False)]:
        assert can_see(who, rec, today) is expected
        assert (rec.id in cat.visible(who, [rec.id], today=today)) is expected, who

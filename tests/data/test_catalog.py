"""Tests of dass.data.catalog: migrations, scanning a file:// repository, search with access."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from dass.data.access import Identity, can_see
from dass.data.catalog import VERSION_TABLE, Catalog, DatasetRecord, ScanReport
from dass.data.errors import MetadataError, StorageError
from dass.data.storage import Storage

TODAY = dt.date(2026, 3, 15)
ALICE = Identity("alice", frozenset({"p1"}))
BOB = Identity("bob", frozenset({"p2"}))
EVE = Identity("eve", frozenset())
ADMIN = Identity("root", frozenset(), admin=True)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(db_url=f"sqlite:///{tmp_path}/catalog.sqlite")
    yield cat
    cat.dispose()


@pytest.fixture
def scanned(catalog: Catalog, repo: Path) -> Catalog:
    report = catalog.scan(Storage(url=f"file://{repo}"))
    assert (report.indexed, report.removed, report.errors) == (3, 0, [])
    return catalog


def ids(records) -> list[str]:
    return [r.id for r in records]


def test_migrations_run_twice_idempotently(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/cat.sqlite"
    Catalog(db_url=url).upgrade()
    Catalog(db_url=url).upgrade()
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert {"proposals", "datasets", "dataset_access", "jobs", "dataset_categories", "sem_classifications",
            VERSION_TABLE} <= tables
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from dass.data.catalog import MIGRATIONS_DIR

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head == "0007"  # 0001 catalogue, 0002 jobs, 0003 SEM labels, 0004 job handles, 0005 audit, 0006 grants, 0007 sweeps
    with engine.connect() as conn:
        assert conn.execute(text(f"select version_num from {VERSION_TABLE}")).scalars().all() == [head]
    engine.dispose()


def test_default_db_url_is_under_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_STATE_DIR", str(tmp_path / "state"))
    catalog = Catalog()
    assert catalog.db_url == f"sqlite:///{tmp_path}/state/catalog.sqlite"
    catalog.upgrade()  # creates the state folder
    assert (tmp_path / "state" / "catalog.sqlite").is_file()
    catalog.dispose()


def test_scan_indexes_rows(scanned: Catalog, repo: Path):
    d1 = scanned.get("p1/d1")
    assert isinstance(d1, DatasetRecord)
    assert d1.proposal == "p1" and d1.name == "d1" and d1.title == "Grain boundaries in steel"
    assert d1.url == f"file://{repo}/p1/d1"
    assert d1.keywords == ("grain", "boundary") and d1.stacks == ("sem",)
    assert d1.access_groups == ("p1",) and d1.public is False and d1.embargo_until is None
    assert d1.file_count == 1 and d1.size_bytes == len(b"II*\x00fake tiff")
    assert d1.metadata["schema"] == "dass.dataset/1"
    assert d1.metadata_sha256.startswith("sha256:") and len(d1.metadata_sha256) == 71
    assert d1.scanned_at.tzinfo is not None
    d3 = scanned.get("p2/d3")
    assert d3.public is True and d3.embargo_until == dt.date(2030, 1, 1)
    assert scanned.get("p9/none") is None
    doc = d3.to_json()
    json.dumps(doc)
    assert doc["embargo_until"] == "2030-01-01" and doc["metadata"]["title"] == "Tunnelling spectra"
    assert doc["keywords"] == ["graphene"]


def test_proposals(scanned: Catalog):
    assert scanned.proposals() == [
        {"id": "p1", "title": "Steel", "pi": "Ada", "description": None, "datasets": 2},
        {"id": "p2", "title": None, "pi": None, "description": None, "datasets": 1},
    ]
    assert [(p["id"], p["datasets"]) for p in scanned.proposals(EVE, today=TODAY)] == [("p1", 1)]
    assert [(p["id"], p["datasets"]) for p in scanned.proposals(BOB, today=TODAY)] == [("p1", 1), ("p2", 1)]


def test_malformed_file_is_reported_and_the_rest_indexed(catalog, repo, make_dataset, make_doc, caplog):
    make_dataset(repo, "p1", "broken", '{"schema": "dass.dataset/1", "title": ')
    make_dataset(repo, "p2", "badembargo", make_doc(access={"embargo_until": "31.12.2030"}))
    make_dataset(repo, "p2", "nometa", None)
    caplog.set_level(logging.WARNING, logger="traitlets")
    caplog.set_level(logging.WARNING)
    report = catalog.scan(Storage(url=f"file://{repo}"))
    assert report.indexed == 3
    errors = {(Path(e.path).parent.name, e.field): e for e in report.errors}
    assert set(errors) == {("broken", ""), ("badembargo", "access.embargo_until"), ("nometa", "")}
    assert all(isinstance(e, MetadataError) for e in report.errors)
    assert errors[("broken", "")].path == f"file://{repo}/p1/broken/dataset.json"
    assert "invalid JSON at line 1" in errors[("broken", "")].message
    assert errors[("nometa", "")].message == "missing dataset.json"
    assert ids(catalog.search(ADMIN)[0]) == ["p1/d1", "p1/d2", "p2/d3"]
    text = str(report)
    assert text.startswith("indexed 3 datasets, removed 0, 3 errors")
    assert f"file://{repo}/p2/badembargo/dataset.json: access.embargo_until:" in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "p2/badembargo/dataset.json: access.embargo_until" in logged


def test_rescan_updates_and_removes(scanned, repo, make_doc):
    shutil.rmtree(repo / "p2")
    (repo / "p1" / "d1" / "dataset.json").write_text(
        json.dumps(make_doc("Renamed", access={"groups": ["p1", "p7"]}))
    )
    (repo / "p1" / "d2" / "dataset.json").write_text("{not json")  # now invalid: dropped
    report = scanned.scan(Storage(url=f"file://{repo}"))
    assert (report.indexed, report.removed, len(report.errors)) == (1, 2, 1)
    assert ids(scanned.search(ADMIN)[0]) == ["p1/d1"]
    d1 = scanned.get("p1/d1")
    assert d1.title == "Renamed" and d1.access_groups == ("p1", "p7")
    assert [p["id"] for p in scanned.proposals()] == ["p1"]
    assert ids(scanned.search(Identity("gina", frozenset({"p7"})), today=TODAY)[0]) == ["p1/d1"]


def test_scan_of_missing_root_changes_nothing(scanned, tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        scanned.scan(Storage(url=f"file://{tmp_path}/gone"))
    assert scanned.search(ADMIN)[1] == 3


def test_search_access(scanned: Catalog):
    assert ids(scanned.search(ALICE, today=TODAY)[0]) == ["p1/d1", "p1/d2"]
    assert ids(scanned.search(BOB, today=TODAY)[0]) == ["p1/d2", "p2/d3"]  # d2 is public
    assert ids(scanned.search(EVE, today=TODAY)[0]) == ["p1/d2"]  # d3 under embargo
    assert ids(scanned.search(EVE, today=dt.date(2030, 1, 1))[0]) == ["p1/d2", "p2/d3"]
    assert ids(scanned.search(ADMIN, today=TODAY)[0]) == ["p1/d1", "p1/d2", "p2/d3"]


def test_search_agrees_with_can_see(scanned: Catalog):
    everything, _ = scanned.search(ADMIN)
    for who in (ALICE, BOB, EVE):
        for day in (TODAY, dt.date(2030, 1, 1)):
            expected = [r.id for r in everything if can_see(who, r, day)]
            assert ids(scanned.search(who, today=day)[0]) == expected


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"text": "STEEL"}, ["p1/d1"]),
        ({"text": "bragg"}, ["p1/d2"]),  # keyword
        ({"text": "di/dv"}, ["p2/d3"]),  # description
        ({"text": "p2/"}, ["p2/d3"]),  # id
        ({"text": "grain steel"}, ["p1/d1"]),  # all words
        ({"text": "steel strain"}, []),
        ({"text": "100%"}, []),  # LIKE wildcards are literal
        ({"proposal": "p1"}, ["p1/d1", "p1/d2"]),
        ({"instrument": "id01"}, ["p1/d2"]),
        ({"technique": "stm"}, ["p2/d3"]),
        ({"stack": "sem"}, ["p1/d1"]),
        ({"stack": "se"}, []),
        ({"stack": "kmap", "proposal": "p2"}, []),
    ],
)
def test_search_filters(scanned: Catalog, kwargs, expected):
    records, total = scanned.search(ADMIN, **kwargs)
    assert ids(records) == expected and total == len(expected)


def test_search_paging(scanned: Catalog):
    records, total = scanned.search(ADMIN, limit=2, offset=1)
    assert ids(records) == ["p1/d2", "p2/d3"] and total == 3
    records, total = scanned.search(ADMIN, limit=1)
    assert ids(records) == ["p1/d1"] and total == 3


def test_visible(scanned: Catalog):
    wanted = ["p1/d1", "p1/d2", "p2/d3", "p9/nope"]
    assert sorted(scanned.visible(ALICE, wanted, today=TODAY)) == ["p1/d1", "p1/d2"]
    assert sorted(scanned.visible(EVE, wanted, today=TODAY)) == ["p1/d2"]
    assert sorted(scanned.visible(ADMIN, wanted)) == ["p1/d1", "p1/d2", "p2/d3"]
    assert scanned.visible(ALICE, []) == {}


def test_scan_report_str():
    report = ScanReport(indexed=1, removed=0, errors=[MetadataError("f.json", "title", "is required")])
    assert str(report) == "indexed 1 dataset, removed 0, 1 error\n  f.json: title: is required"


def test_migrations_and_queries_compile_for_postgresql(tmp_path: Path, capsys):
    """No PostgreSQL server here: render the migration as PostgreSQL DDL and a search as SQL."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql

    from dass.data.catalog import MIGRATIONS_DIR, Dataset

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", "postgresql://dass@localhost/dass")
    command.upgrade(cfg, "head", sql=True)
    ddl = capsys.readouterr().out
    assert "CREATE TABLE datasets" in ddl and '"group" VARCHAR(255) NOT NULL' in ddl
    assert f"CREATE TABLE {VERSION_TABLE}" in ddl and "metadata JSON NOT NULL" in ddl

    where = Catalog._access_clause(ALICE, TODAY)
    sql = str(select(Dataset).where(where).compile(dialect=postgresql.dialect()))
    assert "EXISTS (SELECT" in sql and "dataset_access" in sql


def test_index_dataset_indexes_one_new_dataset_and_drops_a_broken_one(tmp_path: Path):
    import json as _json

    from traitlets.config import Config

    repo = tmp_path / "repo"
    meta = {"schema": "dass.dataset/1", "title": "derived", "creators": [{"name": "alice"}],
            "dates": {"created": "2026-01-01"}, "licence": "CC-BY-4.0", "access": {"users": ["alice"]}}
    (repo / "results" / "job-1").mkdir(parents=True)
    (repo / "results" / "job-1" / "dataset.json").write_text(_json.dumps(meta))
    cfg = Config()
    cfg.Storage.url = f"file://{repo}"
    cfg.Catalog.db_url = f"sqlite:///{tmp_path}/c.sqlite"
    cat, storage = Catalog(config=cfg), Storage(config=cfg)
    report = cat.index_dataset(storage, "results", "job-1")
    assert (report.indexed, report.errors) == (1, [])
    assert cat.get("results/job-1").access_users == ("alice",)
    (repo / "results" / "job-1" / "dataset.json").write_text("{broken")
    report = cat.index_dataset(storage, "results", "job-1")
    assert report.removed == 1 and "dataset.json" in str(report.errors[0])
    assert cat.get("results/job-1") is None

"""One schema: every table in ``dass.data.orm``'s metadata, and the migrations agree with it.

A fresh SQLite database upgraded to head by the shipped Alembic history must hold exactly the
tables and columns the models declare: ``alembic.autogenerate.compare_metadata`` finds no
difference. A model changed without a migration (or the reverse) fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from dass.data.catalog import Catalog
from dass.data.orm import VERSION_TABLE, Base

TABLES = {"proposals", "datasets", "dataset_access", "dataset_categories", "jobs", "job_sweeps", "sem_classifications",
          "audit_events", "access_grants"}


@pytest.fixture
def upgraded(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/dass.sqlite"
    catalog = Catalog(db_url=url)
    catalog.upgrade()
    catalog.dispose()
    engine = create_engine(url)
    yield engine
    engine.dispose()


def diff(engine, metadata: sa.MetaData) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
        return compare_metadata(context, metadata)


def test_one_metadata_holds_every_table():
    import dass.jobs.model
    import dass.sem.labels

    assert set(Base.metadata.tables) == TABLES
    # the packages' names are the orm's classes, not copies on a second Base
    assert dass.jobs.model.Job.__table__ is Base.metadata.tables["jobs"]
    assert dass.sem.labels.SemClassification.__table__ is Base.metadata.tables["sem_classifications"]


def test_migrations_at_head_agree_with_the_models(upgraded):
    assert set(inspect(upgraded).get_table_names()) == TABLES | {VERSION_TABLE}
    assert diff(upgraded, Base.metadata) == []


def test_the_comparison_sees_a_model_without_migration(upgraded):
    """The check above can fail: a column added to a copy of the jobs model is reported."""
    metadata = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["jobs"].append_column(sa.Column("priority", sa.Integer(), nullable=True))
    changes = diff(upgraded, metadata)
    assert [(c[0], c[2], c[3].name) for c in changes] == [("add_column", "jobs", "priority")]

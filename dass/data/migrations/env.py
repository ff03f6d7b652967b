"""Alembic environment of the dass catalogue.

Run programmatically by :meth:`dass.data.catalog.Catalog.upgrade`, which hands over an open
connection in ``config.attributes["connection"]``. For development the ``alembic`` command line
works too, with ``-x url=sqlite:///path/catalog.sqlite``. Logging is left to the application.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from dass.data.catalog import VERSION_TABLE, Base

try:
    config = context.config
except AttributeError:  # imported outside an alembic run (doc tools, test collectors)
    config = None
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=config.attributes.get("version_table", VERSION_TABLE),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the catalogue database with -x url=<sqlalchemy url>")
    engine = create_engine(url)
    with engine.begin() as conn:
        _configure(conn)


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        version_table=config.attributes.get("version_table", VERSION_TABLE),
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if config is None:
    pass
elif context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

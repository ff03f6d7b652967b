"""Alembic migrations of the dass catalogue (run by ``Catalog.upgrade()``)."""

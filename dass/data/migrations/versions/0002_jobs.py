"""Jobs: headless notebook runs of the dass service.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("notebook_source", sa.Text(), nullable=False),
        sa.Column("notebook_sha256", sa.String(71), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("stack", sa.String(64), nullable=False),
        sa.Column("size", sa.String(64), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("workdir", sa.Text(), nullable=False),
        sa.Column("results_url", sa.Text(), nullable=True),
        sa.Column("derived_dataset", sa.String(129), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("cancelled_by", sa.String(255), nullable=True),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    )


def downgrade() -> None:
    op.drop_table("jobs")

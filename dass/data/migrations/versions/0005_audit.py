"""The audit log: one row per data access, allowed or denied (``audit_events``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("user", sa.String(255), nullable=False, index=True),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("session", sa.String(255), nullable=True),
        sa.Column("job", sa.String(32), nullable=True, index=True),
        sa.Column("proposal", sa.String(64), nullable=True, index=True),
        sa.Column("dataset", sa.String(129), nullable=True, index=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False, index=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("allowed", sa.Boolean(), nullable=False, index=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("remote", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_events")

"""Initial catalogue schema: proposals, datasets, dataset_access.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proposals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("pi", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(129), primary_key=True),
        sa.Column(
            "proposal",
            sa.String(64),
            sa.ForeignKey("proposals.id", name="fk_datasets_proposal", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("instrument", sa.String(255), nullable=True),
        sa.Column("technique", sa.String(255), nullable=True),
        sa.Column("stacks", sa.JSON(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("embargo_until", sa.Date(), nullable=True),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("metadata_sha256", sa.String(71), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_datasets_proposal", "datasets", ["proposal"])
    op.create_table(
        "dataset_access",
        sa.Column(
            "dataset_id",
            sa.String(129),
            sa.ForeignKey("datasets.id", name="fk_dataset_access_dataset", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("group", sa.String(255), primary_key=True),
    )
    op.create_index("ix_dataset_access_group", "dataset_access", ["group"])


def downgrade() -> None:
    op.drop_index("ix_dataset_access_group", table_name="dataset_access")
    op.drop_table("dataset_access")
    op.drop_index("ix_datasets_proposal", table_name="datasets")
    op.drop_table("datasets")
    op.drop_table("proposals")

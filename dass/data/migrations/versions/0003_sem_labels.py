"""SEM classification: the suggestions of the classify API and the categories index.

``sem_classifications`` keeps each image the service classified (which dataset and file, the
model, the suggestion and every score) so that ``POST api/classify/{id}/confirm`` can store the
confirmed label later. ``dataset_categories`` indexes the confirmed categories of each dataset
(``domain.categories`` of its ``dataset.json``) for ``GET api/datasets?category=``; it is
rebuilt by every scan, like the rest of the catalogue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_categories",
        sa.Column(
            "dataset_id",
            sa.String(129),
            sa.ForeignKey("datasets.id", name="fk_dataset_categories_dataset", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("category", sa.String(255), primary_key=True, index=True),
    )
    op.create_table(
        "sem_classifications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False, index=True),
        sa.Column("dataset_id", sa.String(129), nullable=False, index=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("architecture", sa.String(64), nullable=False),
        sa.Column("suggested", sa.String(255), nullable=False),
        sa.Column("certainty", sa.Float(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("category", sa.String(255), nullable=True),
        sa.Column("confirmed_by", sa.String(255), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("sem_classifications")
    op.drop_table("dataset_categories")

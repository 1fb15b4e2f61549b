"""ingest: a dataset's lake table, registered snapshot, row count and quality report

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("lake_table", sa.String(length=300), nullable=True))
    op.add_column("datasets", sa.Column("snapshot_id", sa.BigInteger(), nullable=True))
    op.add_column("datasets", sa.Column("row_count", sa.BigInteger(), nullable=True))
    op.add_column("datasets", sa.Column("quality_report", sa.JSON(), nullable=True))
    op.add_column(
        "datasets",
        sa.Column(
            "ingested_at", control_plane.store.models.UTCDateTime(timezone=True), nullable=True
        ),
    )


def downgrade() -> None:
    for column in ("ingested_at", "quality_report", "row_count", "snapshot_id", "lake_table"):
        with op.batch_alter_table("datasets") as batch:
            batch.drop_column(column)

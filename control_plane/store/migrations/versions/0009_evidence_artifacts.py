"""evidence artifacts: the immutable, content-addressed documents a run produced

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-23 16:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_artifacts",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_evidence_artifacts_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "name", name=op.f("pk_evidence_artifacts")),
    )
    op.create_index(
        op.f("ix_evidence_artifacts_digest"), "evidence_artifacts", ["digest"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_evidence_artifacts_digest"), table_name="evidence_artifacts")
    op.drop_table("evidence_artifacts")

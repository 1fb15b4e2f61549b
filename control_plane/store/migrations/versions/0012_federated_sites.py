"""federated sites: each site's local policy, the datasets it holds, participation decisions

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 16:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("policy", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "site_datasets",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_site_datasets_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_site_datasets_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_site_datasets")),
    )
    with op.batch_alter_table("site_datasets") as batch:
        batch.create_index(batch.f("ix_site_datasets_site_id"), ["site_id"], unique=False)
    op.create_table(
        "site_participations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column(
            "decided_at", control_plane.store.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_site_participations_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_site_participations_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_participations")),
        sa.UniqueConstraint("site_id", "run_id", name=op.f("uq_site_participations_site_id")),
    )
    with op.batch_alter_table("site_participations") as batch:
        batch.create_index(batch.f("ix_site_participations_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("site_participations")
    op.drop_table("site_datasets")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("policy")

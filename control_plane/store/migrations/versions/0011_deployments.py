"""deployments: model versions served at endpoints

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 16:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _time(name: str) -> sa.Column[object]:
    return sa.Column(name, control_plane.store.models.UTCDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("model_version_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2048), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("canary_percent", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_deployments_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_deployments_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("name", name=op.f("uq_deployments_name")),
    )
    op.create_index(op.f("ix_deployments_domain"), "deployments", ["domain"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_deployments_domain"), table_name="deployments")
    op.drop_table("deployments")

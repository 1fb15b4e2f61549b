"""lineage: OpenLineage events, the lineage graph and the delivery outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, control_plane.store.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "lineage_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        _time("event_time"),
        sa.Column("job_namespace", sa.String(length=512), nullable=False),
        sa.Column("job_name", sa.String(length=1024), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_by", sa.String(length=128), nullable=False),
        _time("received_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage_events")),
        sa.UniqueConstraint(
            "run_id", "event_type", "event_time", name=op.f("uq_lineage_events_run_id")
        ),
    )
    op.create_table(
        "lineage_nodes",
        sa.Column("id", sa.String(length=2000), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("facets", sa.JSON(), nullable=False),
        _time("first_seen"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage_nodes")),
    )
    op.create_table(
        "lineage_edges",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=2000), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_field", sa.String(length=1024), nullable=False),
        sa.Column("target_field", sa.String(length=1024), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("facets", sa.JSON(), nullable=False),
        _time("first_seen"),
        _time("last_seen"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_lineage_edges")),
    )
    with op.batch_alter_table("lineage_edges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lineage_edges_source"), ["source"], unique=False)
        batch_op.create_index(batch_op.f("ix_lineage_edges_target"), ["target"], unique=False)
    op.create_table(
        "lineage_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("next_attempt_at"),
        _time("lease_until", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("delivered_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["lineage_events.id"],
            name=op.f("fk_lineage_outbox_event_id_lineage_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage_outbox")),
        sa.UniqueConstraint("event_id", "destination", name=op.f("uq_lineage_outbox_event_id")),
    )
    with op.batch_alter_table("lineage_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lineage_outbox_next_attempt_at"), ["next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("lineage_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_outbox_next_attempt_at"))
    op.drop_table("lineage_outbox")
    with op.batch_alter_table("lineage_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_edges_target"))
        batch_op.drop_index(batch_op.f("ix_lineage_edges_source"))
    op.drop_table("lineage_edges")
    op.drop_table("lineage_nodes")
    op.drop_table("lineage_events")

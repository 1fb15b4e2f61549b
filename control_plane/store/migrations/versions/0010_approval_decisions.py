"""approval decisions: who decided what on an approval, how it closed, webhook outbox

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 16:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, control_plane.store.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(_time("closed_at", nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("close_reason", sa.Text(), nullable=True))
    op.create_table(
        "approval_decisions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        sa.Column("approver", sa.String(length=128), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approvals.id"],
            name=op.f("fk_approval_decisions_approval_id_approvals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_decisions")),
        sa.UniqueConstraint(
            "approval_id", "approver", name=op.f("uq_approval_decisions_approval_id")
        ),
    )
    op.create_index(
        op.f("ix_approval_decisions_approval_id"), "approval_decisions", ["approval_id"]
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("next_attempt_at"),
        _time("lease_until", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_outbox")),
    )
    op.create_index(
        op.f("ix_webhook_outbox_next_attempt_at"), "webhook_outbox", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_outbox_next_attempt_at"), table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_index(op.f("ix_approval_decisions_approval_id"), table_name="approval_decisions")
    op.drop_table("approval_decisions")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("close_reason")
        batch.drop_column("closed_by")
        batch.drop_column("closed_at")

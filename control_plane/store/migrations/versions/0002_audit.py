"""audit trail

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UTC = control_plane.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", _UTC, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_audit_records")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        for column in ("occurred_at", "actor", "action", "resource", "run_id"):
            batch_op.create_index(batch_op.f(f"ix_audit_records_{column}"), [column])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("last_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("issued_at", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_prunes",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.Column("last_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("archive_digest", sa.String(length=64), nullable=False),
        sa.Column("pruned_by", sa.String(length=128), nullable=False),
        sa.Column("pruned_at", _UTC, nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_prunes")),
    )
    # The empty log: RFC 9162's root of no leaves is SHA-256 of the empty string.
    op.bulk_insert(
        head,
        [
            {
                "id": 1,
                "size": 0,
                "root_hash": bytes.fromhex(
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                ),
                "last_hash": bytes(32),
                "frontier": [],
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("audit_prunes")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        for column in ("run_id", "resource", "action", "actor", "occurred_at"):
            batch_op.drop_index(batch_op.f(f"ix_audit_records_{column}"))
    op.drop_table("audit_records")

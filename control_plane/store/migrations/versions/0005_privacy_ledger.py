"""privacy ledger: per-dataset privacy spend and the reservations of runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _units(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, control_plane.store.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        _units("epsilon_spent"),
        _units("delta_spent"),
        _units("epsilon_reserved"),
        _units("delta_reserved"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_privacy_budgets_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_privacy_budgets")),
    )
    op.create_table(
        "privacy_ledger",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        _units("epsilon_reserved"),
        _units("delta_reserved"),
        _units("epsilon_spent", nullable=True),
        _units("delta_spent", nullable=True),
        sa.Column("accountant", sa.String(length=16), nullable=True),
        sa.Column("reserved_by", sa.String(length=128), nullable=False),
        _time("created_at"),
        _time("settled_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["privacy_budgets.dataset_id"],
            name=op.f("fk_privacy_ledger_dataset_id_privacy_budgets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_privacy_ledger_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_ledger")),
        sa.UniqueConstraint("dataset_id", "run_id", name=op.f("uq_privacy_ledger_dataset_id")),
    )
    op.create_index(
        op.f("ix_privacy_ledger_dataset_id"), "privacy_ledger", ["dataset_id"], unique=False
    )
    op.create_index(op.f("ix_privacy_ledger_run_id"), "privacy_ledger", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_privacy_ledger_run_id"), table_name="privacy_ledger")
    op.drop_index(op.f("ix_privacy_ledger_dataset_id"), table_name="privacy_ledger")
    op.drop_table("privacy_ledger")
    op.drop_table("privacy_budgets")

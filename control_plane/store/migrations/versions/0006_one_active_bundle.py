"""one active bundle: a partial unique index on the active policy bundle

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    with op.batch_alter_table("policy_bundles", schema=None) as batch_op:
        batch_op.create_index(
            "ix_policy_bundles_one_active",
            ["status"],
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("policy_bundles", schema=None) as batch_op:
        batch_op.drop_index("ix_policy_bundles_one_active")

"""model registry link: each model version's registry URI and artifact digest

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("registry_uri", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("artifact_digest", sa.String(length=71), nullable=True))
        batch.create_unique_constraint(batch.f("uq_model_versions_registry_uri"), ["registry_uri"])


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint(batch.f("uq_model_versions_registry_uri"), type_="unique")
        batch.drop_column("artifact_digest")
        batch.drop_column("registry_uri")

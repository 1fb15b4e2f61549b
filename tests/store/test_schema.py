"""Migrations and models agree: autogenerate finds nothing to add on any backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from control_plane.store.models import Base


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    # Given a store migrated to head
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            # When the models are compared with it
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    # Then there is no drift, and every model table exists
    assert diff == []
    assert set(Base.metadata.tables) <= tables

"""The SQL store: SQLAlchemy models, sessions and Alembic migrations (SQLite or PostgreSQL)."""

from control_plane.store.db import Database, active_write_session, new_id, utcnow
from control_plane.store.migrate import upgrade

__all__ = ["Database", "active_write_session", "new_id", "upgrade", "utcnow"]

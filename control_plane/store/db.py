"""Engines and sessions for the embedded SQLite store and for PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_WRITE_SESSION: ContextVar[Session | None] = ContextVar("govplane_write_session", default=None)


def active_write_session() -> Session | None:
    """The write session open in this context, if any (its writes commit or roll back together)."""
    return _WRITE_SESSION.get()


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A 32-hex-digit identifier that sorts by creation time (UUIDv7 layout).

    Time-ordered ids make keyset pagination stable without a second sort column.
    """
    millis = time.time_ns() // 1_000_000
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return raw.hex()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction takes the write lock at BEGIN: a deferred one that reads and then
    # writes fails with SQLITE_BUSY when another writer committed in between.
    immediate = conn.get_execution_options().get("govplane_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """One SQLAlchemy engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # Let SQLAlchemy, not pysqlite, emit BEGIN (pysqlite's implicit transactions
            # would defeat BEGIN IMMEDIATE).
            event.listen(
                self.engine,
                "connect",
                lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None),
            )
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = sessionmaker(
            self.engine.execution_options(govplane_write=True), expire_on_commit=False
        )

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error.

        Args:
            write: the transaction will write; on SQLite it takes the write lock up front.
        """
        factory = self._writers if write else self._readers
        with factory() as session, session.begin():
            if not write:
                yield session
                return
            token = _WRITE_SESSION.set(session)
            try:
                yield session
            finally:
                _WRITE_SESSION.reset(token)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

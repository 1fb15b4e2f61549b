"""Keyset pagination over time-ordered ids, filtered by what the caller may see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")
R = TypeVar("R")

Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(pattern=r"^[0-9a-f]{32}$", description="The `next_cursor` of the previous page."),
]


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def fetch_page(
    session: Session,
    statement: Select[tuple[R]],
    id_column: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
    visible: Callable[[R], bool],
) -> tuple[list[R], str | None]:
    """Rows after ``cursor`` that the caller may see, at most ``limit`` of them.

    Rows the caller may not see are skipped, reading further batches until the page is full,
    so a page is never short while more visible rows exist, and ``next_cursor`` is set only when
    another visible row exists.
    """
    rows: list[R] = []
    after = cursor
    batch_size = limit + 1
    while True:
        batch_statement: Any = statement.order_by(id_column).limit(batch_size)
        if after is not None:
            batch_statement = batch_statement.where(id_column > after)
        batch = list(session.scalars(batch_statement))
        for row in batch:
            after = getattr(row, id_column.key)
            if visible(row):
                rows.append(row)
                if len(rows) > limit:
                    return rows[:limit], getattr(rows[limit - 1], id_column.key)
        if len(batch) < batch_size:
            return rows, None

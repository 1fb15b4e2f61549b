"""Revision counters that tell every replica when cached state went stale."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from control_plane.store.models import Revision

AUTHZ = "authz"


def bump_revision(session: Session, name: str = AUTHZ) -> None:
    """Mark the state named ``name`` stale on every replica."""
    session.execute(update(Revision).where(Revision.name == name).values(value=Revision.value + 1))


def lock_revision(session: Session, name: str = AUTHZ) -> None:
    """Hold the counter's row until the transaction ends.

    Changes of the state it guards then happen one after another, across replicas too (SQLite
    writers are serial already).
    """
    session.execute(select(Revision.value).where(Revision.name == name).with_for_update())


def current_revision(session: Session, name: str = AUTHZ) -> int | None:
    """The counter's value; None if the store was never initialized."""
    return session.scalar(select(Revision.value).where(Revision.name == name))

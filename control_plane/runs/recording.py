"""What else must be written when a run changes state: audit records, lineage events.

A :class:`TransitionRecorder` is called inside the write transaction that moves the run, after
the transition row is added. Whatever it writes commits or rolls back with the transition, and
an exception from it aborts the transition: a run that cannot be recorded does not move.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from control_plane.store.models import Run, RunTransition


class TransitionRecorder(Protocol):
    """Records one state change of a run, in the transaction that makes it."""

    def record(self, session: Session, run: Run, transition: RunTransition) -> None:
        """Write what this transition needs; raise to refuse the transition."""
        ...

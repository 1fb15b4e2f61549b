"""Settling a run's open reservations when it finishes, whatever finished it.

Runs failed by the engine (an executor error, a failed gate, a rejected approval, or a worker
that died and lost its lease) release what they reserved: their outputs are discarded, so no
privacy was lost. A run that succeeded without committing its spend is charged its whole
reservation: its outputs exist and the reservation is the bound its plan promised.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from control_plane.audit_trail.recorders import RUN_ENGINE
from control_plane.privacy_ledger.ledger import PrivacyLedger
from control_plane.runs.states import RunState
from control_plane.store.models import Run, RunTransition
from privacy.budget import delta_of, epsilon_of


class LedgerSettlement:
    """A transition recorder that settles the reservations of a run reaching an end state."""

    def __init__(self, ledger: PrivacyLedger) -> None:
        self._ledger = ledger

    def record(self, session: Session, run: Run, transition: RunTransition) -> None:
        """Release (failed, rejected) or charge in full (succeeded) what is still reserved."""
        if transition.to_state not in (RunState.FAILED, RunState.REJECTED, RunState.SUCCEEDED):
            return
        for entry in self._ledger.open_reservations(session, run.id):
            if transition.to_state == RunState.SUCCEEDED:
                self._ledger.commit(
                    session,
                    entry.dataset_id,
                    run.id,
                    epsilon_of(entry.epsilon_reserved),
                    delta_of(entry.delta_reserved),
                    "reservation",
                    RUN_ENGINE,
                )
            else:
                self._ledger.release(session, entry.dataset_id, run.id, RUN_ENGINE)

"""The privacy ledger: a run reserves its planned spend, then commits what it spent or releases.

Each dataset has one ``privacy_budgets`` row holding its spent and reserved sums. A reservation
is one conditional ``UPDATE`` of that row (``spent + reserved + planned <= budget``): atomic on
SQLite (writers hold the database lock) and on PostgreSQL (the row lock, and the condition is
re-checked on the row as committed by a concurrent writer), so no interleaving of reservations
from any number of processes can exceed the budget. Every change is audited in its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from audit import AuditEvent
from control_plane.audit_trail import AuditLog
from control_plane.bundles import active_bundle_row
from control_plane.errors import ConflictError, InvalidInputError, NotFoundError
from control_plane.runs.states import RunState
from control_plane.store import utcnow
from control_plane.store.models import (
    Dataset,
    PolicyBundleRow,
    PrivacyBudgetRow,
    PrivacyLedgerEntry,
    Run,
)
from policies import PolicyBundle
from privacy.budget import PrivacyBudget, delta_of, delta_units, epsilon_of, epsilon_units

_UNFINISHED = (RunState.PENDING, RunState.RUNNING, RunState.AWAITING_APPROVAL)


class LedgerState(StrEnum):
    """Where a reservation stands."""

    RESERVED = "reserved"
    COMMITTED = "committed"
    RELEASED = "released"


def budget_for(bundle: PolicyBundle, dataset: Dataset) -> PrivacyBudget | None:
    """The dataset's budget: its classification's DP limits, lowered to its own budget; None
    when ``privacy.yaml`` allows no dp on its classification."""
    rule = bundle.privacy.classifications[dataset.classification]  # type: ignore[index]
    if rule.dp is None:
        return None
    limits = PrivacyBudget(rule.dp.total_epsilon, rule.dp.delta, rule.dp.max_epsilon_per_run)
    return limits.stricter(dataset.epsilon_budget, dataset.delta_budget)


@dataclass(frozen=True)
class BudgetStatement:
    """A dataset's budget, what is spent and reserved of it, and its ledger entries."""

    dataset_id: str
    classification: str
    budget: PrivacyBudget | None
    epsilon_spent: float
    delta_spent: float
    epsilon_reserved: float
    delta_reserved: float
    entries: list[PrivacyLedgerEntry]

    @property
    def epsilon_left(self) -> float:
        """Epsilon that new reservations may still take."""
        total = self.budget.epsilon if self.budget else 0.0
        return max(0.0, total - self.epsilon_spent - self.epsilon_reserved)

    @property
    def delta_left(self) -> float:
        """Delta that new reservations may still take."""
        total = self.budget.delta if self.budget else 0.0
        return max(0.0, total - self.delta_spent - self.delta_reserved)


class PrivacyLedger:
    """Reserve, commit and release privacy spend of runs on datasets, audited.

    Every method works in the caller's write transaction (``session``): what it writes, its
    audit record included, commits or rolls back with the caller's other changes.
    """

    def __init__(self, trail: AuditLog) -> None:
        self._trail = trail

    def reserve(
        self,
        session: Session,
        dataset_id: str,
        run_id: str,
        epsilon: float,
        delta: float,
        actor: str,
    ) -> PrivacyLedgerEntry:
        """Reserve a run's planned (epsilon, delta) on a dataset before it touches the data.

        Raises:
            NotFoundError: no such dataset or run.
            ConflictError: the run is finished or already holds a reservation on the dataset,
                or the budget left is smaller than the plan.
            InvalidInputError: the classification allows no dp, or the plan exceeds the
                policy's epsilon per run.
        """
        dataset = _dataset(session, dataset_id)
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        if run.state not in _UNFINISHED:
            raise ConflictError(f"run {run_id} is {run.state}; only an unfinished run reserves")
        budget = budget_for(_bundle(session), dataset)
        if budget is None:
            raise InvalidInputError(
                f"privacy.yaml allows no dp on {dataset.classification} data, so dataset "
                f"{dataset_id} has no privacy budget",
                rule=f"privacy.yaml:classifications.{dataset.classification}",
            )
        if epsilon <= 0 or not 0 < delta < 1:
            raise InvalidInputError("a reservation needs epsilon > 0 and 0 < delta < 1")
        if epsilon > budget.max_epsilon_per_run:
            raise InvalidInputError(
                f"epsilon {epsilon} exceeds the {budget.max_epsilon_per_run} per run that "
                f"privacy.yaml allows on {dataset.classification} data",
                rule=f"privacy.yaml:classifications.{dataset.classification}.dp",
            )
        planned_epsilon = epsilon_units(epsilon, round_up=True)
        planned_delta = delta_units(delta, round_up=True)
        if session.scalars(
            select(PrivacyLedgerEntry.id).where(
                PrivacyLedgerEntry.dataset_id == dataset_id, PrivacyLedgerEntry.run_id == run_id
            )
        ).first():
            raise ConflictError(f"run {run_id} already has a reservation on dataset {dataset_id}")
        _ensure_budget_row(session, dataset_id)
        taken = session.execute(
            update(PrivacyBudgetRow)
            .where(
                PrivacyBudgetRow.dataset_id == dataset_id,
                PrivacyBudgetRow.epsilon_spent + PrivacyBudgetRow.epsilon_reserved + planned_epsilon
                <= epsilon_units(budget.epsilon, round_up=False),
                PrivacyBudgetRow.delta_spent + PrivacyBudgetRow.delta_reserved + planned_delta
                <= delta_units(budget.delta, round_up=False),
            )
            .values(
                epsilon_reserved=PrivacyBudgetRow.epsilon_reserved + planned_epsilon,
                delta_reserved=PrivacyBudgetRow.delta_reserved + planned_delta,
            )
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            statement = self.statement(session, dataset_id)
            raise ConflictError(
                f"the privacy budget of dataset {dataset_id} cannot cover epsilon {epsilon}, "
                f"delta {delta}: epsilon {statement.epsilon_left:.6g} and delta "
                f"{statement.delta_left:.6g} are left of ({budget.epsilon}, {budget.delta})"
            )
        entry = PrivacyLedgerEntry(
            dataset_id=dataset_id,
            run_id=run_id,
            state=LedgerState.RESERVED,
            epsilon_reserved=planned_epsilon,
            delta_reserved=planned_delta,
            reserved_by=actor,
        )
        session.add(entry)
        session.flush()
        self._audit(session, "privacy.reserve", entry, actor, {"epsilon": epsilon, "delta": delta})
        return entry

    def commit(
        self,
        session: Session,
        dataset_id: str,
        run_id: str,
        epsilon: float,
        delta: float,
        accountant: str,
        actor: str,
    ) -> PrivacyLedgerEntry:
        """Record what a run spent, as its accountant computed it; the rest is released.

        Raises:
            ConflictError: no open reservation, or the spend exceeds the reservation.
        """
        entry = self._open(session, dataset_id, run_id)
        spent_epsilon = epsilon_units(epsilon, round_up=True)
        spent_delta = delta_units(delta, round_up=True)
        if spent_epsilon > entry.epsilon_reserved or spent_delta > entry.delta_reserved:
            raise ConflictError(
                f"run {run_id} spent epsilon {epsilon}, delta {delta}, more than it reserved "
                f"({epsilon_of(entry.epsilon_reserved):.9g}, "
                f"{delta_of(entry.delta_reserved):.15g})"
            )
        self._settle(session, entry, spent_epsilon, spent_delta)
        entry.state = LedgerState.COMMITTED
        entry.accountant = accountant
        self._audit(
            session,
            "privacy.commit",
            entry,
            actor,
            {"epsilon": epsilon, "delta": delta, "accountant": accountant},
        )
        return entry

    def release(
        self, session: Session, dataset_id: str, run_id: str, actor: str
    ) -> PrivacyLedgerEntry:
        """Give a run's reservation back to the budget (the run spent nothing).

        Raises:
            ConflictError: the run has no open reservation on the dataset.
        """
        entry = self._open(session, dataset_id, run_id)
        self._settle(session, entry, 0, 0)
        entry.state = LedgerState.RELEASED
        self._audit(session, "privacy.release", entry, actor, {})
        return entry

    def open_reservations(self, session: Session, run_id: str) -> list[PrivacyLedgerEntry]:
        """The reservations of a run that are neither committed nor released."""
        return list(
            session.scalars(
                select(PrivacyLedgerEntry).where(
                    PrivacyLedgerEntry.run_id == run_id,
                    PrivacyLedgerEntry.state == LedgerState.RESERVED,
                )
            )
        )

    def statement(self, session: Session, dataset_id: str) -> BudgetStatement:
        """The dataset's budget, spend, reservations and ledger entries (oldest first)."""
        dataset = _dataset(session, dataset_id)
        budget = budget_for(_bundle(session), dataset)
        row = session.get(PrivacyBudgetRow, dataset_id)
        entries = list(
            session.scalars(
                select(PrivacyLedgerEntry)
                .where(PrivacyLedgerEntry.dataset_id == dataset_id)
                .order_by(PrivacyLedgerEntry.id)
            )
        )
        return BudgetStatement(
            dataset_id=dataset_id,
            classification=dataset.classification,
            budget=budget,
            epsilon_spent=epsilon_of(row.epsilon_spent if row else 0),
            delta_spent=delta_of(row.delta_spent if row else 0),
            epsilon_reserved=epsilon_of(row.epsilon_reserved if row else 0),
            delta_reserved=delta_of(row.delta_reserved if row else 0),
            entries=entries,
        )

    def _open(self, session: Session, dataset_id: str, run_id: str) -> PrivacyLedgerEntry:
        entry = session.scalars(
            select(PrivacyLedgerEntry)
            .where(PrivacyLedgerEntry.dataset_id == dataset_id, PrivacyLedgerEntry.run_id == run_id)
            .with_for_update()
        ).first()
        if entry is None or entry.state != LedgerState.RESERVED:
            raise ConflictError(
                f"run {run_id} has no open reservation on dataset {dataset_id}"
                + (f" (it is {entry.state})" if entry is not None else "")
            )
        return entry

    def _settle(
        self, session: Session, entry: PrivacyLedgerEntry, epsilon: int, delta: int
    ) -> None:
        session.execute(
            update(PrivacyBudgetRow)
            .where(PrivacyBudgetRow.dataset_id == entry.dataset_id)
            .values(
                epsilon_reserved=PrivacyBudgetRow.epsilon_reserved - entry.epsilon_reserved,
                delta_reserved=PrivacyBudgetRow.delta_reserved - entry.delta_reserved,
                epsilon_spent=PrivacyBudgetRow.epsilon_spent + epsilon,
                delta_spent=PrivacyBudgetRow.delta_spent + delta,
            )
            .execution_options(synchronize_session=False)
        )
        entry.epsilon_spent = epsilon
        entry.delta_spent = delta
        entry.settled_at = utcnow()

    def _audit(
        self,
        session: Session,
        action: str,
        entry: PrivacyLedgerEntry,
        actor: str,
        payload: dict[str, Any],
    ) -> None:
        self._trail.append(
            session,
            [
                AuditEvent(
                    actor=actor,
                    action=action,
                    resource=f"privacy_budget:{entry.dataset_id}",
                    decision="ok",
                    run_id=entry.run_id,
                    payload={
                        **payload,
                        "dataset_id": entry.dataset_id,
                        "reserved_epsilon": epsilon_of(entry.epsilon_reserved),
                        "reserved_delta": delta_of(entry.delta_reserved),
                    },
                )
            ],
        )


def _dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFoundError(f"no dataset {dataset_id}")
    return dataset


def _ensure_budget_row(session: Session, dataset_id: str) -> None:
    """Create the dataset's budget row unless it exists (concurrent first reservations race)."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(PrivacyBudgetRow)
        .values(
            dataset_id=dataset_id,
            epsilon_spent=0,
            delta_spent=0,
            epsilon_reserved=0,
            delta_reserved=0,
        )
        .on_conflict_do_nothing(index_elements=["dataset_id"])
    )


def _bundle(session: Session) -> PolicyBundle:
    row: PolicyBundleRow | None = active_bundle_row(session)
    if row is None:
        raise ConflictError("no policy bundle is active")
    return PolicyBundle.from_files(row.files)

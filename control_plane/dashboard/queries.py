"""What each dashboard page reads, one small function per page, filtered by the viewer's guard.

Lists read one page of rows and then their related rows in one query (never one per row), and
keep only what the policy lets the viewer read, as the API's lists do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.api.pagination import fetch_page
from control_plane.approvals import may_decide
from control_plane.authorization import Guard
from control_plane.errors import NotFoundError
from control_plane.inventory.catalog import asset_of, can_read
from control_plane.privacy_ledger import budget_for
from control_plane.store.models import (
    Approval,
    ApprovalDecision,
    Dataset,
    GateResultRow,
    Model,
    ModelVersion,
    PrivacyBudgetRow,
    Run,
    RunTransition,
)
from privacy.budget import delta_of, epsilon_of

PAGE = 25


@dataclass(frozen=True)
class Listing:
    """One page of rows and the cursor of the next page (None on the last)."""

    rows: Sequence[Any]
    next_cursor: str | None


def _run_readable(guard: Guard) -> Any:
    return lambda run: guard.decide("read", f"run:{run.id}", run.domain).allowed


def datasets(session: Session, guard: Guard, cursor: str | None) -> Listing:
    rows, after = fetch_page(session, select(Dataset), Dataset.id, PAGE, cursor, can_read(guard))
    return Listing(rows, after)


def models(
    session: Session, guard: Guard, cursor: str | None
) -> tuple[Listing, dict[str, list[ModelVersion]]]:
    """A page of models and the versions of each (one query for all of them)."""
    rows, after = fetch_page(session, select(Model), Model.id, PAGE, cursor, can_read(guard))
    versions: dict[str, list[ModelVersion]] = {row.id: [] for row in rows}
    if rows:
        for version in session.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id.in_(list(versions)))
            .order_by(ModelVersion.version)
        ):
            versions[version.model_id].append(version)
    return Listing(rows, after), versions


def runs(session: Session, guard: Guard, cursor: str | None) -> Listing:
    rows, after = fetch_page(session, select(Run), Run.id, PAGE, cursor, _run_readable(guard))
    return Listing(rows, after)


@dataclass(frozen=True)
class RunDetail:
    run: Run
    gates: Sequence[GateResultRow]
    transitions: Sequence[RunTransition]
    approval: Approval | None


def run_detail(session: Session, guard: Guard, run_id: str) -> RunDetail:
    """A run with its gate results, transitions and approval (404/403 as the API answers)."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    guard.require("read", f"run:{run.id}", run.domain)
    gates = session.scalars(
        select(GateResultRow).where(GateResultRow.run_id == run.id).order_by(GateResultRow.position)
    )
    transitions = session.scalars(
        select(RunTransition).where(RunTransition.run_id == run.id).order_by(RunTransition.position)
    )
    approval = session.scalars(select(Approval).where(Approval.run_id == run.id)).first()
    return RunDetail(run, list(gates), list(transitions), approval)


@dataclass(frozen=True)
class PendingApproval:
    approval: Approval
    may_decide: bool
    decisions: Sequence[ApprovalDecision]


def pending_approvals(session: Session, guard: Guard, cursor: str | None) -> Listing:
    """Pending approvals the viewer may read, whether it may decide each, and each one's
    decisions so far (one query for all of them)."""

    def visible(approval: Approval) -> bool:
        return guard.decide("read", f"approval:{approval.id}", approval.domain).allowed

    statement = select(Approval).where(Approval.status == "pending")
    rows, after = fetch_page(session, statement, Approval.id, PAGE, cursor, visible)
    decisions: dict[str, list[ApprovalDecision]] = {a.id: [] for a in rows}
    if rows:
        for decision in session.scalars(
            select(ApprovalDecision)
            .where(ApprovalDecision.approval_id.in_(list(decisions)))
            .order_by(ApprovalDecision.created_at, ApprovalDecision.id)
        ):
            decisions[decision.approval_id].append(decision)
    return Listing(
        [PendingApproval(a, may_decide(guard, a), decisions[a.id]) for a in rows],
        after,
    )


@dataclass(frozen=True)
class BudgetLine:
    dataset: Dataset
    dp_allowed: bool
    epsilon_budget: float
    epsilon_spent: float
    epsilon_reserved: float
    delta_budget: float
    delta_spent: float


def budgets(session: Session, guard: Guard, cursor: str | None) -> Listing:
    """Each readable dataset's privacy budget, spent and reserved, from one ledger query."""

    def visible(dataset: Dataset) -> bool:
        asset = asset_of(dataset)
        return (
            guard.decide("read", asset.ref, asset.domain, asset.attributes).allowed
            and guard.decide(
                "read", f"privacy_budget:{dataset.name}", asset.domain, asset.attributes
            ).allowed
        )

    rows, after = fetch_page(session, select(Dataset), Dataset.id, PAGE, cursor, visible)
    spent = {
        row.dataset_id: row
        for row in session.scalars(
            select(PrivacyBudgetRow).where(PrivacyBudgetRow.dataset_id.in_([d.id for d in rows]))
        )
    }
    lines = []
    for dataset in rows:
        budget = budget_for(guard.bundle, dataset)
        ledger = spent.get(dataset.id)
        lines.append(
            BudgetLine(
                dataset,
                budget is not None,
                budget.epsilon if budget else 0.0,
                epsilon_of(ledger.epsilon_spent) if ledger else 0.0,
                epsilon_of(ledger.epsilon_reserved) if ledger else 0.0,
                budget.delta if budget else 0.0,
                delta_of(ledger.delta_spent) if ledger else 0.0,
            )
        )
    return Listing(lines, after)

"""``/privacy/budgets``: each dataset's privacy budget, its ledger, and run reservations.

Reading a budget needs ``read`` on the dataset and on ``privacy_budget:NAME``. Reserving,
committing and releasing (what a training pipeline outside the control plane reports back)
need ``train`` on the dataset; only the principal that reserved settles a reservation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy.orm import Session

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import PathKey, RequestModel, ResponseModel
from control_plane.authorization import Guard
from control_plane.errors import ConflictError
from control_plane.inventory.catalog import asset_of, readable
from control_plane.privacy_ledger import BudgetStatement
from control_plane.store.models import Dataset, PrivacyLedgerEntry
from privacy.budget import delta_of, epsilon_of

router = APIRouter(prefix="/privacy", tags=["privacy"])

Epsilon = Annotated[float, Field(gt=0, le=100)]
Delta = Annotated[float, Field(gt=0, lt=1)]


class ReservationCreate(RequestModel):
    run_id: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9a-f]{1,32}$")]
    epsilon: Epsilon
    delta: Delta


class Spend(RequestModel):
    epsilon: Annotated[float, Field(ge=0, le=100)]
    delta: Annotated[float, Field(ge=0, lt=1)]
    accountant: Literal["rdp", "prv"]


class EntryOut(ResponseModel):
    id: str
    run_id: str
    state: str
    epsilon_reserved: float
    delta_reserved: float
    epsilon_spent: float | None
    delta_spent: float | None
    accountant: str | None
    reserved_by: str
    created_at: datetime
    settled_at: datetime | None


class Amounts(ResponseModel):
    budget: float
    spent: float
    reserved: float
    left: float


class BudgetOut(ResponseModel):
    dataset_id: str
    classification: str
    dp_allowed: bool
    max_epsilon_per_run: float
    epsilon: Amounts
    delta: Amounts
    composition: str
    entries: list[EntryOut]


def _entry(entry: PrivacyLedgerEntry) -> EntryOut:
    return EntryOut(
        id=entry.id,
        run_id=entry.run_id,
        state=entry.state,
        epsilon_reserved=epsilon_of(entry.epsilon_reserved),
        delta_reserved=delta_of(entry.delta_reserved),
        epsilon_spent=None if entry.epsilon_spent is None else epsilon_of(entry.epsilon_spent),
        delta_spent=None if entry.delta_spent is None else delta_of(entry.delta_spent),
        accountant=entry.accountant,
        reserved_by=entry.reserved_by,
        created_at=entry.created_at,
        settled_at=entry.settled_at,
    )


def _budget(statement: BudgetStatement) -> BudgetOut:
    budget = statement.budget
    return BudgetOut(
        dataset_id=statement.dataset_id,
        classification=statement.classification,
        dp_allowed=budget is not None,
        max_epsilon_per_run=budget.max_epsilon_per_run if budget else 0.0,
        epsilon=Amounts(
            budget=budget.epsilon if budget else 0.0,
            spent=statement.epsilon_spent,
            reserved=statement.epsilon_reserved,
            left=statement.epsilon_left,
        ),
        delta=Amounts(
            budget=budget.delta if budget else 0.0,
            spent=statement.delta_spent,
            reserved=statement.delta_reserved,
            left=statement.delta_left,
        ),
        composition="basic: epsilons and deltas of runs add up",
        entries=[_entry(entry) for entry in statement.entries],
    )


def _trainable(session: Session, guard: Guard, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    readable(session, guard, dataset, f"dataset {dataset_id}")
    assert dataset is not None
    asset = asset_of(dataset)
    guard.require("train", asset.ref, asset.domain, asset.attributes)
    return dataset


@router.get("/budgets/{dataset_id}")
def get_budget(dataset_id: PathKey, services: ServicesDep, guard: GuardDep) -> BudgetOut:
    with services.db.session() as session:
        dataset = readable(
            session, guard, session.get(Dataset, dataset_id), f"dataset {dataset_id}"
        )
        asset = asset_of(dataset)
        guard.require("read", f"privacy_budget:{dataset.name}", asset.domain, asset.attributes)
        return _budget(services.privacy_ledger.statement(session, dataset_id))


@router.post("/budgets/{dataset_id}/reservations", status_code=201)
def reserve(
    dataset_id: PathKey, body: ReservationCreate, services: ServicesDep, guard: GuardDep
) -> EntryOut:
    with services.db.session(write=True) as session:
        _trainable(session, guard, dataset_id)
        entry = services.privacy_ledger.reserve(
            session, dataset_id, body.run_id, body.epsilon, body.delta, guard.caller.name
        )
        return _entry(entry)


def _settle(
    session: Session, services: ServicesDep, guard: Guard, dataset_id: str, run_id: str
) -> None:
    _trainable(session, guard, dataset_id)
    mine = [
        entry
        for entry in services.privacy_ledger.open_reservations(session, run_id)
        if entry.dataset_id == dataset_id
    ]
    if mine and mine[0].reserved_by != guard.caller.name:
        raise ConflictError(f"only {mine[0].reserved_by}, who reserved, settles this reservation")


@router.post("/budgets/{dataset_id}/reservations/{run_id}/commit")
def commit(
    dataset_id: PathKey, run_id: PathKey, body: Spend, services: ServicesDep, guard: GuardDep
) -> EntryOut:
    with services.db.session(write=True) as session:
        _settle(session, services, guard, dataset_id, run_id)
        entry = services.privacy_ledger.commit(
            session,
            dataset_id,
            run_id,
            body.epsilon,
            body.delta,
            body.accountant,
            guard.caller.name,
        )
        return _entry(entry)


@router.post("/budgets/{dataset_id}/reservations/{run_id}/release")
def release(
    dataset_id: PathKey, run_id: PathKey, services: ServicesDep, guard: GuardDep
) -> EntryOut:
    with services.db.session(write=True) as session:
        _settle(session, services, guard, dataset_id, run_id)
        return _entry(
            services.privacy_ledger.release(session, dataset_id, run_id, guard.caller.name)
        )

"""``/datasets``: governed datasets with owner, domain, classification, PII columns and budget."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import select

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import (
    NO_NUL,
    Classification,
    Domain,
    Name,
    PathKey,
    RequestModel,
    ResponseModel,
    Text,
)
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.inventory.catalog import can_read, readable, register
from control_plane.store.models import Dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])


class Column(RequestModel):
    name: Name
    type: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]


class PrivacyBudget(RequestModel):
    epsilon: Annotated[float, Field(gt=0, le=100)]
    delta: Annotated[float, Field(ge=0, lt=1)]


class DatasetCreate(RequestModel):
    name: Name
    domain: Domain
    classification: Classification
    description: Text = ""
    columns: Annotated[list[Column], Field(max_length=2000)] = []
    pii_columns: Annotated[list[Name], Field(max_length=2000)] = []
    location: Annotated[str, Field(max_length=2000, pattern=NO_NUL)] | None = None
    privacy_budget: PrivacyBudget | None = None


class DatasetOut(ResponseModel):
    id: str
    name: str
    domain: str
    owner: str
    classification: str
    description: str
    columns: list[dict[str, Any]]
    pii_columns: list[str]
    location: str | None
    privacy_budget: dict[str, float] | None
    created_at: datetime


def _out(row: Dataset) -> DatasetOut:
    budget = (
        {"epsilon": row.epsilon_budget, "delta": row.delta_budget or 0.0}
        if row.epsilon_budget is not None
        else None
    )
    return DatasetOut(
        id=row.id,
        name=row.name,
        domain=row.domain,
        owner=row.owner,
        classification=row.classification,
        description=row.description,
        columns=row.columns,
        pii_columns=row.pii_columns,
        location=row.location,
        privacy_budget=budget,
        created_at=row.created_at,
    )


@router.post("", status_code=201)
def create(body: DatasetCreate, services: ServicesDep, guard: GuardDep) -> DatasetOut:
    budget = body.privacy_budget
    row = Dataset(
        **body.model_dump(exclude={"privacy_budget", "columns"}),
        columns=[column.model_dump() for column in body.columns],
        epsilon_budget=budget.epsilon if budget else None,
        delta_budget=budget.delta if budget else None,
        owner=guard.caller.name,
        created_by=guard.caller.name,
    )
    with services.db.session(write=True) as session:
        return _out(register(session, guard, row))


@router.get("")
def list_datasets(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    domain: Annotated[Domain | None, Query()] = None,
    classification: Annotated[Classification | None, Query()] = None,
) -> Page[DatasetOut]:
    statement = select(Dataset)
    if domain is not None:
        statement = statement.where(Dataset.domain == domain)
    if classification is not None:
        statement = statement.where(Dataset.classification == classification)
    with services.db.session() as session:
        rows, next_cursor = fetch_page(
            session, statement, Dataset.id, limit, cursor, can_read(guard)
        )
    return Page(items=[_out(row) for row in rows], next_cursor=next_cursor)


@router.get("/{dataset_id}")
def get(dataset_id: PathKey, services: ServicesDep, guard: GuardDep) -> DatasetOut:
    with services.db.session() as session:
        return _out(
            readable(session, guard, session.get(Dataset, dataset_id), f"dataset {dataset_id}")
        )

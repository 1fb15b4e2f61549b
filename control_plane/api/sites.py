"""``/sites``: federated sites, the datasets they hold, their local policy and decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import select

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import (
    NO_NUL,
    Attributes,
    Domain,
    Name,
    PathKey,
    RequestModel,
    ResponseModel,
    Text,
)
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.inventory.catalog import can_read, readable, register
from control_plane.inventory.sites import (
    SitePolicy,
    decide_participation,
    hold_datasets,
    site_view,
)
from control_plane.store.models import Site

router = APIRouter(prefix="/sites", tags=["sites"])


class SiteCreate(RequestModel):
    name: Name
    domain: Domain
    residency: Annotated[str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]
    attributes: Attributes = {}
    node_id: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)] | None = None
    datasets: Annotated[list[Name], Field(max_length=256)] = []
    policy: SitePolicy = SitePolicy()


class HeldDatasetOut(ResponseModel):
    id: str
    name: str
    classification: str


class SiteOut(ResponseModel):
    id: str
    name: str
    domain: str
    operator: str
    residency: str
    attributes: dict[str, str | int | float | bool]
    node_id: str | None
    policy: dict[str, Any]
    datasets: list[HeldDatasetOut]
    created_at: datetime


class ParticipationDecision(RequestModel):
    run_id: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
    decision: Literal["approve", "refuse"]
    comment: Text = ""


class ParticipationOut(ResponseModel):
    id: str
    site_id: str
    run_id: str
    decision: str
    comment: str
    decided_by: str
    decided_at: datetime


@router.post("", status_code=201)
def create(body: SiteCreate, services: ServicesDep, guard: GuardDep) -> SiteOut:
    fields = body.model_dump(exclude={"datasets", "policy"})
    row = Site(
        **fields,
        policy=body.policy.model_dump(),
        operator=guard.caller.name,
        created_by=guard.caller.name,
    )
    with services.db.session(write=True) as session:
        register(session, guard, row)
        hold_datasets(session, guard, row, body.datasets)
        return SiteOut.model_validate(site_view(session, row))


@router.get("")
def list_sites(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    domain: Annotated[Domain | None, Query()] = None,
) -> Page[SiteOut]:
    statement = select(Site)
    if domain is not None:
        statement = statement.where(Site.domain == domain)
    with services.db.session() as session:
        rows, next_cursor = fetch_page(session, statement, Site.id, limit, cursor, can_read(guard))
        items = [SiteOut.model_validate(site_view(session, row)) for row in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{site_id}")
def get(site_id: PathKey, services: ServicesDep, guard: GuardDep) -> SiteOut:
    with services.db.session() as session:
        site = readable(session, guard, session.get(Site, site_id), f"site {site_id}")
        return SiteOut.model_validate(site_view(session, site))


@router.post("/{site_id}/participations", status_code=201)
def decide(
    site_id: PathKey, body: ParticipationDecision, services: ServicesDep, guard: GuardDep
) -> ParticipationOut:
    """The site operator approves or refuses the site's participation in a federated run."""
    with services.db.session(write=True) as session:
        site = readable(session, guard, session.get(Site, site_id), f"site {site_id}")
        row = decide_participation(
            session, guard, services.audit, site, body.run_id, body.decision, body.comment
        )
        return ParticipationOut.model_validate(row)

"""``/sites``: federated sites with their operator, residency and policy attributes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import select

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import NO_NUL, Attributes, Domain, Name, RequestModel, ResponseModel
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.inventory.catalog import can_read, register
from control_plane.store.models import Site

router = APIRouter(prefix="/sites", tags=["sites"])


class SiteCreate(RequestModel):
    name: Name
    domain: Domain
    residency: Annotated[str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]
    attributes: Attributes = {}
    node_id: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)] | None = None


class SiteOut(ResponseModel):
    id: str
    name: str
    domain: str
    operator: str
    residency: str
    attributes: dict[str, str | int | float | bool]
    node_id: str | None
    created_at: datetime


@router.post("", status_code=201)
def create(body: SiteCreate, services: ServicesDep, guard: GuardDep) -> SiteOut:
    row = Site(**body.model_dump(), operator=guard.caller.name, created_by=guard.caller.name)
    with services.db.session(write=True) as session:
        return SiteOut.model_validate(register(session, guard, row))


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
    return Page(items=[SiteOut.model_validate(row) for row in rows], next_cursor=next_cursor)

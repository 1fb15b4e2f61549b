"""``/deployments``: model versions served at endpoints, read under their model's policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import Name, PathKey, ResponseModel
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.authorization import Guard
from control_plane.errors import NotFoundError
from control_plane.inventory.assets import model_asset
from control_plane.store.models import Deployment, Model

router = APIRouter(prefix="/deployments", tags=["deployments"])


class DeploymentOut(ResponseModel):
    name: str
    domain: str
    model: str
    version: int
    target: str
    endpoint_url: str | None
    status: str
    canary_percent: int
    run_id: str
    created_by: str
    created_at: datetime
    updated_at: datetime


def _may_read(session: Session, guard: Guard) -> Callable[[Deployment], bool]:
    """Whether the caller may read a deployment: it may read the model the deployment serves."""

    def allowed(row: Deployment) -> bool:
        model = session.scalars(select(Model).where(Model.name == row.model)).first()
        if model is None:
            return False
        asset = model_asset(model)
        return guard.decide("read", asset.ref, asset.domain, asset.attributes).allowed

    return allowed


@router.get("")
def list_deployments(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    model: Annotated[Name | None, Query()] = None,
    target: Annotated[Literal["local", "kserve", "seldon"] | None, Query()] = None,
) -> Page[DeploymentOut]:
    statement = select(Deployment)
    if model is not None:
        statement = statement.where(Deployment.model == model)
    if target is not None:
        statement = statement.where(Deployment.target == target)
    with services.db.session() as session:
        rows, next_cursor = fetch_page(
            session, statement, Deployment.id, limit, cursor, _may_read(session, guard)
        )
        return Page(
            items=[DeploymentOut.model_validate(row) for row in rows], next_cursor=next_cursor
        )


@router.get("/{name}")
def get(name: PathKey, services: ServicesDep, guard: GuardDep) -> DeploymentOut:
    with services.db.session() as session:
        row = session.scalars(select(Deployment).where(Deployment.name == name)).first()
        if row is None:
            raise NotFoundError(f"no deployment named {name!r}")
        model = session.scalars(select(Model).where(Model.name == row.model)).one()
        asset = model_asset(model)
        guard.require("read", asset.ref, asset.domain, asset.attributes)
        return DeploymentOut.model_validate(row)

"""``/approvals``: approvals that runs wait for (the decision workflow is its own module)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import Name, ResponseModel
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.store.models import Approval

router = APIRouter(prefix="/approvals", tags=["approvals"])

ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "revoked"]


class ApprovalOut(ResponseModel):
    id: str
    run_id: str
    domain: str
    target: str
    status: str
    requirement: dict[str, Any]
    requested_by: str
    created_at: datetime
    expires_at: datetime | None


@router.get("")
def list_approvals(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[ApprovalStatus | None, Query()] = None,
    model: Annotated[Name | None, Query(description="Only approvals for this model.")] = None,
    actionable: Annotated[
        bool, Query(description="Only approvals the caller's roles allow it to decide.")
    ] = False,
) -> Page[ApprovalOut]:
    statement = select(Approval)
    if status is not None:
        statement = statement.where(Approval.status == status)
    if model is not None:
        statement = statement.where(Approval.target == f"model:{model}")
    action = "approve" if actionable else "read"

    def visible(approval: Approval) -> bool:
        return guard.decide(action, f"approval:{approval.id}", approval.domain).allowed

    with services.db.session() as session:
        rows, next_cursor = fetch_page(session, statement, Approval.id, limit, cursor, visible)
    return Page(items=[ApprovalOut.model_validate(row) for row in rows], next_cursor=next_cursor)

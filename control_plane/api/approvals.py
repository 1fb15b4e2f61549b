"""``/approvals``: the approvals runs wait for, and the decisions that settle them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.api.deps import GuardDep, Services, ServicesDep
from control_plane.api.fields import Name, PathKey, RequestModel, ResponseModel, Text
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.approvals import DecisionKind, may_decide
from control_plane.authorization import Guard
from control_plane.errors import NotFoundError
from control_plane.store.models import Approval, ApprovalDecision

router = APIRouter(prefix="/approvals", tags=["approvals"])

ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "revoked"]
GET_APPROVAL = "get_approval"
_APPROVAL_LINK = {
    "links": {
        "GetApproval": {
            "operationId": GET_APPROVAL,
            "parameters": {"approval_id": "$request.path.approval_id"},
        }
    }
}


class DecisionIn(RequestModel):
    decision: DecisionKind
    comment: Text = ""


class RevocationIn(RequestModel):
    comment: Text = ""


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
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None


class DecisionOut(ResponseModel):
    id: str
    approver: str
    decision: str
    comment: str
    roles: list[str]
    created_at: datetime


class ApprovalDetail(ApprovalOut):
    decisions: list[DecisionOut]


class DecisionResult(ResponseModel):
    decision: DecisionOut
    approval: ApprovalDetail


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

    def visible(approval: Approval) -> bool:
        if actionable:
            return may_decide(guard, approval)
        return guard.decide("read", f"approval:{approval.id}", approval.domain).allowed

    with services.db.session() as session:
        rows, next_cursor = fetch_page(session, statement, Approval.id, limit, cursor, visible)
    return Page(items=[ApprovalOut.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get("/{approval_id}", operation_id=GET_APPROVAL)
def get_approval(approval_id: PathKey, services: ServicesDep, guard: GuardDep) -> ApprovalDetail:
    with services.db.session() as session:
        approval = session.get(Approval, approval_id)
        if approval is None:
            raise NotFoundError(f"no approval {approval_id}")
        guard.require("read", f"approval:{approval.id}", approval.domain)
        return _detail(session, approval)


@router.post(
    "/{approval_id}/decisions",
    status_code=201,
    responses={
        201: _APPROVAL_LINK,
        200: {"model": DecisionResult, "description": "The caller had decided the same."},
    },
)
def decide(
    approval_id: PathKey,
    body: DecisionIn,
    services: ServicesDep,
    guard: GuardDep,
    response: Response,
) -> DecisionResult:
    """Approve or reject; a repeat of the caller's decision returns it (200), a change is 409."""
    result, created = record_decision(services, guard, approval_id, body.decision, body.comment)
    if not created:
        response.status_code = 200
    return result


def record_decision(
    services: Services,
    guard: Guard,
    approval_id: str,
    decision: DecisionKind,
    comment: str,
) -> tuple[DecisionResult, bool]:
    """The caller's decision through the workflow, and whether this call made it.

    A completed approval wakes the worker so the waiting run is claimed again. The API route
    and the dashboard's form both decide through here.
    """
    services.approvals.expire_due(approval_id=approval_id)
    with services.db.session(write=True) as session:
        decided = services.approvals.decide(session, guard, approval_id, decision, comment)
        result = DecisionResult(
            decision=DecisionOut.model_validate(decided.decision),
            approval=_detail(session, session.get_one(Approval, approval_id)),
        )
    if result.approval.status == "approved" and services.worker is not None:
        services.worker.notify()  # the run can be claimed again
    return result, decided.created


@router.post("/{approval_id}/revoke", responses={200: _APPROVAL_LINK})
def revoke(
    approval_id: PathKey, body: RevocationIn, services: ServicesDep, guard: GuardDep
) -> ApprovalDetail:
    """Withdraw an open approval (its submitter or an admin); the run is rejected."""
    services.approvals.expire_due(approval_id=approval_id)
    with services.db.session(write=True) as session:
        approval = services.approvals.revoke(session, guard, approval_id, body.comment)
        return _detail(session, approval)


def _detail(session: Session, approval: Approval) -> ApprovalDetail:
    decisions = session.scalars(
        select(ApprovalDecision)
        .where(ApprovalDecision.approval_id == approval.id)
        .order_by(ApprovalDecision.created_at, ApprovalDecision.id)
    )
    return ApprovalDetail.model_validate(
        {
            **ApprovalOut.model_validate(approval).model_dump(),
            "decisions": [DecisionOut.model_validate(d) for d in decisions],
        }
    )

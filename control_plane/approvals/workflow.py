"""The approval workflow: decisions, revocation and expiry of the approvals runs wait for.

Every change locks the approval row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
write transactions are serialized by ``BEGIN IMMEDIATE``), so concurrent decisions on any number
of replicas see each other: an approval completes once, and its run resumes once. The decision,
its audit record, the approval's closing, the run's resumption and the webhook notifications
commit in one transaction, or none of them does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditEvent
from control_plane.approvals.quorum import Outcome, Vote, tally
from control_plane.approvals.separation import excluded_approvers
from control_plane.approvals.webhooks import approval_facts
from control_plane.audit_trail import AuditLog
from control_plane.authorization import Guard
from control_plane.errors import ConflictError, ForbiddenError, NotFoundError
from control_plane.runs import RunEngine
from control_plane.store import Database, utcnow
from control_plane.store.models import Approval, ApprovalDecision, Run

EXPIRY = "system:approval-expiry"
DecisionKind = Literal["approve", "reject"]


class Notifier(Protocol):
    """Queues a notification in the transaction of the change it announces."""

    def notify(self, session: Session, event: str, payload: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Decided:
    """A decision and whether this call made it (False: an identical earlier one)."""

    decision: ApprovalDecision
    created: bool


class ApprovalWorkflow:
    """Decides, revokes and expires approvals, resuming or rejecting the runs that wait."""

    def __init__(self, db: Database, runs: RunEngine, trail: AuditLog, notifier: Notifier) -> None:
        self._db = db
        self._runs = runs
        self._trail = trail
        self._notifier = notifier

    def decide(
        self,
        session: Session,
        guard: Guard,
        approval_id: str,
        decision: DecisionKind,
        comment: str,
    ) -> Decided:
        """Record the caller's decision; complete the approval when the quorum says so.

        Raises:
            NotFoundError: no such approval.
            ForbiddenError: the policy does not let the caller approve it, or separation of
                duties excludes the caller.
            ConflictError: the caller already decided differently, or the approval is closed
                or expired.
        """
        approval = _locked(session, approval_id)
        resource = f"approval:{approval.id}"
        guard.require(*_approve(approval))
        approver = guard.caller.name
        earlier = session.scalars(
            select(ApprovalDecision).where(
                ApprovalDecision.approval_id == approval.id,
                ApprovalDecision.approver == approver,
            )
        ).first()
        if earlier is not None:
            if (earlier.decision, earlier.comment) != (decision, comment):
                raise ConflictError(
                    f"{approver} already decided {earlier.decision} on approval {approval.id}; "
                    "a decision cannot be changed"
                )
            return Decided(earlier, created=False)
        _require_open(approval)
        run = session.get_one(Run, approval.run_id)
        if approval.requirement.get("separation_of_duties", True):
            excluded = excluded_approvers(session, run)
            if approver in excluded:
                raise self._separated(guard, approval, decision, comment, excluded[approver])
        row = ApprovalDecision(
            approval_id=approval.id,
            approver=approver,
            decision=decision,
            comment=comment,
            roles=sorted(guard.engine.roles_of(approver, approval.domain)),
        )
        session.add(row)
        session.flush()
        votes = [
            Vote(d.approver, d.decision, d.roles)  # type: ignore[arg-type]
            for d in session.scalars(
                select(ApprovalDecision).where(ApprovalDecision.approval_id == approval.id)
            )
        ]
        outcome = tally(approval.requirement, votes)
        verb = "approved" if decision == "approve" else "rejected"
        reason = f"{approver} {verb}: {comment}" if comment else f"{approver} {verb}"
        if outcome != Outcome.PENDING:
            self._close(session, approval, outcome, approver, reason)
        facts = {
            **approval_facts(approval),
            "approver": approver,
            "decision": decision,
            "comment": comment,
            "roles": row.roles,
        }
        self._trail.append(
            session,
            [
                AuditEvent(
                    actor=approver,
                    action="approval.decide",
                    resource=resource,
                    decision=decision,
                    reasons=(reason,),
                    run_id=approval.run_id,
                    request_id=guard.request_id,
                    payload=facts,
                )
            ],
        )
        self._notifier.notify(session, "approval.decided", facts)
        return Decided(row, created=True)

    def revoke(self, session: Session, guard: Guard, approval_id: str, comment: str) -> Approval:
        """Withdraw an open approval (its submitter or an admin): the run is rejected.

        Raises:
            NotFoundError: no such approval.
            ForbiddenError: the policy does not let the caller revoke it.
            ConflictError: the approval is already closed.
        """
        approval = _locked(session, approval_id)
        resource = f"approval:{approval.id}"
        guard.require("revoke", resource, approval.domain, _attributes(approval))
        _require_open(approval)
        who = guard.caller.name
        reason = f"revoked by {who}: {comment}" if comment else f"revoked by {who}"
        self._close(session, approval, "revoked", who, reason)
        facts = {**approval_facts(approval), "comment": comment, "revoked_by": who}
        self._trail.append(
            session,
            [
                AuditEvent(
                    actor=who,
                    action="approval.revoke",
                    resource=resource,
                    decision="revoked",
                    reasons=(reason,),
                    run_id=approval.run_id,
                    request_id=guard.request_id,
                    payload=facts,
                )
            ],
        )
        self._notifier.notify(session, "approval.revoked", facts)
        return approval

    def expire_due(self, now: datetime | None = None, approval_id: str | None = None) -> int:
        """Close the open approvals whose time ran out (their runs are rejected); how many."""
        now = now or utcnow()
        statement = select(Approval.id).where(
            Approval.status == "pending", Approval.expires_at <= now
        )
        if approval_id is not None:
            statement = statement.where(Approval.id == approval_id)
        with self._db.session() as session:
            due = session.scalars(statement).all()
        expired = 0
        for candidate in due:
            with self._db.session(write=True) as session:
                approval = _locked(session, candidate)
                if approval.status != "pending" or not _expired(approval, now):
                    continue  # decided, revoked or expired meanwhile
                assert approval.expires_at is not None
                reason = f"the approval expired at {approval.expires_at.isoformat()}"
                self._close(session, approval, "expired", EXPIRY, reason)
                facts = approval_facts(approval)
                self._trail.append(
                    session,
                    [
                        AuditEvent(
                            actor=EXPIRY,
                            action="approval.expire",
                            resource=f"approval:{approval.id}",
                            decision="expired",
                            reasons=(reason,),
                            run_id=approval.run_id,
                            payload=facts,
                        )
                    ],
                )
                self._notifier.notify(session, "approval.expired", facts)
                expired += 1
        return expired

    def _close(
        self, session: Session, approval: Approval, status: str, by: str, reason: str
    ) -> None:
        approval.status = status
        approval.closed_at = utcnow()
        approval.closed_by = by
        approval.close_reason = reason
        session.flush()
        self._runs.resume(session, approval.run_id, status == Outcome.APPROVED, reason)

    def _separated(
        self,
        guard: Guard,
        approval: Approval,
        decision: DecisionKind,
        comment: str,
        why: str,
    ) -> ForbiddenError:
        """The refusal of an excluded approver, recorded once its transaction is gone."""
        caller = guard.caller.name
        error = ForbiddenError(
            f"{caller} may not decide approval {approval.id}: separation of duties "
            f"({caller} {why})",
            rule=f"{approval.requirement.get('rule', 'approvals.yaml')} separation_of_duties",
            bundle_version=guard.bundle.version,
        )
        event = AuditEvent(
            actor=caller,
            action="approval.decide",
            resource=f"approval:{approval.id}",
            decision="refused",
            reasons=(error.detail,),
            run_id=approval.run_id,
            request_id=guard.request_id,
            payload={"decision": decision, "comment": comment},
        )
        error.before_response = lambda: self._trail.commit([event])
        return error


def _locked(session: Session, approval_id: str) -> Approval:
    approval = session.get(Approval, approval_id, with_for_update=True, populate_existing=True)
    if approval is None:
        raise NotFoundError(f"no approval {approval_id}")
    return approval


def may_decide(guard: Guard, approval: Approval) -> bool:
    """Whether the policy lets the caller decide ``approval`` (separation of duties is checked
    when it decides)."""
    return guard.decide(*_approve(approval)).allowed


def _approve(approval: Approval) -> tuple[str, str, str, dict[str, Any]]:
    """The authorization request of deciding ``approval``."""
    return "approve", f"approval:{approval.id}", approval.domain, _attributes(approval)


def _attributes(approval: Approval) -> dict[str, Any]:
    return {"requested_by": approval.requested_by, "target": approval.target}


def _expired(approval: Approval, now: datetime) -> bool:
    return approval.expires_at is not None and approval.expires_at <= now


def _require_open(approval: Approval) -> None:
    if approval.status != "pending":
        raise ConflictError(f"approval {approval.id} is {approval.status}, no longer open")
    if _expired(approval, utcnow()):
        raise ConflictError(f"approval {approval.id} expired; it is being closed")

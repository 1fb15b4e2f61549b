"""What the control plane writes to the trail: run transitions and authorization decisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from audit import AuditEvent
from control_plane.audit_trail.log import AuditLog
from control_plane.authorization import Caller, Guard
from control_plane.store import active_write_session
from control_plane.store.models import Run, RunTransition
from policies import AuthzRequest, Decision

RUN_ENGINE = "system:run-engine"


class RunTransitionAudit:
    """Appends one record per run state change, in the transaction that makes it."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def record(self, session: Session, run: Run, transition: RunTransition) -> None:
        """Record ``transition``; raising refuses it (the run does not move)."""
        self._log.append(
            session,
            [
                AuditEvent(
                    actor=run.submitted_by if transition.position == 0 else RUN_ENGINE,
                    action="run.submit" if transition.position == 0 else "run.transition",
                    resource=run.target,
                    decision=transition.to_state,
                    reasons=(transition.reason,) if transition.reason else (),
                    run_id=run.id,
                    payload={
                        "kind": run.kind,
                        "domain": run.domain,
                        "from_state": transition.from_state,
                        "to_state": transition.to_state,
                        "position": transition.position,
                        "bundle_version": run.bundle_version,
                        "inputs": list(run.inputs),
                    },
                )
            ],
        )


def action_event(
    guard: Guard, action: str, resource: str, payload: Mapping[str, Any]
) -> AuditEvent:
    """The record of a change the guard's caller made (it succeeded if the record commits)."""
    return AuditEvent(
        actor=guard.caller.name,
        action=action,
        resource=resource,
        decision="ok",
        request_id=guard.request_id,
        payload=payload,
    )


def decision_event(
    actor: str, request_id: str | None, request: AuthzRequest, decision: Decision, action: str
) -> AuditEvent:
    """The record of one authorization decision."""
    return AuditEvent(
        actor=actor,
        action=action,
        resource=request.object,
        decision="allow" if decision.allowed else "deny",
        reasons=(decision.rule,),
        request_id=request_id,
        payload={
            "subject": request.subject,
            "domain": request.domain,
            "requested_action": request.action,
            "attributes": dict(request.attributes),
            "bundle_version": decision.bundle_version,
        },
    )


class DecisionAudit:
    """Records the decisions a :class:`control_plane.authorization.Guard` enforces.

    An allowed action is recorded before it proceeds: in the write transaction that is open,
    so the record commits with what the action changes, or else in a group commit. A refusal
    is recorded after the refused request's transaction has rolled back.
    """

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def allowed(
        self, caller: Caller, request_id: str | None, request: AuthzRequest, decision: Decision
    ) -> None:
        """Record an allow decision now; raises ``AuditUnavailableError`` if it cannot be."""
        event = decision_event(caller.name, request_id, request, decision, "authz.decision")
        session = active_write_session()
        if session is not None:
            self._log.append(session, [event])
        else:
            self._log.commit([event])

    def denied(
        self, caller: Caller, request_id: str | None, request: AuthzRequest, decision: Decision
    ) -> Callable[[], None]:
        """What records a deny decision, to be run once the refused request's writes are gone."""
        event = decision_event(caller.name, request_id, request, decision, "authz.decision")

        def record() -> None:
            self._log.commit([event])

        return record

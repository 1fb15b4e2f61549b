"""``/policies``: the active bundle and its history, proposals, and dry-run decisions (PDP)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import Field, StringConstraints

from audit import payload_digest
from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import NO_NUL, Attributes, Domain, Name, RequestModel, ResponseModel
from control_plane.api.runs import RunDetail, run_detail, run_link
from control_plane.audit_trail import action_event, decision_event
from control_plane.bundles import active_bundle_row, history, propose_bundle
from control_plane.errors import ProblemError
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.runs import RunKind, RunSubmission
from policies import AuthzRequest

router = APIRouter(prefix="/policies", tags=["policies"])

FileName = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.(conf|csv|yaml)$")]
FileText = Annotated[str, StringConstraints(max_length=262_144, pattern=NO_NUL)]
ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=NO_NUL)]


class BundleVersionOut(ResponseModel):
    version: str
    status: str
    created_by: str | None
    created_at: datetime
    activated_at: datetime | None


class PoliciesOut(ResponseModel):
    active: BundleVersionOut
    files: dict[str, str]
    history: list[BundleVersionOut]


class BundleProposal(RequestModel):
    files: Annotated[dict[FileName, FileText], Field(min_length=1, max_length=16)]


class ProposalOut(ResponseModel):
    version: str
    run: RunDetail


class DecideRequest(RequestModel):
    subject: Name
    domain: Domain
    object: ObjectId
    action: Name
    attributes: Attributes = {}


class DecisionOut(ResponseModel):
    allowed: bool
    rule: str
    bundle_version: str


@router.get("")
def get_policies(services: ServicesDep, guard: GuardDep) -> PoliciesOut:
    guard.require("read", "policy:*", PLATFORM_DOMAIN)
    with services.db.session() as session:
        active = active_bundle_row(session)
        if active is None:
            raise ProblemError(503, "Service Unavailable", "no active policy bundle")
        return PoliciesOut(
            active=BundleVersionOut.model_validate(active),
            files=active.files,
            history=[BundleVersionOut.model_validate(row) for row in history(session)],
        )


@router.post("", status_code=202, responses=run_link("/run/id"))
def propose(body: BundleProposal, services: ServicesDep, guard: GuardDep) -> ProposalOut:
    guard.require("propose", "policy:*", PLATFORM_DOMAIN)
    with services.db.session(write=True) as session:
        bundle = propose_bundle(session, body.files, guard.caller.name)
        proposed = {"version": bundle.version, "files_sha256": payload_digest(body.files)}
        event = action_event(guard, "policy.propose", f"policy:{bundle.version}", proposed)
        services.audit.append(session, [event])
        submission = RunSubmission(kind=RunKind.POLICY_CHANGE, target=f"policy:{bundle.version}")
        run = services.runs.submit(session, guard, submission)
        detail = run_detail(session, run)
    if services.worker is not None:
        services.worker.notify()
    return ProposalOut(version=bundle.version, run=detail)


@router.post("/decide")
def decide(body: DecideRequest, services: ServicesDep, guard: GuardDep) -> DecisionOut:
    permit = guard.decide("decide", "policy:*", body.domain)
    if not permit.allowed:
        guard.require("decide", "policy:*", body.domain)  # raises 403, recording the refusal
    request = AuthzRequest(
        subject=body.subject,
        domain=body.domain,
        object=body.object,
        action=body.action,
        attributes=body.attributes,
    )
    decision = guard.engine.decide(request)
    # One record holds the caller's permission and the decision it asked for: one commit.
    event = decision_event(guard.caller.name, guard.request_id, request, decision, "policy.decide")
    services.audit.commit([replace(event, reasons=(*event.reasons, f"permitted by {permit.rule}"))])
    return DecisionOut(
        allowed=decision.allowed, rule=decision.rule, bundle_version=decision.bundle_version
    )

"""``/audit``: the trail's records, verification, signed checkpoints, proofs and exports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from audit import FORMATS, MEDIA_TYPES, ExportFilter, ExportFormat
from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import NO_NUL, ResponseModel
from control_plane.errors import InvalidInputError
from control_plane.inventory.assets import PLATFORM_DOMAIN

router = APIRouter(prefix="/audit", tags=["audit"])

Sequence_ = Annotated[int, Query(ge=0, le=2**62)]
Filter = Annotated[str | None, Query(min_length=1, max_length=512, pattern=NO_NUL)]


class EventOut(ResponseModel):
    sequence: int
    time: str
    actor: str
    action: str
    resource: str
    decision: str
    reasons: list[str]
    run_id: str | None
    request_id: str | None
    payload: dict[str, Any]
    payload_digest: str
    redacted: list[str]


class EventsPage(ResponseModel):
    items: list[EventOut]
    next_after: int | None


class VerificationOut(ResponseModel):
    valid: bool
    size: int
    root_hash: str
    first_invalid: int | None
    problem: str | None
    records: int


class CheckpointOut(ResponseModel):
    format: str
    size: int
    root_hash: str
    issued_at: str
    key_id: str
    signature: str
    public_key: str


class InclusionOut(ResponseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str
    leaf: str | None
    root_hash: str
    audit_path: list[str]


class ConsistencyOut(ResponseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    consistency_path: list[str]


def _authorize(guard: GuardDep) -> None:
    guard.require("read", "audit:*", PLATFORM_DOMAIN)


@router.get("/events")
def list_events(
    services: ServicesDep,
    guard: GuardDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="The `next_after` of the previous page.")
    ] = None,
    actor: Filter = None,
    action: Filter = None,
    resource: Filter = None,
    run_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
) -> EventsPage:
    _authorize(guard)
    events = services.audit.events(after, limit, actor, action, resource, run_id)
    items = [EventOut.model_validate(event.to_json()) for event in events]
    return EventsPage(items=items, next_after=items[-1].sequence if len(items) == limit else None)


@router.get("/verify")
def verify(services: ServicesDep, guard: GuardDep) -> VerificationOut:
    _authorize(guard)
    verification = services.audit.verify_recorded(guard.caller.name, guard.request_id)
    return VerificationOut.model_validate(verification.to_json())


@router.get("/checkpoints/latest")
def latest_checkpoint(services: ServicesDep, guard: GuardDep) -> CheckpointOut:
    _authorize(guard)
    checkpoint = services.audit.checkpoint()
    return CheckpointOut(**checkpoint.to_json(), public_key=services.audit.public_key_pem)


@router.get("/proofs/inclusion")
def inclusion_proof(
    services: ServicesDep,
    guard: GuardDep,
    index: Sequence_,
    tree_size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> InclusionOut:
    _authorize(guard)
    return InclusionOut.model_validate(services.audit.inclusion_proof(index, tree_size))


@router.get("/proofs/consistency")
def consistency_proof(
    services: ServicesDep,
    guard: GuardDep,
    first: Annotated[int, Query(ge=1, le=2**62)],
    second: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> ConsistencyOut:
    _authorize(guard)
    return ConsistencyOut.model_validate(services.audit.consistency_proof(first, second))


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The export, with the checkpoint and hashes that verify it offline.",
            "content": {
                media_type: {"schema": {"type": "string", "format": "binary"}}
                for media_type in dict.fromkeys(MEDIA_TYPES.values())
            },
        }
    },
)
def export(
    services: ServicesDep,
    guard: GuardDep,
    format: Annotated[ExportFormat, Query(description=f"One of {', '.join(FORMATS)}.")] = "jsonl",
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    actor: Filter = None,
    resource: Filter = None,
    action: Filter = None,
) -> StreamingResponse:
    _authorize(guard)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInputError(f"{name} must carry a time zone (for example ...Z)")
    filters = ExportFilter(since, until, actor, resource, action)
    return StreamingResponse(
        services.audit.export(format, filters),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
    )

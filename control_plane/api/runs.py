"""``/runs``: submit governed runs and follow them, with each gate's result and evidence."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, field_validator
from pydantic_core import to_json
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.training import TrainingOutcome
from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import PathKey, RequestModel, ResponseModel
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.authorization import Guard
from control_plane.errors import NotFoundError
from control_plane.runs import RunKind, RunState, RunSubmission
from control_plane.runs.evidence import ARTIFACT_NAME, run_artifact, run_artifacts
from control_plane.runs.train import accept_report
from control_plane.store import utcnow
from control_plane.store.models import EvidenceArtifact, GateResultRow, Run, RunTransition

router = APIRouter(prefix="/runs", tags=["runs"])

AssetRef = Annotated[str, Field(pattern=r"^[a-z_]+:[A-Za-z0-9][A-Za-z0-9._@:-]{0,255}$")]
_MAX_PARAMS_BYTES = 65_536
GET_RUN = "get_run"


def run_link(body_pointer: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI link from a 202 answer to the run it started (for clients and fuzzers)."""
    parameters = {"run_id": f"$response.body#{body_pointer}"}
    return {202: {"links": {"GetRun": {"operationId": GET_RUN, "parameters": parameters}}}}


class RunCreate(RequestModel):
    kind: RunKind
    target: AssetRef
    inputs: Annotated[list[AssetRef], Field(max_length=64)] = []
    params: dict[str, Any] = {}

    @field_validator("params")
    @classmethod
    def _bounded(cls, params: dict[str, Any]) -> dict[str, Any]:
        if len(to_json(params)) > _MAX_PARAMS_BYTES:
            raise ValueError(f"params must serialize to at most {_MAX_PARAMS_BYTES} bytes")
        return params


class GateResultOut(ResponseModel):
    position: int
    gate: str
    status: str
    metrics: dict[str, float]
    evidence: dict[str, Any]
    reasons: list[str]
    created_at: datetime


class TransitionOut(ResponseModel):
    from_state: str | None
    to_state: str
    reason: str
    at: datetime


class RunOut(ResponseModel):
    id: str
    kind: str
    state: str
    domain: str
    target: str
    inputs: list[str]
    params: dict[str, Any]
    attributes: dict[str, Any]
    plan: list[dict[str, Any]]
    bundle_version: str
    submitted_by: str
    outputs: dict[str, Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class EvidenceOut(ResponseModel):
    name: str
    media_type: str
    digest: str
    size: int
    created_at: datetime


class RunDetail(RunOut):
    gates: list[GateResultOut]
    transitions: list[TransitionOut]


def _can_read(guard: Guard) -> Any:
    return lambda run: guard.decide("read", f"run:{run.id}", run.domain).allowed


def run_detail(session: Session, run: Run) -> RunDetail:
    """A run with its gate results and transitions."""
    gates = session.scalars(
        select(GateResultRow).where(GateResultRow.run_id == run.id).order_by(GateResultRow.position)
    )
    transitions = session.scalars(
        select(RunTransition).where(RunTransition.run_id == run.id).order_by(RunTransition.position)
    )
    return RunDetail.model_validate(
        {
            **RunOut.model_validate(run).model_dump(),
            "gates": [GateResultOut.model_validate(g) for g in gates],
            "transitions": [TransitionOut.model_validate(t) for t in transitions],
        }
    )


@router.post("", status_code=202, responses=run_link("/id"))
def submit(body: RunCreate, services: ServicesDep, guard: GuardDep) -> RunDetail:
    submission = RunSubmission(
        kind=body.kind, target=body.target, inputs=tuple(body.inputs), params=body.params
    )
    with services.db.session(write=True) as session:
        run = services.runs.submit(session, guard, submission)
        detail = run_detail(session, run)
    if services.worker is not None:
        services.worker.notify()
    return detail


@router.get("")
def list_runs(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    state: Annotated[RunState | None, Query()] = None,
    kind: Annotated[RunKind | None, Query()] = None,
) -> Page[RunOut]:
    statement = select(Run)
    if state is not None:
        statement = statement.where(Run.state == state)
    if kind is not None:
        statement = statement.where(Run.kind == kind)
    with services.db.session() as session:
        rows, next_cursor = fetch_page(session, statement, Run.id, limit, cursor, _can_read(guard))
    return Page(items=[RunOut.model_validate(row) for row in rows], next_cursor=next_cursor)


def _readable_run(session: Session, guard: Guard, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    guard.require("read", f"run:{run.id}", run.domain)
    return run


@router.get("/{run_id}", operation_id=GET_RUN)
def get(run_id: PathKey, services: ServicesDep, guard: GuardDep) -> RunDetail:
    with services.db.session() as session:
        return run_detail(session, _readable_run(session, guard, run_id))


@router.post("/{run_id}/report")
def report(
    run_id: PathKey, body: TrainingOutcome, services: ServicesDep, guard: GuardDep
) -> RunDetail:
    """The report of a train run's pipeline (Kubeflow), once: the version it registered becomes
    the model's next inventory version, its evidence naming the pipeline's run. Needs
    ``report`` on the run."""
    with services.db.session(write=True) as session:
        run = accept_report(session, services.audit, guard, run_id, body)
        services.lineage_recorder.record_outputs(session, run, utcnow())
        return run_detail(session, run)


@router.get("/{run_id}/evidence")
def list_evidence(run_id: PathKey, services: ServicesDep, guard: GuardDep) -> list[EvidenceOut]:
    """The documents a run kept as evidence, by name, each with its SHA-256 digest."""
    with services.db.session() as session:
        run = _readable_run(session, guard, run_id)
        return [EvidenceOut.model_validate(row) for row in run_artifacts(session, run.id)]


@router.get(
    "/{run_id}/evidence/{name}",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/html": {}, "text/markdown": {}}}},
)
def get_evidence(
    run_id: PathKey,
    name: Annotated[str, Path(pattern=ARTIFACT_NAME.pattern)],
    services: ServicesDep,
    guard: GuardDep,
) -> Response:
    """One evidence document as it was written, with its digest as the ETag."""
    with services.db.session() as session:
        run = _readable_run(session, guard, run_id)
        return evidence_response(run_artifact(session, run.id, name))


def evidence_response(row: EvidenceArtifact) -> Response:
    """A stored document served read-only: sandboxed, never sniffed, named by its digest."""
    return Response(
        row.content,
        media_type=row.media_type,
        headers={
            "ETag": f'"{row.digest}"',
            "Content-Security-Policy": "sandbox allow-scripts",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=0",
        },
    )

"""``/models``: the model inventory — owner, risk tier, intended use, versions and stage."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import StringConstraints
from sqlalchemy import select

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import (
    NO_NUL,
    Domain,
    Name,
    PathKey,
    RequestModel,
    ResponseModel,
    RiskTier,
    Text,
)
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.api.runs import evidence_response
from control_plane.evidence import evidence_pack
from control_plane.inventory.catalog import can_read, model_version, readable, register
from control_plane.runs.evidence import version_card
from control_plane.store.models import Model

router = APIRouter(prefix="/models", tags=["models"])


class ModelCreate(RequestModel):
    name: Name
    domain: Domain
    risk_tier: RiskTier
    intended_use: Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NO_NUL)]
    description: Text = ""


class ModelOut(ResponseModel):
    id: str
    name: str
    domain: str
    owner: str
    risk_tier: str
    intended_use: str
    description: str
    created_at: datetime


class ModelVersionOut(ResponseModel):
    model: str
    version: int
    stage: str
    source_run_id: str | None
    evidence: dict[str, Any]
    registry_uri: str | None
    artifact_digest: str | None
    created_at: datetime


def _model(services: ServicesDep, guard: GuardDep, name: PathKey) -> Model:
    with services.db.session() as session:
        row = session.scalars(select(Model).where(Model.name == name)).first()
        return readable(session, guard, row, f"model named {name!r}")


@router.post("", status_code=201)
def create(body: ModelCreate, services: ServicesDep, guard: GuardDep) -> ModelOut:
    row = Model(**body.model_dump(), owner=guard.caller.name, created_by=guard.caller.name)
    with services.db.session(write=True) as session:
        return ModelOut.model_validate(register(session, guard, row))


@router.get("")
def list_models(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    domain: Annotated[Domain | None, Query()] = None,
    risk_tier: Annotated[RiskTier | None, Query()] = None,
) -> Page[ModelOut]:
    statement = select(Model)
    if domain is not None:
        statement = statement.where(Model.domain == domain)
    if risk_tier is not None:
        statement = statement.where(Model.risk_tier == risk_tier)
    with services.db.session() as session:
        rows, next_cursor = fetch_page(session, statement, Model.id, limit, cursor, can_read(guard))
    return Page(items=[ModelOut.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get("/{name}")
def get(name: PathKey, services: ServicesDep, guard: GuardDep) -> ModelOut:
    return ModelOut.model_validate(_model(services, guard, name))


VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/{name}/versions/{version}")
def get_version(
    name: PathKey,
    version: VersionNumber,
    services: ServicesDep,
    guard: GuardDep,
) -> ModelVersionOut:
    model = _model(services, guard, name)
    with services.db.session() as session:
        row = model_version(session, model, version)
        return ModelVersionOut(
            model=name,
            version=row.version,
            stage=row.stage,
            source_run_id=row.source_run_id,
            evidence=row.evidence,
            registry_uri=row.registry_uri,
            artifact_digest=row.artifact_digest,
            created_at=row.created_at,
        )


@router.get(
    "/{name}/versions/{version}/evidence-pack",
    response_class=Response,
    responses={
        200: {
            "description": "The version's evidence pack (verify it with `govplane evidence "
            "verify`).",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def get_evidence_pack(
    name: PathKey, version: VersionNumber, services: ServicesDep, guard: GuardDep
) -> Response:
    """One zip of the version's evidence, audit records, inclusion proofs and checkpoint."""
    pack = evidence_pack(services, guard, name, version)
    filename = f"evidence-{name}-v{version}.zip"
    return Response(
        pack,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/{name}/versions/{version}/card",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/html": {}, "text/markdown": {}}}},
)
def get_card(
    name: PathKey,
    version: VersionNumber,
    services: ServicesDep,
    guard: GuardDep,
    card_format: Annotated[Literal["json", "html", "markdown"], Query(alias="format")] = "json",
) -> Response:
    """The model card of the version's latest evaluation, as its evaluate run kept it."""
    model = _model(services, guard, name)
    with services.db.session() as session:
        row = model_version(session, model, version)
        return evidence_response(version_card(session, row, card_format))

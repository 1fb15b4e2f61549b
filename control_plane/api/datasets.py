"""``/datasets``: governed datasets with owner, domain, classification, PII columns and budget;
uploads for ingest runs, and previews filtered per column by policy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.ipc as ipc
from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.lake import LakeError
from control_plane.api.deps import GuardDep, Services, ServicesDep
from control_plane.api.fields import (
    NO_NUL,
    Classification,
    DatasetName,
    Domain,
    Name,
    PathKey,
    RequestModel,
    ResponseModel,
    Text,
)
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.audit_trail import action_event
from control_plane.authorization import Guard
from control_plane.errors import InvalidInputError, NotFoundError, ProblemError
from control_plane.ingest.reading import column_access, filtered_read, needs_pseudonyms
from control_plane.ingest.sources import (
    ARROW_STREAM,
    SourceError,
    UnknownUploadError,
    UploadStore,
)
from control_plane.inventory.catalog import asset_of, can_read, readable, register
from control_plane.store.models import Dataset
from privacy import MissingKeyError, Pseudonymizer

router = APIRouter(prefix="/datasets", tags=["datasets"])


class Column(RequestModel):
    name: Name
    type: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]


class PrivacyBudget(RequestModel):
    epsilon: Annotated[float, Field(gt=0, le=100)]
    delta: Annotated[float, Field(ge=0, lt=1)]


class DatasetCreate(RequestModel):
    name: DatasetName
    domain: Domain
    classification: Classification
    description: Text = ""
    columns: Annotated[list[Column], Field(max_length=2000)] = []
    pii_columns: Annotated[list[Name], Field(max_length=2000)] = []
    location: Annotated[str, Field(max_length=2000, pattern=NO_NUL)] | None = None
    privacy_budget: PrivacyBudget | None = None


class DatasetOut(ResponseModel):
    id: str
    name: str
    domain: str
    owner: str
    classification: str
    description: str
    columns: list[dict[str, Any]]
    pii_columns: list[str]
    location: str | None
    privacy_budget: dict[str, float] | None
    lake_table: str | None
    snapshot_id: int | None
    row_count: int | None
    quality_report: dict[str, Any] | None
    ingested_at: datetime | None
    created_at: datetime


def _out(row: Dataset) -> DatasetOut:
    budget = (
        {"epsilon": row.epsilon_budget, "delta": row.delta_budget or 0.0}
        if row.epsilon_budget is not None
        else None
    )
    return DatasetOut(
        id=row.id,
        name=row.name,
        domain=row.domain,
        owner=row.owner,
        classification=row.classification,
        description=row.description,
        columns=row.columns,
        pii_columns=row.pii_columns,
        location=row.location,
        privacy_budget=budget,
        lake_table=row.lake_table,
        snapshot_id=row.snapshot_id,
        row_count=row.row_count,
        quality_report=row.quality_report,
        ingested_at=row.ingested_at,
        created_at=row.created_at,
    )


@router.post("", status_code=201)
def create(body: DatasetCreate, services: ServicesDep, guard: GuardDep) -> DatasetOut:
    budget = body.privacy_budget
    row = Dataset(
        **body.model_dump(exclude={"privacy_budget", "columns"}),
        columns=[column.model_dump() for column in body.columns],
        epsilon_budget=budget.epsilon if budget else None,
        delta_budget=budget.delta if budget else None,
        owner=guard.caller.name,
        created_by=guard.caller.name,
    )
    with services.db.session(write=True) as session:
        return _out(register(session, guard, row))


@router.get("")
def list_datasets(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    domain: Annotated[Domain | None, Query()] = None,
    classification: Annotated[Classification | None, Query()] = None,
) -> Page[DatasetOut]:
    statement = select(Dataset)
    if domain is not None:
        statement = statement.where(Dataset.domain == domain)
    if classification is not None:
        statement = statement.where(Dataset.classification == classification)
    with services.db.session() as session:
        rows, next_cursor = fetch_page(
            session, statement, Dataset.id, limit, cursor, can_read(guard)
        )
    return Page(items=[_out(row) for row in rows], next_cursor=next_cursor)


@router.get("/{dataset_id}")
def get(dataset_id: PathKey, services: ServicesDep, guard: GuardDep) -> DatasetOut:
    with services.db.session() as session:
        return _out(
            readable(session, guard, session.get(Dataset, dataset_id), f"dataset {dataset_id}")
        )


class UploadOut(BaseModel):
    upload_id: str
    rows: int


_ARROW_BODY = Body(
    media_type=ARROW_STREAM, description="An Arrow IPC stream: the rows of one part."
)


def _ingestable(session: Session, guard: Guard, dataset_id: str) -> Dataset:
    row = session.get(Dataset, dataset_id)
    if row is None:
        raise NotFoundError(f"no dataset {dataset_id}")
    asset = asset_of(row)
    guard.require("ingest", asset.ref, asset.domain, asset.attributes)
    return row


def _upload(
    services: Services, guard: Guard, dataset_id: str, upload_id: str | None, body: bytes
) -> UploadOut:
    with services.db.session(write=True) as session:
        row = _ingestable(session, guard, dataset_id)
        try:
            upload_id, rows = UploadStore(services.settings.uploads_dir).add_part(
                row.id, upload_id, body
            )
        except UnknownUploadError as exc:
            raise NotFoundError(str(exc)) from None
        except SourceError as exc:
            raise InvalidInputError(str(exc)) from None
        event = action_event(
            guard, "dataset.upload", f"dataset:{row.name}", {"upload_id": upload_id, "rows": rows}
        )
        services.audit.append(session, [event])
    return UploadOut(upload_id=upload_id, rows=rows)


@router.post("/{dataset_id}/uploads", status_code=201)
def start_upload(
    dataset_id: PathKey,
    body: Annotated[bytes, _ARROW_BODY],
    services: ServicesDep,
    guard: GuardDep,
) -> UploadOut:
    """Upload rows for an ingest run (``source: {"upload": ID}``); more parts may follow."""
    return _upload(services, guard, dataset_id, None, body)


@router.post("/{dataset_id}/uploads/{upload_id}", status_code=201)
def add_upload_part(
    dataset_id: PathKey,
    upload_id: PathKey,
    body: Annotated[bytes, _ARROW_BODY],
    services: ServicesDep,
    guard: GuardDep,
) -> UploadOut:
    """Add the next part (an Arrow IPC stream with the first part's schema) to an upload."""
    return _upload(services, guard, dataset_id, upload_id, body)


class SnapshotOut(BaseModel):
    snapshot_id: int
    committed_at: datetime
    operation: str
    total_records: int
    registered: bool


@router.get("/{dataset_id}/snapshots")
def snapshots(dataset_id: PathKey, services: ServicesDep, guard: GuardDep) -> list[SnapshotOut]:
    """The dataset's lake history, oldest first: every snapshot an ingest kept (a write that was
    undone is not one); ``registered`` marks the one the dataset stands at. Empty before the
    first ingest."""
    with services.db.session() as session:
        row = readable(session, guard, session.get(Dataset, dataset_id), f"dataset {dataset_id}")
        name, current = row.name, row.snapshot_id
    if current is None:
        return []
    try:
        history = services.lake.snapshots(name)
    except LakeError as exc:
        raise NotFoundError(str(exc)) from None
    return [
        SnapshotOut(
            snapshot_id=s.snapshot_id,
            committed_at=s.committed_at,
            operation=s.operation,
            total_records=s.total_records,
            registered=s.snapshot_id == current,
        )
        for s in history
    ]


class ColumnAccessOut(BaseModel):
    name: str
    classification: str
    access: str
    rule: str


class PreviewOut(BaseModel):
    dataset_id: str
    snapshot_id: int | None
    columns: list[ColumnAccessOut]
    rows: list[dict[str, Any]]


@router.get(
    "/{dataset_id}/preview",
    responses={200: {"content": {ARROW_STREAM: {}}}},
)
def preview(
    dataset_id: PathKey,
    services: ServicesDep,
    guard: GuardDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 20,
    snapshot_id: Annotated[int | None, Query(ge=0)] = None,
    format: Annotated[Literal["json", "arrow"], Query()] = "json",
) -> Any:
    """Rows of the dataset's registered snapshot (none before its first ingest), each column
    shown as policy decides for the caller: values, pseudonyms, or removed."""
    with services.db.session() as session:
        row = readable(session, guard, session.get(Dataset, dataset_id), f"dataset {dataset_id}")
        session.expunge(row)
    access = column_access(guard, row)
    pseudonymizer = None
    if needs_pseudonyms(access):
        try:
            pseudonymizer = Pseudonymizer.from_key_file(services.settings.pseudonymization_key_path)
        except MissingKeyError as exc:
            raise ProblemError(
                503, "Service Unavailable", f"pseudonyms cannot be computed: {exc}"
            ) from None
    try:
        table = (
            filtered_read(services.lake, row, access, pseudonymizer, limit, snapshot_id)
            if row.snapshot_id is not None
            else pa.table({})
        )
    except LakeError as exc:
        raise NotFoundError(str(exc)) from None
    if format == "arrow":
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM)
    return PreviewOut(
        dataset_id=row.id,
        snapshot_id=snapshot_id if snapshot_id is not None else row.snapshot_id,
        columns=[
            ColumnAccessOut(
                name=a.name, classification=a.classification, access=a.access, rule=a.rule
            )
            for a in access
        ],
        rows=table.to_pylist(),
    )

"""The executor of ``ingest`` runs: bring data into the lake, governed.

source -> schema capture -> declared types -> column classification (the declared one must not
be lower than what the bundle's rules and the PII detectors require) -> data-quality gate ->
transformations (pseudonyms, masks, generalization, suppression) -> one Iceberg snapshot ->
dataset registration and audit, in one transaction. The run's lineage follows from its
transitions. Any failure before the lake commit leaves the lake untouched; a re-ingest adds a
snapshot and keeps the history.

Run parameters::

    {"source": {"path": "adult.csv"} | {"upload": "UPLOAD_ID"},
     "columns": {"email": {"classification": "confidential", "type": "string"}},
     "mode": "append" | "overwrite"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import func, select

from connectors.lake import Lake, LakeError
from control_plane.audit_trail import AuditLog
from control_plane.bundles import stored_bundle
from control_plane.ingest.classification import (
    ColumnClassification,
    apply_transformations,
    classify_columns,
    needs_key,
    plan_transformations,
)
from control_plane.ingest.sources import (
    SourceError,
    UploadStore,
    read_source_file,
    resolve_source_path,
)
from control_plane.runs.executors import ExecutionContext
from control_plane.runs.states import RunKind
from control_plane.settings import Settings
from control_plane.store import Database, utcnow
from control_plane.store.models import Dataset, GateResultRow
from policies import GateResult, GateStatus
from policies.gates.quality import DataQualityGate
from policies.vocabulary import Classification
from privacy import MissingKeyError, Pseudonymizer

DECLARABLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.large_string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}


class IngestError(Exception):
    """The ingest was refused; the message gives every reason."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Params):
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    upload: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> Source:
        if (self.path is None) == (self.upload is None):
            raise ValueError("give exactly one of source.path or source.upload")
        return self


class ColumnDeclaration(_Params):
    classification: Classification | None = None
    type: (
        Literal["string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp"]
        | None
    ) = None


class IngestParams(_Params):
    """What an ingest run is asked to do."""

    source: Source
    columns: dict[str, ColumnDeclaration] = {}
    mode: Literal["append", "overwrite"] = "append"


class IngestExecutor:
    """Carries out ``ingest`` runs on a ``dataset:NAME`` target registered beforehand."""

    kind = RunKind.INGEST

    def __init__(self, db: Database, trail: AuditLog, settings: Settings, lake: Lake) -> None:
        self._db = db
        self._trail = trail
        self._settings = settings
        self._lake = lake
        self._uploads = UploadStore(settings.uploads_dir)

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        try:
            params = IngestParams.model_validate(dict(context.params))
        except ValidationError as exc:
            raise IngestError(f"invalid ingest params: {exc}") from None
        name = context.target.removeprefix("dataset:")
        with self._db.session() as session:
            dataset = session.scalars(select(Dataset).where(Dataset.name == name)).one()
            dataset_id, default = dataset.id, dataset.classification
            bundle = stored_bundle(session, context.bundle_version)
        source = self._read(params.source, dataset_id)
        typed = _declared_types(source, params.columns)
        declared = {c: d.classification for c, d in params.columns.items() if d.classification}
        columns = classify_columns(typed, bundle.privacy, declared, default)
        low = [c for c in columns if c.under_declared]
        if low:
            raise IngestError(
                "declared classification is lower than required for columns "
                + "; ".join(
                    f"{c.name} (declared {c.declared}, required {c.required}: "
                    f"{', '.join(c.reasons)})"
                    for c in low
                )
            )
        quality = DataQualityGate(bundle.gates.ingest.quality).evaluate_table(typed)
        self._record_gate(context.run_id, quality)
        if quality.status == GateStatus.FAIL:
            raise IngestError("data quality gate failed: " + "; ".join(quality.reasons))
        columns = plan_transformations(columns, bundle.privacy)
        stored = apply_transformations(typed, columns, self._pseudonymizer(columns))
        previous, snapshot_id = self._write(name, stored, params.mode)
        try:
            row_count = next(
                s.total_records for s in self._lake.snapshots(name) if s.snapshot_id == snapshot_id
            )
            registered = self._register(
                context, dataset_id, stored, columns, quality, snapshot_id, row_count
            )
        except Exception:
            # Unregistered data is not kept: the lake goes back to what the store knows.
            self._lake.rollback(name, previous)
            raise
        if params.source.upload is not None:
            self._uploads.discard(dataset_id, params.source.upload)
        return registered

    def _read(self, source: Source, dataset_id: str) -> pa.Table:
        try:
            if source.upload is not None:
                table = self._uploads.read(dataset_id, source.upload)
            else:
                assert source.path is not None
                path = resolve_source_path(self._settings.source_roots, source.path)
                table = read_source_file(path)
        except SourceError as exc:
            raise IngestError(str(exc)) from None
        if table.num_rows == 0 or table.num_columns == 0:
            raise IngestError("the source holds no rows")
        return table

    def _pseudonymizer(self, columns: list[ColumnClassification]) -> Pseudonymizer | None:
        if not needs_key(columns):
            return None
        try:
            return Pseudonymizer.from_key_file(self._settings.pseudonymization_key_path)
        except MissingKeyError as exc:
            pseudonymized = [c.name for c in columns if c.transformation == "pseudonymize"]
            raise IngestError(
                f"{exc}; columns {', '.join(pseudonymized)} must be pseudonymized "
                "(run `govplane init` or set GOVPLANE_PSEUDONYMIZATION_KEY_FILE)"
            ) from None

    def _write(self, name: str, table: pa.Table, mode: str) -> tuple[int | None, int]:
        """Write ``table``; returns the snapshot before (None: the table is new) and the new one."""
        created = not self._lake.exists(name)
        try:
            if created:
                self._lake.create(name, table.schema)
            else:
                _check_compatible(name, self._lake.schema(name), table.schema)
            previous = self._lake.snapshot_id(name)
            if mode == "overwrite":
                return previous, self._lake.overwrite(name, table)
            return previous, self._lake.append(name, table)
        except LakeError as exc:
            if created and self._lake.exists(name):
                self._lake.rollback(name, None)
            raise IngestError(str(exc)) from None

    def _record_gate(self, run_id: str, result: GateResult) -> None:
        with self._db.session(write=True) as session:
            position = session.scalar(
                select(func.count())
                .select_from(GateResultRow)
                .where(GateResultRow.run_id == run_id)
            )
            session.add(
                GateResultRow(
                    run_id=run_id,
                    position=position or 0,
                    gate=result.gate,
                    status=result.status,
                    metrics=dict(result.metrics),
                    evidence=dict(result.evidence),
                    reasons=list(result.reasons),
                )
            )

    def _register(
        self,
        context: ExecutionContext,
        dataset_id: str,
        stored: pa.Table,
        columns: list[ColumnClassification],
        quality: GateResult,
        snapshot_id: int,
        row_count: int,
    ) -> dict[str, Any]:
        described = {c.name: c.describe() for c in columns}
        schema = [
            {"name": field.name, "type": str(field.type), **described[field.name]}
            for field in stored.schema
        ]
        report = {"status": str(quality.status), "metrics": dict(quality.metrics)}
        with self._db.session(write=True) as session:
            dataset = session.get_one(Dataset, dataset_id)
            dataset.columns = schema
            dataset.pii_columns = [c.name for c in columns if c.pii is not None]
            dataset.lake_table = f"{self._settings.lake_namespace}.{dataset.name}"
            dataset.location = dataset.lake_table
            dataset.snapshot_id = snapshot_id
            dataset.row_count = row_count
            dataset.quality_report = report
            dataset.ingested_at = utcnow()
            outputs: dict[str, Any] = {
                "lake_table": dataset.lake_table,
                "snapshot_id": snapshot_id,
                "rows_ingested": stored.num_rows,
                "row_count": row_count,
                "columns": described,
                "quality": str(quality.status),
            }
            self._trail.append(
                session,
                [context.audit_event("dataset.ingest", outputs)],
            )
        return outputs


def _declared_types(table: pa.Table, columns: Mapping[str, ColumnDeclaration]) -> pa.Table:
    """``table`` with each declared type applied; values that do not fit fail, named."""
    unknown = sorted(set(columns) - set(table.column_names))
    if unknown:
        raise IngestError(f"declared columns are not in the source: {', '.join(unknown)}")
    problems = []
    for name, declaration in columns.items():
        if declaration.type is None:
            continue
        target = DECLARABLE_TYPES[declaration.type]
        try:
            cast = table.column(name).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problems.append(f"{name} is not {declaration.type} ({exc})")
            continue
        table = table.set_column(table.schema.get_field_index(name), name, cast)
    if problems:
        raise IngestError("wrong declared types: " + "; ".join(problems))
    return table


def _check_compatible(name: str, current: pa.Schema, new: pa.Schema) -> None:
    """A re-ingest must bring the table's columns; the lake checks their types."""
    missing = [n for n in current.names if n not in new.names]
    added = [n for n in new.names if n not in current.names]
    if missing or added:
        changes = [
            f"missing {', '.join(missing)}" if missing else "",
            f"new {', '.join(added)}" if added else "",
        ]
        raise IngestError(
            f"the schema of {name} changed incompatibly: {'; '.join(c for c in changes if c)}"
        )

"""ORM rows of the control-plane store. API schemas are separate (``control_plane.api``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from control_plane.store.db import new_id, utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


def _id() -> Mapped[str]:
    return mapped_column(String(32), primary_key=True, default=new_id)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


class Principal(Base):
    """A user or service account."""

    __tablename__ = "principals"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    oidc_subject: Mapped[str | None] = mapped_column(String(512), unique=True)
    created_at: Mapped[datetime] = _created()


class RoleAssignment(Base):
    """A principal's role in a domain (``*`` for every domain)."""

    __tablename__ = "role_assignments"
    principal_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(64), primary_key=True)


class ApiToken(Base):
    """An API token, stored only as its SHA-256 digest."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = _id()
    principal_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None]


class PolicyBundleRow(Base):
    """A policy bundle version (content hash) with its files and lifecycle status."""

    __tablename__ = "policy_bundles"
    __table_args__ = (
        # At most one active bundle, whatever writes the rows (a partial unique index).
        Index(
            "ix_policy_bundles_one_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )
    version: Mapped[str] = mapped_column(String(80), primary_key=True)
    files: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()
    activated_at: Mapped[datetime | None]


class Revision(Base):
    """A counter bumped on every change that invalidates cached authorization state."""

    __tablename__ = "revisions"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Dataset(Base):
    """A governed dataset."""

    __tablename__ = "datasets"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(256), unique=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(128))
    classification: Mapped[str] = mapped_column(String(16))
    pii_columns: Mapped[list[Any]] = mapped_column(default=list)
    columns: Mapped[list[Any]] = mapped_column(default=list)
    location: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    epsilon_budget: Mapped[float | None] = mapped_column(Float)
    delta_budget: Mapped[float | None] = mapped_column(Float)
    lake_table: Mapped[str | None] = mapped_column(String(300))
    snapshot_id: Mapped[int | None] = mapped_column(BigInteger)
    row_count: Mapped[int | None] = mapped_column(BigInteger)
    quality_report: Mapped[dict[str, Any] | None]
    ingested_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()


class Model(Base):
    """A model in the inventory."""

    __tablename__ = "models"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(256), unique=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(128))
    risk_tier: Mapped[str] = mapped_column(String(16))
    intended_use: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()


class ModelVersion(Base):
    """One version of a model: stage, evidence, and the registry version it links to."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: Mapped[str] = _id()
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(32), default="none")
    source_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    registry_uri: Mapped[str | None] = mapped_column(String(300), unique=True)
    artifact_digest: Mapped[str | None] = mapped_column(String(71))
    created_at: Mapped[datetime] = _created()


class Deployment(Base):
    """A model version served at an endpoint by a serving target (local, KServe, Seldon)."""

    __tablename__ = "deployments"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(63), unique=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    model: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(16))
    endpoint_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))
    canary_percent: Mapped[int] = mapped_column(Integer, default=100)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Site(Base):
    """A federated site: who operates it, where its data resides."""

    __tablename__ = "sites"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(128), unique=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    operator: Mapped[str] = mapped_column(String(128))
    residency: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    node_id: Mapped[str | None] = mapped_column(String(256))
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()


class SiteDataset(Base):
    """A dataset held at a site; a dataset is held by at most one site."""

    __tablename__ = "site_datasets"
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)


class SiteParticipation(Base):
    """A site operator's decision on the site's participation in one federated run."""

    __tablename__ = "site_participations"
    __table_args__ = (UniqueConstraint("site_id", "run_id"),)
    id: Mapped[str] = _id()
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime] = _created()


class Run(Base):
    """A governed run and where it stands in its state machine."""

    __tablename__ = "runs"
    id: Mapped[str] = _id()
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), index=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(300))
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plan: Mapped[list[Any]] = mapped_column(default=list)
    bundle_version: Mapped[str] = mapped_column(String(80))
    submitted_by: Mapped[str] = mapped_column(String(128))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None]


class RunTransition(Base):
    """One state change of a run; append-only."""

    __tablename__ = "run_transitions"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = _created()


class GateResultRow(Base):
    """A gate's result for a run; written once, never updated."""

    __tablename__ = "gate_results"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    gate: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()


class EvidenceArtifact(Base):
    """A document a run produced as evidence (a report, a model card), addressed by its digest.

    Written once with the run and never updated or deleted: the store refuses both.
    """

    __tablename__ = "evidence_artifacts"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(71), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()


@event.listens_for(EvidenceArtifact, "before_update")
@event.listens_for(EvidenceArtifact, "before_delete")
def _refuse_change(_mapper: Any, _connection: Any, row: EvidenceArtifact) -> None:
    raise PermissionError(f"evidence {row.name} of run {row.run_id} is immutable")


class Approval(Base):
    """An approval a run waits for, with the requirement the bundle set."""

    __tablename__ = "approvals"
    id: Mapped[str] = _id()
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), unique=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requirement: Mapped[dict[str, Any]]
    requested_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(128))
    close_reason: Mapped[str | None] = mapped_column(Text)


class ApprovalDecision(Base):
    """One principal's decision on an approval; at most one per principal, never changed."""

    __tablename__ = "approval_decisions"
    __table_args__ = (UniqueConstraint("approval_id", "approver"),)
    id: Mapped[str] = _id()
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    roles: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()


class WebhookOutbox(Base):
    """A webhook notification waiting for (or delivered to) one URL."""

    __tablename__ = "webhook_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class AuditRecord(Base):
    """One record of the audit trail: its exact leaf bytes, and copies of fields to filter on.

    ``leaf`` is what is hashed and verified; the other columns are indexes into it, checked
    against it by verification.
    """

    __tablename__ = "audit_records"
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(Text, index=True)
    action: Mapped[str] = mapped_column(Text, index=True)
    resource: Mapped[str] = mapped_column(Text, index=True)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    """The single row that every append locks: the log's size, root, last hash and frontier."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    frontier: Mapped[list[Any]]


class AuditCheckpointRow(Base):
    """A signed checkpoint of the audit trail."""

    __tablename__ = "audit_checkpoints"
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    issued_at: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditPrune(Base):
    """A pruning of the trail's oldest records, and the tree state that replaces them."""

    __tablename__ = "audit_prunes"
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    frontier: Mapped[list[Any]]
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    archive_digest: Mapped[str] = mapped_column(String(64))
    pruned_by: Mapped[str] = mapped_column(String(128))
    pruned_at: Mapped[datetime] = _created()


class LineageEvent(Base):
    """An OpenLineage RunEvent as received or emitted; one per (run, event type, event time)."""

    __tablename__ = "lineage_events"
    __table_args__ = (UniqueConstraint("run_id", "event_type", "event_time"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(16))
    event_time: Mapped[datetime]
    job_namespace: Mapped[str] = mapped_column(String(512))
    job_name: Mapped[str] = mapped_column(String(1024))
    domain: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    received_by: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = _created()


class LineageNode(Base):
    """A lineage vertex (dataset, job, model version, deployment) with its latest facets."""

    __tablename__ = "lineage_nodes"
    id: Mapped[str] = mapped_column(String(2000), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(String(64))
    facets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen: Mapped[datetime]
    updated_at: Mapped[datetime]


class LineageEdge(Base):
    """A lineage edge, first seen at the time of the earliest event that asserted it."""

    __tablename__ = "lineage_edges"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(2000), index=True)
    target: Mapped[str] = mapped_column(String(2000), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    source_field: Mapped[str] = mapped_column(String(1024), default="")
    target_field: Mapped[str] = mapped_column(String(1024), default="")
    run_id: Mapped[str] = mapped_column(String(36))
    facets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class LineageOutbox(Base):
    """An event waiting for (or delivered to) one outbound destination."""

    __tablename__ = "lineage_outbox"
    __table_args__ = (UniqueConstraint("event_id", "destination"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("lineage_events.id"))
    destination: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class PrivacyBudgetRow(Base):
    """A dataset's running privacy spend, in integer units so sums never drift.

    Epsilon is counted in nano-epsilons and delta in femto-deltas (``privacy.budget``). A
    reservation is a single conditional ``UPDATE`` of this row, so concurrent reservations on
    any number of replicas can never exceed the budget.
    """

    __tablename__ = "privacy_budgets"
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    epsilon_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    epsilon_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_reserved: Mapped[int] = mapped_column(BigInteger, default=0)


class PrivacyLedgerEntry(Base):
    """One run's reservation on one dataset's budget, and how it was settled."""

    __tablename__ = "privacy_ledger"
    __table_args__ = (UniqueConstraint("dataset_id", "run_id"),)
    id: Mapped[str] = _id()
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("privacy_budgets.dataset_id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    epsilon_reserved: Mapped[int] = mapped_column(BigInteger)
    delta_reserved: Mapped[int] = mapped_column(BigInteger)
    epsilon_spent: Mapped[int | None] = mapped_column(BigInteger)
    delta_spent: Mapped[int | None] = mapped_column(BigInteger)
    accountant: Mapped[str | None] = mapped_column(String(16))
    reserved_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()
    settled_at: Mapped[datetime | None]

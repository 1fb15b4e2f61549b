"""Build OpenLineage RunEvents for governed runs with openlineage-python's own classes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.base import DatasetFacet, InputDatasetFacet, RunFacet
from openlineage.client.generated.column_lineage_dataset import (
    ColumnLineageDatasetFacet,
    Fields,
    InputField,
)
from openlineage.client.generated.data_quality_metrics_input_dataset import (
    ColumnMetrics,
    DataQualityMetricsInputDatasetFacet,
)
from openlineage.client.generated.datasource_dataset import DatasourceDatasetFacet
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.ownership_dataset import Owner, OwnershipDatasetFacet
from openlineage.client.generated.schema_dataset import (
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from openlineage.client.serde import Serde

from lineage.facets import (
    PRODUCER,
    ApprovalRunFacet,
    ClassificationDatasetFacet,
    GateResultsRunFacet,
    PolicyRunFacet,
    PrivacyRunFacet,
)


@dataclass(frozen=True)
class ColumnSource:
    """One input column an output column is derived from."""

    namespace: str
    name: str
    field: str
    transformation: str = "IDENTITY"


@dataclass(frozen=True)
class DatasetFacts:
    """What govplane knows about a dataset (or model version, or deployment) a run touches.

    Attributes:
        namespace: OpenLineage namespace (see :mod:`lineage.nodes` for models and deployments).
        name: OpenLineage name within the namespace.
        columns: ``(name, type)`` pairs of the schema.
        owner: the owning principal.
        location: where the data lives (the data source URI).
        classification: the governance classification, with ``domain`` and ``pii_columns``.
        column_sources: output column -> the input columns it is derived from.
        quality: data-quality metrics (``rowCount`` and per-column ``nullCount``...).
    """

    namespace: str
    name: str
    columns: Sequence[tuple[str, str]] = ()
    owner: str | None = None
    location: str | None = None
    classification: str | None = None
    domain: str | None = None
    pii_columns: Sequence[str] = ()
    column_sources: Mapping[str, Sequence[ColumnSource]] = field(default_factory=dict)
    quality: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateOutcome:
    """One gate's result for the run."""

    gate: str
    status: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    reasons: Sequence[str] = ()


@dataclass(frozen=True)
class ApprovalFacts:
    """The approval the run waited for."""

    status: str
    requested_by: str
    requirement: Mapping[str, Any] = field(default_factory=dict)
    decisions: Sequence[Mapping[str, Any]] = ()
    """Each decision: ``approver``, ``decision``, ``roles``, ``at``."""
    closed_by: str | None = None
    close_reason: str | None = None


@dataclass(frozen=True)
class GovernedRunFacts:
    """One transition of a governed run, as lineage sees it.

    Attributes:
        run_id: the run's id (any UUID form).
        event_type: OpenLineage event type for this transition.
        event_time: when the transition happened (timezone-aware).
        job_namespace: the job namespace (stable per domain).
        job_name: the job name (stable per run kind and target).
        state: the run's state after the transition.
        error: why the run failed, for FAIL events.
    """

    run_id: str
    event_type: RunState
    event_time: datetime
    job_namespace: str
    job_name: str
    run_kind: str
    domain: str
    state: str
    submitted_by: str
    bundle_version: str
    inputs: Sequence[DatasetFacts] = ()
    outputs: Sequence[DatasetFacts] = ()
    classification: str | None = None
    privacy_mode: str | None = None
    epsilon_spent: float | None = None
    delta_spent: float | None = None
    gates: Sequence[GateOutcome] = ()
    approval: ApprovalFacts | None = None
    error: str | None = None


def build_run_event(facts: GovernedRunFacts) -> RunEvent:
    """The OpenLineage RunEvent of one transition, with standard and govplane facets."""
    if facts.event_time.tzinfo is None:
        raise ValueError("event_time must be timezone-aware")
    return RunEvent(
        eventType=facts.event_type,
        eventTime=facts.event_time.isoformat(),
        run=Run(runId=str(uuid.UUID(facts.run_id)), facets=_run_facets(facts)),
        job=Job(namespace=facts.job_namespace, name=facts.job_name),
        inputs=[
            InputDataset(
                namespace=d.namespace,
                name=d.name,
                facets=_dataset_facets(d),
                inputFacets=_input_facets(d),
            )
            for d in facts.inputs
        ],
        outputs=[
            OutputDataset(namespace=d.namespace, name=d.name, facets=_dataset_facets(d))
            for d in facts.outputs
        ],
        producer=PRODUCER,
    )


def event_to_dict(event: RunEvent) -> dict[str, Any]:
    """The JSON object of an event, exactly as openlineage-python serializes it."""
    return Serde.to_dict(event)


def _run_facets(facts: GovernedRunFacts) -> dict[str, RunFacet]:
    facets: dict[str, RunFacet] = {
        "govplane_policy": PolicyRunFacet(
            bundleVersion=facts.bundle_version,
            runKind=facts.run_kind,
            domain=facts.domain,
            submittedBy=facts.submitted_by,
            state=facts.state,
            producer=PRODUCER,
        ),
        "govplane_privacy": PrivacyRunFacet(
            classification=facts.classification,
            privacyMode=facts.privacy_mode,
            epsilonSpent=facts.epsilon_spent,
            deltaSpent=facts.delta_spent,
            producer=PRODUCER,
        ),
    }
    if facts.gates:
        facets["govplane_gates"] = GateResultsRunFacet(
            gates=[
                {
                    "gate": g.gate,
                    "status": g.status,
                    "metrics": dict(g.metrics),
                    "reasons": list(g.reasons),
                }
                for g in facts.gates
            ],
            producer=PRODUCER,
        )
    if facts.approval is not None:
        facets["govplane_approval"] = ApprovalRunFacet(
            status=facts.approval.status,
            requestedBy=facts.approval.requested_by,
            requirement=dict(facts.approval.requirement),
            decisions=[dict(d) for d in facts.approval.decisions],
            closedBy=facts.approval.closed_by,
            closeReason=facts.approval.close_reason,
            producer=PRODUCER,
        )
    if facts.error is not None:
        facets["errorMessage"] = ErrorMessageRunFacet(
            message=facts.error, programmingLanguage="PYTHON", producer=PRODUCER
        )
    return facets


def _dataset_facets(facts: DatasetFacts) -> dict[str, DatasetFacet]:
    facets: dict[str, DatasetFacet] = {}
    if facts.columns:
        facets["schema"] = SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in facts.columns],
            producer=PRODUCER,
        )
    if facts.owner:
        facets["ownership"] = OwnershipDatasetFacet(
            owners=[Owner(name=f"user:{facts.owner}", type="OWNER")], producer=PRODUCER
        )
    if facts.location:
        facets["dataSource"] = DatasourceDatasetFacet(
            name=facts.namespace, uri=facts.location, producer=PRODUCER
        )
    if facts.classification:
        facets["govplane_classification"] = ClassificationDatasetFacet(
            classification=facts.classification,
            domain=facts.domain or "",
            piiColumns=list(facts.pii_columns),
            producer=PRODUCER,
        )
    if facts.column_sources:
        facets["columnLineage"] = ColumnLineageDatasetFacet(
            fields={
                column: Fields(
                    inputFields=[
                        InputField(namespace=s.namespace, name=s.name, field=s.field)
                        for s in sources
                    ],
                    transformationType=sources[0].transformation if sources else None,
                )
                for column, sources in facts.column_sources.items()
            },
            producer=PRODUCER,
        )
    return facets


def _input_facets(facts: DatasetFacts) -> dict[str, InputDatasetFacet]:
    if not facts.quality:
        return {}
    columns = facts.quality.get("columnMetrics", {})
    return {
        "dataQualityMetrics": DataQualityMetricsInputDatasetFacet(
            rowCount=facts.quality.get("rowCount"),
            columnMetrics={
                name: ColumnMetrics(
                    nullCount=metrics.get("nullCount"), distinctCount=metrics.get("distinctCount")
                )
                for name, metrics in columns.items()
            },
            producer=PRODUCER,
        )
    }

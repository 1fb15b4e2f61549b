"""Lineage of governed runs: each transition becomes an OpenLineage RunEvent in the store.

The recorder runs inside the transition's transaction (see :mod:`control_plane.runs.recording`),
so a run's state and its lineage commit together; a run whose lineage cannot be written does not
move. Transitions map to event types: claimed -> START, resumed after approval -> RUNNING,
waiting for approval -> OTHER, succeeded -> COMPLETE, failed or rejected -> FAIL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openlineage.client.event_v2 import RunState as EventType
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.lineage.store import LineageStore
from control_plane.runs.states import RunKind, RunState
from control_plane.store.models import (
    Approval,
    ApprovalDecision,
    Dataset,
    GateResultRow,
    Model,
    Run,
    RunTransition,
)
from lineage import (
    DATASET_NAMESPACE,
    DEPLOYMENT_NAMESPACE,
    MODEL_NAMESPACE,
    ApprovalFacts,
    DatasetFacts,
    GateOutcome,
    GovernedRunFacts,
    build_run_event,
    event_to_dict,
    model_dataset_name,
    validate_run_event,
)

RECORDED_BY = "govplane"
# Kinds whose target is what the run produces; for the others the target is read.
_PRODUCING = frozenset({RunKind.INGEST, RunKind.TRAIN, RunKind.FEDERATED_TRAIN})
_ENDING = frozenset({EventType.COMPLETE, EventType.FAIL})


def job_namespace(domain: str) -> str:
    """The OpenLineage job namespace of a domain's governed runs."""
    return f"govplane.{domain}"


def job_name(kind: str, target: str) -> str:
    """The stable OpenLineage job name of a run kind on a target (``train.model.credit``)."""
    return f"{kind}.{target.replace(':', '.')}"


def _event_type(transition: RunTransition) -> EventType | None:
    if transition.to_state == RunState.RUNNING:
        return EventType.START if transition.from_state == RunState.PENDING else EventType.RUNNING
    return {
        RunState.AWAITING_APPROVAL: EventType.OTHER,
        RunState.SUCCEEDED: EventType.COMPLETE,
        RunState.FAILED: EventType.FAIL,
        RunState.REJECTED: EventType.FAIL,
    }.get(RunState(transition.to_state))


class LineageRecorder:
    """A :class:`control_plane.runs.TransitionRecorder` that writes each run's lineage."""

    def __init__(self, store: LineageStore) -> None:
        self._store = store

    def record(self, session: Session, run: Run, transition: RunTransition) -> None:
        event_type = _event_type(transition)
        if event_type is None:
            return
        error = None
        if event_type == EventType.FAIL:
            error = run.error or f"run {transition.to_state}: {transition.reason}"
        facts = _facts(session, run, event_type, transition.at, transition.to_state, error)
        self._write(session, facts)

    def record_outputs(self, session: Session, run: Run, at: datetime) -> None:
        """An ``OTHER`` event at ``at`` naming what ``run`` produced after it ended (the
        version its Kubeflow pipeline reported), with the run's inputs."""
        self._write(session, _facts(session, run, EventType.OTHER, at, run.state, None))

    def _write(self, session: Session, facts: GovernedRunFacts) -> None:
        payload = event_to_dict(build_run_event(facts))
        self._store.ingest(session, validate_run_event(payload), payload, facts.domain, RECORDED_BY)


def _facts(
    session: Session,
    run: Run,
    event_type: EventType,
    at: datetime,
    state: str,
    error: str | None,
) -> GovernedRunFacts:
    target = _asset(session, run.target, run.params.get("version"))
    # A federated run learns which sites take part only as it runs (sites its policy excludes,
    # sites lost before contributing): it names its inputs when it ends, and then only those
    # whose site contributed an update, failed or not; a run refused before training, none.
    if run.kind == RunKind.FEDERATED_TRAIN:
        used = run.outputs.get("inputs_used", []) if event_type in _ENDING else []
    else:
        used = run.outputs.get("inputs_used", run.inputs)
    inputs = [_asset(session, ref, None) for ref in used]
    outputs = []
    if RunKind(run.kind) in _PRODUCING:
        version = run.outputs.get("model_version")
        if run.target.startswith("dataset:"):
            outputs.append(target)
        elif version is not None:
            outputs.append(_asset(session, run.target, version))
    elif target is not None:
        inputs.append(target)
    if "deployment" in run.outputs:
        outputs.append(DatasetFacts(DEPLOYMENT_NAMESPACE, str(run.outputs["deployment"])))
    gates = session.scalars(
        select(GateResultRow).where(GateResultRow.run_id == run.id).order_by(GateResultRow.position)
    )
    approval = session.scalars(select(Approval).where(Approval.run_id == run.id)).first()
    return GovernedRunFacts(
        run_id=run.id,
        event_type=event_type,
        event_time=at,
        job_namespace=job_namespace(run.domain),
        job_name=job_name(run.kind, run.target),
        run_kind=run.kind,
        domain=run.domain,
        state=state,
        submitted_by=run.submitted_by,
        bundle_version=run.bundle_version,
        inputs=[asset for asset in inputs if asset is not None],
        outputs=[asset for asset in outputs if asset is not None],
        classification=run.attributes.get("classification"),
        privacy_mode=run.attributes.get("privacy_mode") or run.outputs.get("privacy_mode"),
        epsilon_spent=_number(run.outputs.get("epsilon_spent")),
        delta_spent=_number(run.outputs.get("delta_spent")),
        gates=[GateOutcome(g.gate, g.status, dict(g.metrics), list(g.reasons)) for g in gates],
        approval=_approval(session, approval) if approval is not None else None,
        error=error,
    )


def _approval(session: Session, approval: Approval) -> ApprovalFacts:
    decisions = session.scalars(
        select(ApprovalDecision)
        .where(ApprovalDecision.approval_id == approval.id)
        .order_by(ApprovalDecision.created_at, ApprovalDecision.id)
    )
    return ApprovalFacts(
        approval.status,
        approval.requested_by,
        dict(approval.requirement),
        [
            {
                "approver": d.approver,
                "decision": d.decision,
                "roles": list(d.roles),
                "at": d.created_at.isoformat(),
            }
            for d in decisions
        ],
        approval.closed_by,
        approval.close_reason,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _asset(session: Session, ref: str, version: Any) -> DatasetFacts | None:
    """The lineage facts of a ``dataset:NAME`` or ``model:NAME`` reference; None otherwise."""
    kind, _, name = ref.partition(":")
    if kind == "dataset":
        row = session.scalars(select(Dataset).where(Dataset.name == name)).first()
        if row is None:
            return DatasetFacts(DATASET_NAMESPACE, name)
        return DatasetFacts(
            DATASET_NAMESPACE,
            name,
            columns=[(c["name"], c["type"]) for c in row.columns],
            owner=row.owner,
            location=row.location,
            classification=row.classification,
            domain=row.domain,
            pii_columns=list(row.pii_columns),
        )
    if kind == "model":
        model = session.scalars(select(Model).where(Model.name == name)).first()
        return DatasetFacts(
            MODEL_NAMESPACE,
            model_dataset_name(name, version) if version is not None else name,
            owner=model.owner if model is not None else None,
        )
    return None

"""The metrics maturity criteria name, each computed from what the store holds.

A metric is a count or a share with the evidence behind it in words. A share over nothing, or a
metric whose source this store does not hold, has no value: its criterion is not met, and the
measurement says why. Nothing here is declared; every figure is a query.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.events import decode_leaf
from connectors.serving import EndpointStatus
from control_plane.privacy_ledger import budget_for
from control_plane.runs import RunKind, RunState
from control_plane.store import utcnow
from control_plane.store.models import (
    Approval,
    AuditRecord,
    Dataset,
    Deployment,
    GateResultRow,
    LineageEvent,
    Model,
    ModelVersion,
    PrivacyBudgetRow,
    Run,
    Site,
)
from policies import PolicyBundle
from privacy.budget import delta_of, epsilon_of

AUDIT_VERIFY = "audit.verify"
MONITORING_DAYS = 30
"""How recent a deployment's last drift check must be for it to count as monitored."""
_FINISHED = (RunState.SUCCEEDED, RunState.FAILED, RunState.REJECTED)
_SERVING = (EndpointStatus.READY, EndpointStatus.APPLIED)


@dataclass(frozen=True)
class Measurement:
    """A metric's value (None when it cannot be measured) and the evidence behind it."""

    value: float | None
    evidence: str


Metric = Callable[[Session, PolicyBundle], Measurement]


def _count(value: int, what: str) -> Measurement:
    return Measurement(float(value), f"{value} {what}")


def _share(part: int, whole: int, what: str, of: str) -> Measurement:
    if whole == 0:
        return Measurement(None, f"no {of} to measure yet")
    return Measurement(part / whole, f"{part} of {whole} {of} {what}")


def _scalar(session: Session, statement: Any) -> int:
    return int(session.scalar(statement) or 0)


def _models_with(session: Session, key: str, inner: str | None = None) -> int:
    """How many models have a version whose evidence holds ``key`` (and ``key.inner``)."""
    found: set[str] = set()
    for model_id, evidence in session.execute(select(ModelVersion.model_id, ModelVersion.evidence)):
        fact = evidence.get(key) if isinstance(evidence, dict) else None
        if isinstance(fact, dict) and (inner is None or fact.get(inner)):
            found.add(model_id)
    return len(found)


def datasets_registered(session: Session, bundle: PolicyBundle) -> Measurement:
    return _count(_scalar(session, select(func.count(Dataset.id))), "datasets registered")


def models_registered(session: Session, bundle: PolicyBundle) -> Measurement:
    return _count(_scalar(session, select(func.count(Model.id))), "models registered")


def governed_runs_succeeded(session: Session, bundle: PolicyBundle) -> Measurement:
    succeeded = select(func.count(Run.id)).where(Run.state == RunState.SUCCEEDED)
    return _count(_scalar(session, succeeded), "governed runs succeeded")


def share_of_models_with_risk_tier(session: Session, bundle: PolicyBundle) -> Measurement:
    models = _scalar(session, select(func.count(Model.id)))
    tiered = _scalar(session, select(func.count(Model.id)).where(Model.risk_tier != ""))
    return _share(tiered, models, "have a risk tier", "models")


def share_of_models_evaluated(session: Session, bundle: PolicyBundle) -> Measurement:
    models = _scalar(session, select(func.count(Model.id)))
    return _share(
        _models_with(session, "evaluation"), models, "have an evaluated version", "models"
    )


def share_of_models_with_model_card(session: Session, bundle: PolicyBundle) -> Measurement:
    models = _scalar(session, select(func.count(Model.id)))
    carded = _models_with(session, "evaluation", "model_card")
    return _share(carded, models, "have a version with a model card", "models")


def _approved_runs(session: Session, kind: RunKind) -> tuple[int, int]:
    """Succeeded runs of ``kind``, and how many of them an approved approval let through."""
    succeeded = (Run.kind == kind, Run.state == RunState.SUCCEEDED)
    total = _scalar(session, select(func.count(Run.id)).where(*succeeded))
    approved = _scalar(
        session,
        select(func.count(Run.id))
        .join(Approval, Approval.run_id == Run.id)
        .where(*succeeded, Approval.status == "approved"),
    )
    return approved, total


def share_of_promotions_approved(session: Session, bundle: PolicyBundle) -> Measurement:
    approved, total = _approved_runs(session, RunKind.PROMOTE)
    return _share(approved, total, "went through an approved approval", "completed promotions")


def policy_changes_approved(session: Session, bundle: PolicyBundle) -> Measurement:
    approved, _ = _approved_runs(session, RunKind.POLICY_CHANGE)
    return _count(approved, "policy changes activated through an approved approval")


def share_of_runs_with_lineage(session: Session, bundle: PolicyBundle) -> Measurement:
    finished = list(session.scalars(select(Run.id).where(Run.state.in_(_FINISHED))))
    # Governed runs are recorded under their id as a UUID; a final event is COMPLETE or FAIL.
    recorded = set(
        session.scalars(
            select(LineageEvent.run_id)
            .where(LineageEvent.event_type.in_(("COMPLETE", "FAIL")))
            .distinct()
        )
    )
    with_lineage = sum(1 for run_id in finished if str(uuid.UUID(run_id)) in recorded)
    return _share(with_lineage, len(finished), "have a final lineage event", "finished runs")


def models_deployed(session: Session, bundle: PolicyBundle) -> Measurement:
    deployed = select(func.count(func.distinct(Run.target))).where(
        Run.kind == RunKind.DEPLOY, Run.state == RunState.SUCCEEDED
    )
    return _count(_scalar(session, deployed), "models deployed by a succeeded governed deploy run")


def share_of_deployments_monitored(session: Session, bundle: PolicyBundle) -> Measurement:
    """Serving deployments whose model version had a drift check (an ``evaluate`` run that
    judged it with the drift gate, pass or fail) since it was deployed and within the last
    :data:`MONITORING_DAYS` days."""
    serving = session.execute(
        select(Deployment.model, Deployment.version, Deployment.updated_at).where(
            Deployment.status.in_(_SERVING)
        )
    ).all()
    since = utcnow() - timedelta(days=MONITORING_DAYS)
    checks = session.execute(
        select(Run.target, Run.params, Run.outputs, Run.finished_at)
        .join(GateResultRow, GateResultRow.run_id == Run.id)
        .where(
            Run.kind == RunKind.EVALUATE,
            Run.state.in_(_FINISHED),
            Run.finished_at >= since,
            GateResultRow.gate == "drift",
        )
    ).all()
    latest: dict[tuple[str, object], datetime] = {}
    for target, params, outputs, finished_at in checks:
        key = (target, outputs.get("model_version", params.get("version")))
        latest[key] = max(latest.get(key, finished_at), finished_at)
    monitored = sum(
        1
        for model, version, deployed_at in serving
        if (checked := latest.get((f"model:{model}", version))) is not None
        and checked >= deployed_at
    )
    return _share(
        monitored,
        len(serving),
        f"had a drift check of their version since deployed, in the last {MONITORING_DAYS} days",
        "serving deployments",
    )


def federated_sites_active(session: Session, bundle: PolicyBundle) -> Measurement:
    sites = _scalar(session, select(func.count(Site.id)))
    active = _scalar(session, select(func.count(Site.id)).where(Site.node_id.is_not(None)))
    return _count(active, f"of {sites} registered federated sites have a Flower node")


def share_of_runs_fully_gated(session: Session, bundle: PolicyBundle) -> Measurement:
    runs = list(session.execute(select(Run.id, Run.plan).where(Run.state == RunState.SUCCEEDED)))
    passed: dict[str, set[str]] = {}
    for run_id, gate in session.execute(
        select(GateResultRow.run_id, GateResultRow.gate)
        .join(Run, Run.id == GateResultRow.run_id)
        .where(Run.state == RunState.SUCCEEDED, GateResultRow.status == "pass")
    ):
        passed.setdefault(run_id, set()).add(gate)
    gated = sum(
        1
        for run_id, plan in runs
        if plan and {entry["gate"] for entry in plan} <= passed.get(run_id, set())
    )
    return _share(gated, len(runs), "had gates planned and passed every one", "succeeded runs")


def overdue_approvals(session: Session, bundle: PolicyBundle) -> Measurement:
    overdue = select(func.count(Approval.id)).where(
        Approval.status == "pending", Approval.expires_at < utcnow()
    )
    return _count(_scalar(session, overdue), "pending approvals past their expiry")


def share_of_datasets_classified(session: Session, bundle: PolicyBundle) -> Measurement:
    datasets = _scalar(session, select(func.count(Dataset.id)))
    classified = _scalar(
        session, select(func.count(Dataset.id)).where(Dataset.classification != "")
    )
    return _share(classified, datasets, "are classified", "datasets")


def share_of_datasets_with_owner(session: Session, bundle: PolicyBundle) -> Measurement:
    datasets = _scalar(session, select(func.count(Dataset.id)))
    owned = _scalar(session, select(func.count(Dataset.id)).where(Dataset.owner != ""))
    return _share(owned, datasets, "have an owner", "datasets")


def _protected(columns: Iterable[Mapping[str, Any]], pii: Iterable[str]) -> tuple[int, int]:
    transformed = {c.get("name") for c in columns if c.get("transformation")}
    names = list(pii)
    return sum(1 for name in names if name in transformed), len(names)


def share_of_pii_columns_protected(session: Session, bundle: PolicyBundle) -> Measurement:
    protected = total = 0
    for columns, pii in session.execute(select(Dataset.columns, Dataset.pii_columns)):
        done, found = _protected(columns, pii)
        protected, total = protected + done, total + found
    return _share(
        protected, total, "are pseudonymized, masked, suppressed or generalized", "PII columns"
    )


def _sensitive(bundle: PolicyBundle, classification: str) -> bool:
    """Data whose classification forbids plain (non-private) training."""
    rule = bundle.privacy.classifications.get(classification)  # type: ignore[call-overload]
    return rule is None or "plain" not in rule.modes


def share_of_sensitive_datasets_with_budget(session: Session, bundle: PolicyBundle) -> Measurement:
    rows = session.execute(
        select(Dataset.classification, PrivacyBudgetRow.dataset_id).outerjoin(
            PrivacyBudgetRow, PrivacyBudgetRow.dataset_id == Dataset.id
        )
    )
    sensitive = [ledger for classification, ledger in rows if _sensitive(bundle, classification)]
    tracked = sum(1 for ledger in sensitive if ledger is not None)
    return _share(
        tracked,
        len(sensitive),
        "have their privacy spend tracked in the ledger",
        "datasets whose classification forbids plain training",
    )


def audit_verifications_passed(session: Session, bundle: PolicyBundle) -> Measurement:
    leaves = session.scalars(select(AuditRecord.leaf).where(AuditRecord.action == AUDIT_VERIFY))
    passed = sum(1 for leaf in leaves if decode_leaf(bytes(leaf))[1].decision == "ok")
    return _count(passed, "recorded verifications of the audit trail passed")


def privacy_budget_overruns(session: Session, bundle: PolicyBundle) -> Measurement:
    overruns = 0
    for dataset, spent in session.execute(
        select(Dataset, PrivacyBudgetRow).join(
            PrivacyBudgetRow, PrivacyBudgetRow.dataset_id == Dataset.id
        )
    ):
        # A classification without dp allows no spend at all.
        budget = budget_for(bundle, dataset)
        allowed = (budget.epsilon, budget.delta) if budget is not None else (0.0, 0.0)
        used = (epsilon_of(spent.epsilon_spent), delta_of(spent.delta_spent))
        overruns += any(u > a for u, a in zip(used, allowed, strict=True))
    return _count(overruns, "datasets spent more privacy budget than privacy.yaml allows")


METRICS: Mapping[str, Metric] = {
    metric.__name__: metric
    for metric in (
        datasets_registered,
        models_registered,
        governed_runs_succeeded,
        share_of_models_with_risk_tier,
        share_of_models_evaluated,
        share_of_models_with_model_card,
        share_of_promotions_approved,
        policy_changes_approved,
        share_of_runs_with_lineage,
        models_deployed,
        share_of_deployments_monitored,
        federated_sites_active,
        share_of_runs_fully_gated,
        overdue_approvals,
        share_of_datasets_classified,
        share_of_datasets_with_owner,
        share_of_pii_columns_protected,
        share_of_sensitive_datasets_with_budget,
        audit_verifications_passed,
        privacy_budget_overruns,
    )
}

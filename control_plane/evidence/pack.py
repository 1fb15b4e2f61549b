"""The evidence pack of a model version: what it is, how it was judged and the proof of it.

One zip (``audit.write_pack``) with the model and version facts, the runs that acted on the
version with each gate's result and evidence, their approvals, the lineage around the version,
the model card (with its approvals once promoted), and the audit records of those runs and of
the model with their inclusion proofs in a freshly signed checkpoint. Reading it needs ``read``
on the model and on the audit trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from audit import write_pack
from control_plane.api.deps import Services
from control_plane.api.lineage import visible_graph
from control_plane.authorization import Guard
from control_plane.errors import NotFoundError
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.inventory.catalog import model_version, readable
from control_plane.inventory.model_card import CARD_FILES
from control_plane.runs.evidence import version_card
from control_plane.store.models import (
    Approval,
    AuditRecord,
    GateResultRow,
    Model,
    ModelVersion,
    Run,
)
from lineage import Direction

MAX_RECORDS = 10_000


def _runs_on(session: Session, model: Model, version: ModelVersion) -> list[Run]:
    """Runs that acted on the version (its ``version`` param) or produced it."""
    runs = session.scalars(
        select(Run).where(Run.target == f"model:{model.name}").order_by(Run.created_at)
    )
    return [
        run
        for run in runs
        if run.params.get("version") == version.version or run.id == version.source_run_id
    ]


def _run_facts(run: Run, gates: Sequence[GateResultRow]) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "state": run.state,
        "target": run.target,
        "inputs": run.inputs,
        "params": run.params,
        "plan": run.plan,
        "bundle_version": run.bundle_version,
        "submitted_by": run.submitted_by,
        "outputs": run.outputs,
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "gates": [
            {
                "position": g.position,
                "gate": g.gate,
                "status": g.status,
                "metrics": g.metrics,
                "evidence": g.evidence,
                "reasons": g.reasons,
            }
            for g in gates
        ],
    }


def _model_card(session: Session, version: ModelVersion) -> dict[str, bytes]:
    """The version's model card in every format, by file name (none before an evaluation)."""
    if "evaluation" not in version.evidence:
        return {}
    return {
        f"model_card/{name}": version_card(session, version, fmt).content
        for fmt, name in CARD_FILES.items()
    }


def _lineage(services: Services, guard: Guard, node: str) -> dict[str, Any]:
    try:
        found, visible = visible_graph(services, guard, node, Direction.BOTH, 3, None)
    except NotFoundError:
        return {"root": node, "nodes": [], "edges": [], "note": "no lineage recorded"}
    return {
        "root": node,
        "nodes": [
            {"id": n.ref.id, "type": str(n.ref.type), "facets": dict(n.facets)}
            for n in found.nodes
            if n.ref.id in visible
        ],
        "edges": [
            {"source": e.source, "target": e.target, "kind": str(e.kind), "run_id": e.run_id}
            for e in found.edges
            if e.source in visible and e.target in visible
        ],
        "hidden": len(found.nodes) - len(visible),
    }


def evidence_pack(services: Services, guard: Guard, name: str, version: int) -> bytes:
    """The zip of ``model:NAME`` version ``version``'s evidence (404 / 403 as the API)."""
    with services.db.session() as session:
        model = session.scalars(select(Model).where(Model.name == name)).first()
        model = readable(session, guard, model, f"model named {name!r}")
        guard.require("read", "audit:*", PLATFORM_DOMAIN)
        row = model_version(session, model, version)
        runs = _runs_on(session, model, row)
        run_ids = [run.id for run in runs]
        gates: dict[str, list[GateResultRow]] = {run_id: [] for run_id in run_ids}
        for gate in session.scalars(
            select(GateResultRow)
            .where(GateResultRow.run_id.in_(run_ids))
            .order_by(GateResultRow.position)
        ):
            gates[gate.run_id].append(gate)
        approvals = session.scalars(select(Approval).where(Approval.run_id.in_(run_ids)))
        files: dict[str, Any] = {
            "model.json": {
                "name": model.name,
                "domain": model.domain,
                "owner": model.owner,
                "risk_tier": model.risk_tier,
                "intended_use": model.intended_use,
            },
            "version.json": {
                "version": row.version,
                "stage": row.stage,
                "source_run_id": row.source_run_id,
                "evidence": row.evidence,
                "registry_uri": row.registry_uri,
                "artifact_digest": row.artifact_digest,
                "created_at": row.created_at,
            },
            "runs.json": [_run_facts(run, gates[run.id]) for run in runs],
            "approvals.json": [
                {
                    "id": a.id,
                    "run_id": a.run_id,
                    "status": a.status,
                    "requirement": a.requirement,
                    "requested_by": a.requested_by,
                    "created_at": a.created_at,
                    "expires_at": a.expires_at,
                }
                for a in approvals
            ],
            **_model_card(session, row),
        }
    files["lineage.json"] = _lineage(services, guard, f"model:{name}:{version}")
    checkpoint = services.audit.checkpoint(fresh=True)
    sequences = _related_records(services, name, run_ids, checkpoint.size)
    records = [
        {
            "leaf_index": proof["leaf_index"],
            "leaf": proof["leaf"],
            "audit_path": proof["audit_path"],
        }
        for proof in (services.audit.inclusion_proof(s, checkpoint.size) for s in sequences)
    ]
    return write_pack(f"model:{name}:{version}", files, checkpoint, records)


def _related_records(services: Services, name: str, run_ids: list[str], size: int) -> list[int]:
    """The latest records (at most :data:`MAX_RECORDS`) of the runs and of the model."""
    with services.db.session() as session:
        found = session.scalars(
            select(AuditRecord.sequence)
            .where(
                AuditRecord.sequence < size,
                or_(AuditRecord.run_id.in_(run_ids), AuditRecord.resource == f"model:{name}"),
            )
            .order_by(AuditRecord.sequence.desc())
            .limit(MAX_RECORDS)
        )
        return sorted(found)

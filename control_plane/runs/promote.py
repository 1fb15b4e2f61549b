"""The ``promote`` executor: release a cleared model version to a stage, signed and audited.

By the time it runs, the ``promotion_evidence`` gate and (where the bundle asks) the approval
have cleared the run. It checks again what it acts on: the version's evidence, the approval,
and the artifact, whose digest it recomputes from the registry. It then signs the release
statement with the release key, moves the registry's stage alias (the registry refuses an
unsigned release), archives the version that held the stage, and records the promotion on the
version with its audit record in one transaction. The promotion keeps the version's model card
again with the approval's decisions added, and the version's card is that one from then on.

A rollback is a promote run of an earlier version with ``"rollback": true``: the same gates and
checks, plus the requirement that the version is older than the one holding the stage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import select

from audit import CheckpointSigner
from connectors.registry import ModelRegistry, ModelUri, Release
from control_plane.audit_trail import AuditLog
from control_plane.errors import ProblemError
from control_plane.inventory.model_card import CARD_FILES, render_card, with_approvals
from control_plane.inventory.model_card import Approval as CardApproval
from control_plane.inventory.releases import sign_release
from control_plane.inventory.versions import find_version
from control_plane.runs.evidence import keep_artifact, version_card
from control_plane.runs.executors import ExecutionContext
from control_plane.runs.refusal import refuse
from control_plane.runs.states import RunKind
from control_plane.store import Database, utcnow
from control_plane.store.models import Approval, ApprovalDecision, ModelVersion

STAGES = ("staging", "production")
_ACTION = "model.promote"


def missing_evidence(evidence: Mapping[str, Any]) -> list[str]:
    """What a version lacks to be promoted: a passed evaluation and its model card."""
    evaluation = evidence.get("evaluation") or {}
    missing = []
    if evaluation.get("status") != "passed":
        missing.append(f"a passed evaluation (latest: {evaluation.get('status') or 'none'})")
    if not evaluation.get("model_card"):
        missing.append("a model card")
    return missing


@dataclass(frozen=True)
class _ApprovedCard:
    """A promoted version's model card, rendered, and the evaluation it was made from."""

    evaluation_run_id: str
    documents: dict[str, str]

    def facts(self, digests: Mapping[str, str]) -> dict[str, Any]:
        """The promotion facts naming the card, given the digests it was kept under."""
        return {
            "model_card": {fmt: digests[name] for fmt, name in CARD_FILES.items()},
            "evaluation_run_id": self.evaluation_run_id,
        }


class PromoteExecutor:
    """Carries out ``promote`` runs against the model registry."""

    kind = RunKind.PROMOTE

    def __init__(
        self, db: Database, trail: AuditLog, registry: ModelRegistry, signer: CheckpointSigner
    ) -> None:
        self._db = db
        self._trail = trail
        self._registry = registry
        self._signer = signer

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        stage = context.params.get("target_stage")
        rollback = context.params.get("rollback", False)
        payload: dict[str, Any] = {
            "version": context.params.get("version"),
            "stage": stage,
            "rollback": rollback,
        }
        if stage not in STAGES or not isinstance(rollback, bool):
            self._refuse(
                context,
                f"params.target_stage must be one of {', '.join(STAGES)} and params.rollback "
                "a boolean",
                payload,
            )
        with self._db.session() as session:
            row = find_version(session, context.target, context.params.get("version"))
            holder = session.scalars(
                select(ModelVersion.version).where(
                    ModelVersion.model_id == row.model_id, ModelVersion.stage == stage
                )
            ).first()
            approval = session.scalars(
                select(Approval).where(Approval.run_id == context.run_id)
            ).first()
            version_id, version, recorded = row.id, row.version, row.artifact_digest
            registry_uri, evidence = row.registry_uri, dict(row.evidence)
            approval_id = None if approval is None else approval.id
            approval_status = None if approval is None else approval.status
        missing = missing_evidence(evidence)
        if missing:
            self._refuse(context, f"version {version} lacks {'; '.join(missing)}", payload)
        if approval_status not in (None, "approved"):
            self._refuse(context, f"approval {approval_id} is {approval_status}", payload)
        if holder == version:
            self._refuse(context, f"version {version} already holds {stage}", payload)
        if rollback and (holder is None or holder < version):
            self._refuse(
                context,
                f"a rollback goes back to a version older than the one holding {stage} "
                f"({holder or 'none'})",
                payload,
            )
        if registry_uri is None or recorded is None:
            self._refuse(context, f"version {version} has no registered artifact", payload)
        uri = ModelUri.parse(registry_uri)
        actual = self._registry.current_digest(uri)
        if actual != recorded:
            self._refuse(
                context,
                f"artifact digest {actual} of {uri} is not the recorded {recorded}",
                payload,
            )
        card = self._approved_card(context, version_id, stage, approval_id, payload)
        signed = sign_release(
            self._signer,
            Release(
                model=uri.name,
                version=version,
                registry_uri=str(uri),
                artifact_digest=recorded,
                stage=stage,
                approval_id=approval_id,
                run_id=context.run_id,
            ),
        )
        model = context.target.removeprefix("model:")
        self._registry.release(signed, f"/api/v1/models/{model}/versions/{version}")
        payload.update(artifact_digest=recorded, approval_id=approval_id)
        archived = self._record(context, version_id, stage, signed.to_json(), card, payload)
        return {"model_version": version, "stage": stage, "archived_version": archived}

    def _record(
        self,
        context: ExecutionContext,
        version_id: str,
        stage: str,
        signature: dict[str, Any],
        card: _ApprovedCard,
        payload: dict[str, Any],
    ) -> int | None:
        """Set the version's stage and promotion facts, archive the previous holder, and audit
        it, in one transaction."""
        now = utcnow().isoformat()
        with self._db.session(write=True) as session:
            row = session.get_one(ModelVersion, version_id)
            previous = session.scalars(
                select(ModelVersion).where(
                    ModelVersion.model_id == row.model_id,
                    ModelVersion.stage == stage,
                    ModelVersion.id != row.id,
                )
            ).all()
            for old in previous:
                old.stage = "archived"
                old.evidence = {
                    **old.evidence,
                    "archived": {"run_id": context.run_id, "replaced_by": row.version, "at": now},
                }
            kept = {
                name: keep_artifact(session, context.run_id, name, text).digest
                for name, text in card.documents.items()
            }
            row.stage = stage
            row.evidence = {
                **row.evidence,
                "promotion": {
                    "stage": stage,
                    "approval_id": payload["approval_id"],
                    "run_id": context.run_id,
                    "completed_at": now,
                    "signature": signature,
                    **card.facts(kept),
                },
            }
            archived = previous[0].version if previous else None
            event = context.audit_event(_ACTION, {**payload, "archived_version": archived})
            self._trail.append(session, [event])
            return archived

    def _approved_card(
        self,
        context: ExecutionContext,
        version_id: str,
        stage: str,
        approval_id: str | None,
        payload: dict[str, Any],
    ) -> _ApprovedCard:
        """The version's model card with the approval's decisions added (read before anything
        is released, so a card that cannot be read refuses the promotion)."""
        with self._db.session() as session:
            row = session.get_one(ModelVersion, version_id)
            try:
                card = json.loads(version_card(session, row, "json").content)
            except ProblemError as exc:
                self._refuse(context, exc.detail, payload)
            decisions = session.scalars(
                select(ApprovalDecision)
                .where(ApprovalDecision.approval_id == approval_id)
                .order_by(ApprovalDecision.created_at)
            )
            approvals = [
                CardApproval(d.approver, d.decision, d.created_at.isoformat(), stage, d.comment)
                for d in decisions
            ]
            return _ApprovedCard(
                row.evidence["evaluation"]["run_id"], render_card(with_approvals(card, approvals))
            )

    def _refuse(self, context: ExecutionContext, reason: str, payload: dict[str, Any]) -> NoReturn:
        refuse(self._db, self._trail, context, _ACTION, reason, payload)

"""Model versions in the inventory, each linked to the registry version that holds its artifact."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditEvent
from connectors.registry import ModelUri
from control_plane.audit_trail import AuditLog
from control_plane.errors import ConflictError, InvalidInputError, NotFoundError
from control_plane.store.models import Model, ModelVersion

_DIGEST_LENGTH = len("sha256:") + 64


def record_model_version(
    session: Session,
    trail: AuditLog,
    model_name: str,
    registry_uri: str,
    artifact_digest: str,
    run_id: str,
    actor: str,
) -> ModelVersion:
    """Add the next version of ``model_name``, linked to a registered artifact, and audit it.

    Runs inside the caller's write transaction: if the audit record cannot be written, the
    version is not added either.

    Raises:
        NotFoundError: no such model.
        InvalidInputError: the registry URI or the digest is malformed, or the URI names
            another model.
        ConflictError: another inventory version already links to that registry version.
    """
    uri = _registry_uri(registry_uri)
    if uri.name != model_name:
        raise InvalidInputError(f"{registry_uri} is not a version of model {model_name!r}")
    if not artifact_digest.startswith("sha256:") or len(artifact_digest) != _DIGEST_LENGTH:
        raise InvalidInputError(f"artifact digest {artifact_digest!r} is not sha256:<64 hex>")
    model = session.scalars(select(Model).where(Model.name == model_name)).first()
    if model is None:
        raise NotFoundError(f"no model named {model_name!r}")
    linked = select(ModelVersion.id).where(ModelVersion.registry_uri == str(uri))
    if session.scalars(linked).first() is not None:
        raise ConflictError(f"{uri} is already linked to a version of {model_name!r}")
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
    )
    row = ModelVersion(
        model_id=model.id,
        version=(latest or 0) + 1,
        source_run_id=run_id,
        registry_uri=str(uri),
        artifact_digest=artifact_digest,
    )
    session.add(row)
    session.flush()
    trail.append(
        session,
        [
            AuditEvent(
                actor=actor,
                action="model.version.register",
                resource=f"model:{model_name}",
                decision="ok",
                run_id=run_id,
                payload={
                    "version": row.version,
                    "registry_uri": str(uri),
                    "artifact_digest": artifact_digest,
                },
            )
        ],
    )
    return row


def _registry_uri(value: str) -> ModelUri:
    try:
        return ModelUri.parse(value)
    except ValueError as error:
        raise InvalidInputError(str(error)) from None


def find_version(session: Session, model_ref: str, version: object) -> ModelVersion:
    """The version ``version`` of the model ``model:NAME`` names; a run's params give it, so
    an unknown one is invalid input.

    Raises:
        InvalidInputError: ``version`` is not a positive integer, or no such model or version.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInputError(f"params.version must be a positive integer, not {version!r}")
    name = model_ref.removeprefix("model:")
    row = session.scalars(
        select(ModelVersion)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(Model.name == name, ModelVersion.version == version)
    ).first()
    if row is None:
        raise InvalidInputError(f"model {name!r} has no version {version}")
    return row


def promotion_facts(session: Session, model_ref: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What the ``promotion_evidence`` gate judges a promote run on, read at submit time.

    Raises:
        InvalidInputError: ``params.version`` is missing, not a positive integer, or no
            version of the model.
    """
    row = find_version(session, model_ref, params.get("version"))
    evaluation = row.evidence.get("evaluation") or {}
    training = row.evidence.get("training") or {}
    return {
        "version": row.version,
        "version_evaluation": evaluation.get("status"),
        "version_model_card": bool(evaluation.get("model_card")),
        "version_privacy_mode": (training.get("privacy") or {}).get("mode"),
    }

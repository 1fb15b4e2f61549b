"""Model versions in the inventory, each linked to the registry version that holds its artifact."""

from __future__ import annotations

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

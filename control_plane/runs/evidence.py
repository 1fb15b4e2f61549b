"""Evidence a run keeps: documents addressed by their SHA-256, written once, served read-only."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.errors import NotFoundError, ProblemError
from control_plane.inventory.model_card import CARD_FILES
from control_plane.store.models import EvidenceArtifact, ModelVersion

ARTIFACT_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
MEDIA_TYPES: Final = {
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}


class EvidenceIntegrityError(ProblemError):
    """Stored evidence no longer hashes to its recorded digest: it is not served."""

    def __init__(self, detail: str) -> None:
        super().__init__(500, "Evidence Integrity Failure", detail)


def content_digest(content: bytes) -> str:
    """``sha256:`` and the hex digest of ``content``."""
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON (sorted keys, no NaN): equal evidence, equal digest."""
    return json.dumps(value, sort_keys=True, allow_nan=False, indent=2)


def keep_artifact(session: Session, run_id: str, name: str, text: str) -> EvidenceArtifact:
    """Add one document to the evidence of ``run_id`` in the caller's transaction.

    Raises:
        ValueError: the name is not a lower-case file name with a known extension.
    """
    media_type = next((t for ext, t in MEDIA_TYPES.items() if name.endswith(ext)), None)
    if not ARTIFACT_NAME.match(name) or media_type is None:
        raise ValueError(f"{name!r} is not an evidence file name ({', '.join(MEDIA_TYPES)})")
    content = text.encode()
    row = EvidenceArtifact(
        run_id=run_id,
        name=name,
        media_type=media_type,
        digest=content_digest(content),
        size=len(content),
        content=content,
    )
    session.add(row)
    return row


def run_artifacts(session: Session, run_id: str) -> list[EvidenceArtifact]:
    """The evidence of ``run_id``, by name."""
    return list(
        session.scalars(
            select(EvidenceArtifact)
            .where(EvidenceArtifact.run_id == run_id)
            .order_by(EvidenceArtifact.name)
        )
    )


def run_artifact(session: Session, run_id: str, name: str) -> EvidenceArtifact:
    """One document of the evidence of ``run_id``, checked against its digest.

    Raises:
        NotFoundError: the run kept no document of that name.
        EvidenceIntegrityError: the stored bytes no longer hash to the recorded digest.
    """
    row = session.get(EvidenceArtifact, (run_id, name))
    if row is None:
        raise NotFoundError(f"run {run_id} kept no evidence named {name!r}")
    if content_digest(row.content) != row.digest:
        raise EvidenceIntegrityError(f"evidence {name!r} of run {run_id} does not match its digest")
    return row


def version_card(session: Session, version: ModelVersion, card_format: str) -> EvidenceArtifact:
    """The model card of ``version`` in ``card_format`` (a key of ``CARD_FILES``).

    The card of its latest evaluation, or, once a promotion on that evaluation completed, the
    one the promotion kept with its approvals.

    Raises:
        NotFoundError: the version was never evaluated.
        EvidenceIntegrityError: the kept card is not the one its run recorded.
    """
    evaluation = version.evidence.get("evaluation")
    if not isinstance(evaluation, Mapping):
        raise NotFoundError(
            f"version {version.version} has no model card: it has not been evaluated"
        )
    kept: Mapping[str, Any] = evaluation
    promotion = version.evidence.get("promotion")
    if (
        isinstance(promotion, Mapping)
        and promotion.get("evaluation_run_id") == evaluation["run_id"]
    ):
        kept = promotion
    row = run_artifact(session, kept["run_id"], CARD_FILES[card_format])
    if row.digest != kept["model_card"][card_format]:
        raise EvidenceIntegrityError(
            f"the {card_format} model card of version {version.version} is not the one its "
            f"run {kept['run_id']} recorded"
        )
    return row

"""Signed releases: the promotion executor signs them, the deploy executor verifies them.

The release key is an Ed25519 key in the data directory (``govplane init`` creates it), loaded
with the audit trail's signer; its public key is all a registry or an auditor needs to check a
release offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit import CheckpointSigner
from connectors.registry import Release, SignedRelease
from control_plane.settings import Settings


class ReleaseRefusedError(RuntimeError):
    """A version's recorded release is missing, malformed or does not verify."""


def ensure_release_key(settings: Settings) -> None:
    """Create the release signing key if missing (``govplane init``); never replace one."""
    if not settings.artifact_signing_key_path.exists():
        CheckpointSigner.generate(settings.artifact_signing_key_path)


def load_release_signer(settings: Settings) -> CheckpointSigner:
    """The release signing key of ``settings``.

    Raises:
        RuntimeError: the key is missing or unreadable.
    """
    try:
        return CheckpointSigner.load(settings.artifact_signing_key_path)
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"the release signing key cannot be loaded ({exc}); run `govplane init` or set "
            "GOVPLANE_ARTIFACT_SIGNING_KEY_FILE"
        ) from exc


def sign_release(signer: CheckpointSigner, release: Release) -> SignedRelease:
    """``release`` signed with ``signer``."""
    return SignedRelease(release, signer.key_id, signer.sign(release.statement()))


def verified_release(
    signer: CheckpointSigner, promotion: Mapping[str, Any] | None, stage: str
) -> SignedRelease:
    """The signed release a version's ``evidence["promotion"]`` records, checked.

    Raises:
        ReleaseRefusedError: no completed promotion to ``stage``, an unsigned or malformed
            release, or a signature that does not verify under ``signer``'s public key.
    """
    if not promotion or promotion.get("stage") != stage:
        raise ReleaseRefusedError(f"the version has no completed promotion to {stage}")
    if not promotion.get("signature"):
        raise ReleaseRefusedError("the version's promotion carries no release signature")
    try:
        signed = SignedRelease.from_json(promotion["signature"])
    except ValueError as exc:
        raise ReleaseRefusedError(f"the release signature is malformed: {exc}") from None
    if signed.release.stage != stage or not signed.verify(signer.public_key):
        raise ReleaseRefusedError("the release signature does not verify")
    return signed

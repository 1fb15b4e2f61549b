"""The audit trail's two keys: the checkpoint signing key and the redaction (HMAC) key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from audit import CheckpointSigner, Redactor
from control_plane.settings import Settings


@dataclass(frozen=True)
class AuditKeys:
    """What signs checkpoints and exports, and what redacts secrets."""

    signer: CheckpointSigner
    redactor: Redactor


def ensure_audit_keys(settings: Settings) -> None:
    """Create whichever key is missing (``govplane init``); existing keys are never replaced."""
    if not settings.audit_signing_key_path.exists():
        CheckpointSigner.generate(settings.audit_signing_key_path)
    hmac_path = settings.audit_hmac_key_path
    if not hmac_path.exists():
        hmac_path.parent.mkdir(parents=True, exist_ok=True)
        hmac_path.touch(mode=0o600, exist_ok=False)
        hmac_path.write_text(secrets.token_hex(32) + "\n")


def load_audit_keys(settings: Settings) -> AuditKeys:
    """The keys of ``settings``.

    Raises:
        RuntimeError: a key is missing or unreadable (the trail cannot run without both).
    """
    try:
        signer = CheckpointSigner.load(settings.audit_signing_key_path)
        hmac_key = bytes.fromhex(settings.audit_hmac_key_path.read_text().strip())
        redactor = Redactor(hmac_key)
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"the audit keys cannot be loaded ({exc}); run `govplane init` or set "
            "GOVPLANE_AUDIT_SIGNING_KEY_FILE and GOVPLANE_AUDIT_HMAC_KEY_FILE"
        ) from exc
    return AuditKeys(signer, redactor)

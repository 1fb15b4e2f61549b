"""Release statements: what a completed promotion signs, and how anyone checks the signature.

The signed bytes are canonical JSON (sorted keys, no spaces), so any Ed25519 library can verify
a release from its fields::

    {"approval_id":null,"artifact_digest":"sha256:...","format":"govplane.release/v1",
     "model":"credit","registry_uri":"models:/credit/3","run_id":"...","stage":"production",
     "version":2}
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

RELEASE_FORMAT = "govplane.release/v1"


@dataclass(frozen=True)
class Release:
    """A model version released to a stage by a governed promotion run."""

    model: str
    version: int
    registry_uri: str
    artifact_digest: str
    stage: str
    approval_id: str | None
    run_id: str

    def statement(self) -> bytes:
        """The exact bytes that are signed."""
        fields = {"format": RELEASE_FORMAT, **asdict(self)}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SignedRelease:
    """A release with the Ed25519 signature over its statement."""

    release: Release
    key_id: str
    signature: bytes

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """Whether the signature is ``public_key``'s over the release statement."""
        try:
            public_key.verify(self.signature, self.release.statement())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """The signed release as recorded (signature in base64)."""
        return {
            "format": RELEASE_FORMAT,
            **asdict(self.release),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, value: Any) -> SignedRelease:
        """Parse a recorded signed release.

        Raises:
            ValueError: it is malformed or not a release of this format.
        """
        try:
            if value["format"] != RELEASE_FORMAT:
                raise ValueError(f"not a {RELEASE_FORMAT} release")
            approval = value["approval_id"]
            release = Release(
                model=str(value["model"]),
                version=int(value["version"]),
                registry_uri=str(value["registry_uri"]),
                artifact_digest=str(value["artifact_digest"]),
                stage=str(value["stage"]),
                approval_id=None if approval is None else str(approval),
                run_id=str(value["run_id"]),
            )
            return cls(
                release,
                str(value["key_id"]),
                base64.b64decode(value["signature"], validate=True),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed release: {exc}") from exc

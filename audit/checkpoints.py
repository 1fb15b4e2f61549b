"""Signed checkpoints: a tree size and root hash, signed with Ed25519.

The signed message is a short text note, so anyone can check it with any Ed25519 library::

    govplane.audit.checkpoint/v1
    <tree size>
    <root hash, hex>
    <issued at, ISO 8601 UTC>
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CHECKPOINT_FORMAT = "govplane.audit.checkpoint/v1"


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the log had ``size`` records with root ``root_hash``."""

    size: int
    root_hash: bytes
    issued_at: str
    key_id: str
    signature: bytes

    @property
    def note(self) -> bytes:
        """The exact bytes that are signed."""
        return checkpoint_note(self.size, self.root_hash, self.issued_at)

    def to_json(self) -> dict[str, Any]:
        """The checkpoint as published (hashes in hex, signature in base64)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "size": self.size,
            "root_hash": self.root_hash.hex(),
            "issued_at": self.issued_at,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        """Parse a published checkpoint; raises ``ValueError`` when malformed."""
        try:
            if value["format"] != CHECKPOINT_FORMAT:
                raise ValueError(f"not a {CHECKPOINT_FORMAT} checkpoint")
            size = value["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError("the checkpoint size must be a non-negative integer")
            root = bytes.fromhex(value["root_hash"])
            if len(root) != 32:
                raise ValueError("the checkpoint root hash must be 32 bytes")
            return cls(
                size=size,
                root_hash=root,
                issued_at=str(value["issued_at"]),
                key_id=str(value["key_id"]),
                signature=base64.b64decode(value["signature"], validate=True),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed checkpoint: {exc}") from exc


def checkpoint_note(size: int, root_hash: bytes, issued_at: str) -> bytes:
    """The signed text of a checkpoint."""
    return f"{CHECKPOINT_FORMAT}\n{size}\n{root_hash.hex()}\n{issued_at}\n".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs checkpoints and export digests with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls, path: Path) -> CheckpointSigner:
        """Create a new key, saved as unencrypted PKCS#8 PEM readable by the owner only."""
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=False)
        path.write_bytes(pem)
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> CheckpointSigner:
        """Load a PKCS#8 PEM Ed25519 private key."""
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key)

    def public_key_pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM (what ``verify-export`` takes)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature over ``data``."""
        return self._key.sign(data)

    def checkpoint(self, size: int, root_hash: bytes, issued_at: str) -> Checkpoint:
        """A signed checkpoint of a tree."""
        signature = self.sign(checkpoint_note(size, root_hash, issued_at))
        return Checkpoint(size, root_hash, issued_at, self.key_id, signature)


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; raises ``ValueError`` for anything else."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature over ``data``."""
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True

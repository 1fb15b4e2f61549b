"""``AuditEventV1``: one immutable record of the trail, and its exact bytes as a Merkle leaf.

A leaf is ``prev_hash (32 bytes) || canonical JSON of the event``. ``prev_hash`` is the leaf
hash of the record before it (32 zero bytes for the first record), so the log is a hash chain
whose links are the Merkle leaf hashes themselves: one SHA-256 per record serves both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

SCHEMA = "govplane.audit.event/v1"
GENESIS = bytes(32)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the one encoding that is hashed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a (redacted) payload's canonical JSON."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()


@dataclass(frozen=True)
class AuditEvent:
    """What a caller asks to record; the trail adds the sequence number, time and digest.

    Attributes:
        actor: the principal (or component, such as ``worker:NAME``) that acted.
        action: what was done, dotted (``policy.decide``, ``run.transition``).
        resource: what it was done to (``model:credit``, ``principal:alice``).
        decision: ``allow``, ``deny``, ``ok`` or a run state: the outcome.
        reasons: why (the deciding rule, a gate's reasons).
        run_id: the governed run this belongs to, if any.
        request_id: the API request that caused it, if any.
        payload: details; secrets in it are replaced before the record is written.
        sensitive: payload keys to redact besides the ones redacted by name.
    """

    actor: str
    action: str
    resource: str
    decision: str
    reasons: Sequence[str] = ()
    run_id: str | None = None
    request_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AuditEventV1:
    """A written record of the audit trail (version 1 of the record format)."""

    sequence: int
    time: str
    actor: str
    action: str
    resource: str
    decision: str
    reasons: tuple[str, ...]
    run_id: str | None
    request_id: str | None
    payload: Mapping[str, Any]
    payload_digest: str
    redacted: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object that is hashed."""
        return {
            "schema": SCHEMA,
            "sequence": self.sequence,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "run_id": self.run_id,
            "request_id": self.request_id,
            "payload": dict(self.payload),
            "payload_digest": self.payload_digest,
            "redacted": list(self.redacted),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> AuditEventV1:
        """Parse a record; raises ``ValueError`` for anything but a well-formed v1 record."""
        if not isinstance(value, Mapping) or value.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} record")
        expected = {"schema", *(f.name for f in fields(cls))}
        if set(value) != expected:
            raise ValueError(f"record fields differ from {SCHEMA}")
        try:
            event = cls(
                sequence=_typed(value["sequence"], int),
                time=_typed(value["time"], str),
                actor=_typed(value["actor"], str),
                action=_typed(value["action"], str),
                resource=_typed(value["resource"], str),
                decision=_typed(value["decision"], str),
                reasons=tuple(_typed(r, str) for r in _typed(value["reasons"], list)),
                run_id=_optional(value["run_id"]),
                request_id=_optional(value["request_id"]),
                payload=_typed(value["payload"], dict),
                payload_digest=_typed(value["payload_digest"], str),
                redacted=tuple(_typed(r, str) for r in _typed(value["redacted"], list)),
            )
            datetime.fromisoformat(event.time)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"malformed {SCHEMA} record: {exc}") from exc
        if payload_digest(event.payload) != event.payload_digest:
            raise ValueError("the payload does not match its digest")
        return event


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _typed(value, str)


def encode_leaf(prev_hash: bytes, event: AuditEventV1) -> bytes:
    """The exact bytes of ``event`` as the leaf after the one whose leaf hash is ``prev_hash``."""
    if len(prev_hash) != 32:
        raise ValueError("prev_hash must be 32 bytes")
    return prev_hash + canonical_json(event.to_json())


def decode_leaf(data: bytes) -> tuple[bytes, AuditEventV1]:
    """``(prev_hash, event)`` of a leaf; raises ``ValueError`` unless it is exactly canonical."""
    if len(data) < 34:
        raise ValueError("a leaf is 32 bytes of chain hash and a JSON record")
    body = data[32:]
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the record is not JSON: {exc}") from exc
    event = AuditEventV1.from_json(value)
    if canonical_json(value) != body:
        raise ValueError("the record is not in canonical form")
    return data[:32], event

"""The append-only, hash-chained, verifiable audit trail.

A library: records (:class:`AuditEventV1`), RFC 9162 Merkle hashing and proofs, Ed25519-signed
checkpoints, redaction of secrets, verification, and self-verifying exports. Storage and the
decision of what to audit belong to the application that uses it.
"""

from audit.checkpoints import (
    Checkpoint,
    CheckpointSigner,
    load_public_key,
    verify_signature,
)
from audit.events import (
    GENESIS,
    AuditEvent,
    AuditEventV1,
    canonical_json,
    decode_leaf,
    encode_leaf,
    payload_digest,
)
from audit.evidence_pack import PackVerification, verify_pack, write_pack
from audit.exports import (
    FORMATS,
    MEDIA_TYPES,
    ExportError,
    ExportFilter,
    ExportFormat,
    ExportRange,
    export_items,
    read_export,
    verify_export,
    write_export,
)
from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    range_hashes,
    root_from_ranges,
    subtree_ranges,
    verify_consistency,
    verify_inclusion,
)
from audit.redaction import Redactor
from audit.verification import ChainCheck, Verification, verify_leaves

__all__ = [
    "EMPTY_ROOT",
    "FORMATS",
    "GENESIS",
    "MEDIA_TYPES",
    "AuditEvent",
    "AuditEventV1",
    "ChainCheck",
    "Checkpoint",
    "CheckpointSigner",
    "ExportError",
    "ExportFilter",
    "ExportFormat",
    "ExportRange",
    "Frontier",
    "PackVerification",
    "Redactor",
    "Verification",
    "canonical_json",
    "consistency_ranges",
    "decode_leaf",
    "encode_leaf",
    "export_items",
    "inclusion_ranges",
    "leaf_hash",
    "load_public_key",
    "node_hash",
    "payload_digest",
    "range_hashes",
    "read_export",
    "root_from_ranges",
    "subtree_ranges",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
    "verify_leaves",
    "verify_pack",
    "verify_signature",
    "write_export",
    "write_pack",
]

"""Evidence packs: one zip of a subject's evidence, its audit records and their proofs.

The pack holds ``manifest.json`` (the SHA-256 of every other file), ``checkpoint.json`` (a
signed checkpoint of the audit trail) and ``audit/records.jsonl``: each relevant record with its
leaf bytes and the RFC 9162 inclusion proof of that leaf in the checkpoint's tree. Verifying it
needs only the pack and the trail's public key: the signature, every proof and every file
digest are checked, and each record shown must be the one its leaf holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.checkpoints import Checkpoint, key_id, verify_signature
from audit.events import decode_leaf
from audit.merkle import leaf_hash, verify_inclusion

MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.json"
RECORDS = "audit/records.jsonl"
PACK_FORMAT = "govplane-evidence-pack/1"


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()


def write_pack(
    subject: str,
    files: Mapping[str, Any],
    checkpoint: Checkpoint,
    records: Sequence[Mapping[str, Any]],
) -> bytes:
    """The zip of ``files`` (JSON values, or bytes as they are), the checkpoint and records.

    Args:
        subject: what the pack is evidence of (``model:credit:3``).
        files: the evidence, by path in the pack.
        checkpoint: the signed checkpoint every record's proof leads to.
        records: ``{"leaf_index", "leaf", "audit_path"}`` (hex) per record, from the trail.
    """
    contents = {
        path: value if isinstance(value, bytes) else _json(value) for path, value in files.items()
    }
    contents[CHECKPOINT] = _json(checkpoint.to_json())
    contents[RECORDS] = b"".join(
        json.dumps(
            {**record, "record": decode_leaf(bytes.fromhex(record["leaf"]))[1].to_json()},
            sort_keys=True,
        ).encode()
        + b"\n"
        for record in records
    )
    manifest = {
        "format": PACK_FORMAT,
        "subject": subject,
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in contents.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as pack:
        pack.writestr(MANIFEST, _json(manifest))
        for path, data in sorted(contents.items()):
            pack.writestr(path, data)
    return buffer.getvalue()


@dataclass(frozen=True)
class PackVerification:
    """The outcome of verifying a pack: what was checked and every problem found."""

    subject: str
    files: int
    records: int
    checkpoint_size: int
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "subject": self.subject,
            "files": self.files,
            "records": self.records,
            "checkpoint_size": self.checkpoint_size,
            "problems": self.problems,
        }


def verify_pack(data: bytes, public_key: Ed25519PublicKey) -> PackVerification:
    """Verify a pack offline against the audit trail's public key.

    Raises:
        ValueError: the bytes are not a pack at all (not a zip, or no manifest).
    """
    try:
        pack = zipfile.ZipFile(io.BytesIO(data))
        manifest = json.loads(pack.read(MANIFEST))
        listed: dict[str, str] = dict(manifest["files"])
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"not an evidence pack: {exc}") from exc
    problems: list[str] = []
    present = set(pack.namelist()) - {MANIFEST}
    for extra in sorted(present - set(listed)):
        problems.append(f"{extra} is in the pack but not in the manifest")
    for path, digest in sorted(listed.items()):
        if path not in present:
            problems.append(f"{path} is missing")
        elif hashlib.sha256(pack.read(path)).hexdigest() != digest:
            problems.append(f"{path} does not match its digest in the manifest")
    checkpoint = _checkpoint(pack, public_key, problems)
    records = _records(pack, checkpoint, problems) if checkpoint is not None else 0
    return PackVerification(
        str(manifest.get("subject", "")),
        len(listed),
        records,
        checkpoint.size if checkpoint is not None else 0,
        problems,
    )


def _checkpoint(
    pack: zipfile.ZipFile, public_key: Ed25519PublicKey, problems: list[str]
) -> Checkpoint | None:
    try:
        checkpoint = Checkpoint.from_json(json.loads(pack.read(CHECKPOINT)))
    except (KeyError, ValueError) as exc:
        problems.append(f"{CHECKPOINT}: {exc}")
        return None
    if checkpoint.key_id != key_id(public_key) or not verify_signature(
        public_key, checkpoint.signature, checkpoint.note
    ):
        problems.append("the checkpoint is not signed by the given public key")
        return None
    return checkpoint


def _records(pack: zipfile.ZipFile, checkpoint: Checkpoint, problems: list[str]) -> int:
    try:
        lines = pack.read(RECORDS).splitlines()
    except KeyError:
        problems.append(f"{RECORDS} is missing")
        return 0
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
            index, leaf = int(item["leaf_index"]), bytes.fromhex(item["leaf"])
            path = [bytes.fromhex(h) for h in item["audit_path"]]
            shown = decode_leaf(leaf)[1].to_json()
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"record line {number}: malformed: {exc}")
            continue
        if not verify_inclusion(
            index, checkpoint.size, leaf_hash(leaf), path, checkpoint.root_hash
        ):
            problems.append(f"record {index}: its inclusion proof does not lead to the checkpoint")
        if item.get("record") != shown:
            problems.append(f"record {index}: the record shown is not the one its leaf holds")
    return len(lines)

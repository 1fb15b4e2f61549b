"""Recomputing a log's chain and tree, and checking them against signed checkpoints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.checkpoints import Checkpoint, verify_signature
from audit.events import decode_leaf
from audit.merkle import Frontier

_sha256 = hashlib.sha256
_Record = tuple[int, bytes, bytes | None, Mapping[str, Any] | None]


@dataclass(frozen=True)
class Verification:
    """The outcome of a verification.

    Attributes:
        valid: every check passed.
        size: how many records the log (or export) covers.
        root_hash: the recomputed root of the tree of ``size`` leaves (hex).
        first_invalid: the sequence number of the first record that failed, if one did.
        problem: what failed, in words.
        records: how many records were read and checked.
    """

    valid: bool
    size: int
    root_hash: str
    first_invalid: int | None = None
    problem: str | None = None
    records: int = 0

    def to_json(self) -> dict[str, Any]:
        """The verification as the API reports it."""
        return {
            "valid": self.valid,
            "size": self.size,
            "root_hash": self.root_hash,
            "first_invalid": self.first_invalid,
            "problem": self.problem,
            "records": self.records,
        }


class ChainCheck:
    """Walks records in order, recomputing the chain and the tree; stops at the first fault.

    Args:
        base: the tree state before the first record (empty, or a pruned prefix's).
        prev_hash: the leaf hash of the record before the first one.
        checkpoints: signed checkpoints to hold the recomputed roots to.
        public_key: the key the checkpoints must be signed with.
        parse: ``none`` checks bytes only (chain, hashes, tree); ``fields`` also parses each
            record and checks its sequence number and the stored copies of its fields;
            ``full`` also checks that each record is a well-formed, canonical v1 record.
    """

    def __init__(
        self,
        base: Frontier,
        prev_hash: bytes,
        checkpoints: Sequence[Checkpoint] = (),
        public_key: Ed25519PublicKey | None = None,
        parse: Literal["none", "fields", "full"] = "full",
    ) -> None:
        self.frontier = base.copy()
        self.prev = prev_hash
        self.parse = parse
        self.first_invalid: int | None = None
        self.problem: str | None = None
        self._start = base.size
        self._due = sorted(
            (c for c in checkpoints if c.size > base.size), key=lambda c: c.size, reverse=True
        )
        for checkpoint in checkpoints:
            if public_key is None or not verify_signature(
                public_key, checkpoint.signature, checkpoint.note
            ):
                self.fail(None, f"checkpoint at size {checkpoint.size} has a bad signature")
                break

    @property
    def records(self) -> int:
        """How many records were checked so far."""
        return self.frontier.size - self._start

    @property
    def ok(self) -> bool:
        """No fault found so far."""
        return self.problem is None

    def fail(self, sequence: int | None, problem: str) -> None:
        """Record a fault (only the first one counts)."""
        if self.problem is None:
            self.first_invalid = sequence
            self.problem = problem

    def feed(
        self,
        sequence: int,
        leaf: bytes,
        stored_hash: bytes | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> bytes | None:
        """Check the next record; returns its leaf hash, or None once a fault was found.

        Args:
            sequence: the record's stated position.
            leaf: its exact bytes.
            stored_hash: the leaf hash stored beside it, if any.
            fields: copies of record fields stored beside it (checked when parsing).
        """
        self.feed_all(((sequence, leaf, stored_hash, fields),))
        return self.prev if self.problem is None else None

    def feed_all(self, records: Iterable[_Record]) -> None:
        """Check records in order (as :meth:`feed`), stopping at the first fault.

        One loop over local names: this is the inner loop of every verification.
        """
        if self.problem is not None:
            return
        frontier, due = self.frontier, self._due
        prev, parse = self.prev, self.parse != "none"
        size, subtrees = frontier.size, frontier.subtrees
        for sequence, leaf, stored_hash, fields in records:
            if sequence != size:
                self.fail(size, f"record {size} is missing (found {sequence})")
                break
            if not leaf.startswith(prev):
                self.fail(sequence, f"record {sequence} does not chain to the record before it")
                break
            digest = _sha256(b"\x00" + leaf).digest()
            if stored_hash is not None and stored_hash != digest:
                self.fail(sequence, f"record {sequence} does not match its stored leaf hash")
                break
            if parse and not self._fields_ok(sequence, leaf, fields):
                break
            prev = digest
            # Frontier.append, inlined: a binary increment of the subtrees.
            count = size
            while count & 1:
                digest = _sha256(b"\x01" + subtrees.pop() + digest).digest()
                count >>= 1
            subtrees.append(digest)
            size += 1
            if due and due[-1].size == size:
                frontier.size = size
                if not self._at_checkpoint(sequence):
                    break
        frontier.size = size
        self.prev = prev

    def _at_checkpoint(self, sequence: int) -> bool:
        checkpoint = self._due.pop()
        if checkpoint.root_hash != self.frontier.root():
            self.fail(
                sequence,
                f"the records up to {sequence} do not match the signed checkpoint "
                f"at size {checkpoint.size}",
            )
            return False
        return True

    def skip(self, sequence: int, digest: bytes) -> None:
        """Account for a record known only by its leaf hash (elided from an export)."""
        if self.problem is not None:
            return
        if sequence != self.frontier.size:
            self.fail(self.frontier.size, f"record {self.frontier.size} is missing")
            return
        self.frontier.append(digest)
        self.prev = digest

    def _fields_ok(self, sequence: int, leaf: bytes, fields: Mapping[str, Any] | None) -> bool:
        try:
            if self.parse == "full":
                record = decode_leaf(leaf)[1].to_json()
            else:
                record = json.loads(leaf[32:])
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
        except ValueError as exc:
            self.fail(sequence, f"record {sequence} is malformed: {exc}")
            return False
        if record.get("sequence") != sequence:
            self.fail(sequence, f"record {sequence} states sequence {record.get('sequence')}")
            return False
        for name, value in (fields or {}).items():
            if record.get(name) != value:
                self.fail(sequence, f"record {sequence}: stored {name} differs from the record")
                return False
        return True

    def finish(self, head: tuple[int, bytes] | None = None) -> Verification:
        """The outcome, after checking the last record against ``head`` (size, root) if given."""
        root = self.frontier.root()
        if self.ok and self._due:
            self.fail(
                self.frontier.size,
                f"records are missing: a checkpoint covers {self._due[0].size} records, "
                f"{self.frontier.size} were found",
            )
        if self.ok and head is not None and head != (self.frontier.size, root):
            self.fail(
                min(head[0], self.frontier.size),
                f"the log head says {head[0]} records, {self.frontier.size} chain from the start",
            )
        return Verification(
            valid=self.ok,
            size=self.frontier.size,
            root_hash=root.hex(),
            first_invalid=self.first_invalid,
            problem=self.problem,
            records=self.records,
        )


def verify_leaves(
    leaves: Iterable[bytes],
    checkpoints: Sequence[Checkpoint] = (),
    public_key: Ed25519PublicKey | None = None,
    base: Frontier | None = None,
    prev_hash: bytes = bytes(32),
) -> Verification:
    """Verify a whole log given as its leaves in order (no field checks: the fast path)."""
    check = ChainCheck(base or Frontier(), prev_hash, checkpoints, public_key, parse="none")
    check.feed_all((s, leaf, None, None) for s, leaf in enumerate(leaves, check.frontier.size))
    return check.finish()

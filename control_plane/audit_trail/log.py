"""The audit trail in the store: appends under the head lock, checkpoints, proofs, exports.

Every append locks the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; a
SQLite write transaction holds the database's write lock from ``BEGIN IMMEDIATE``) before it
reads the head, so writers on any number of threads and replicas extend one chain, never fork
it. The records are written in the caller's transaction: they commit with the state change they
describe, or neither does.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit import (
    GENESIS,
    AuditEvent,
    AuditEventV1,
    Checkpoint,
    ExportError,
    ExportFilter,
    ExportFormat,
    ExportRange,
    Frontier,
    Verification,
    consistency_ranges,
    decode_leaf,
    encode_leaf,
    export_items,
    inclusion_ranges,
    leaf_hash,
    payload_digest,
    range_hashes,
    read_export,
    subtree_ranges,
    verify_export,
)
from audit.exports import export_writer
from audit.verification import ChainCheck
from control_plane.audit_trail.group_commit import GroupCommitter
from control_plane.audit_trail.keys import AuditKeys
from control_plane.errors import InvalidInputError, ProblemError
from control_plane.store import Database, utcnow
from control_plane.store.models import (
    AuditCheckpointRow,
    AuditHead,
    AuditPrune,
    AuditRecord,
    Base,
)

_HEAD = 1
_LOCK_HEAD = (
    select(AuditHead.size, AuditHead.last_hash, AuditHead.frontier)
    .where(AuditHead.id == _HEAD)
    .with_for_update()
)
_INSERT_RECORDS = insert(Base.metadata.tables["audit_records"])
_MOVE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == _HEAD)
    .values(
        size=bindparam("new_size"),
        root_hash=bindparam("new_root"),
        last_hash=bindparam("new_last"),
        frontier=bindparam("new_frontier", type_=JSON),
    )
)
_CHUNK = 1000


class AuditUnavailableError(ProblemError):
    """The trail cannot record an action, so the action is refused (fail closed)."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, "Service Unavailable", f"the audit trail cannot record: {detail}")


@dataclass(frozen=True)
class _Base:
    """Where the stored records start: after a pruned prefix, or at the beginning."""

    frontier: Frontier
    prev_hash: bytes

    @property
    def size(self) -> int:
        return self.frontier.size


@dataclass(frozen=True)
class CheckpointCadence:
    """How often the latest checkpoint is signed anew as the log grows.

    A new one is signed at the head when the latest is ``seconds`` old, or ``records`` behind,
    whichever comes first; until then readers get the latest (as a transparency log publishes
    its signed tree head at an interval, not per record).
    """

    seconds: float = 60.0
    records: int = 1000


class AuditLog:
    """The store-backed audit trail of one control plane."""

    def __init__(
        self, db: Database, keys: AuditKeys, cadence: CheckpointCadence = CheckpointCadence()
    ) -> None:
        self._db = db
        self._keys = keys
        self._cadence = cadence
        self._committer = GroupCommitter(db, self.append)

    @property
    def db(self) -> Database:
        """The store the trail is kept in."""
        return self._db

    @property
    def public_key_pem(self) -> str:
        """The key checkpoints and exports are signed with (PEM)."""
        return self._keys.signer.public_key_pem()

    def append(self, session: Session, events: Sequence[AuditEvent]) -> list[int]:
        """Write ``events`` in ``session``'s transaction; returns their sequence numbers.

        Raises:
            AuditUnavailableError: the records cannot be written (the transaction must not
                commit; raising it out of a ``Database.session`` block rolls it back).
        """
        if self._db.is_sqlite and not session.connection().get_execution_options().get(
            "govplane_write"
        ):
            raise RuntimeError("audit records are appended in a write session only")
        try:
            return self._append(session, events)
        except SQLAlchemyError as exc:
            raise AuditUnavailableError(str(exc).splitlines()[0]) from exc

    def _append(self, session: Session, events: Sequence[AuditEvent]) -> list[int]:
        connection = session.connection()
        size, last_hash, hashes = connection.execute(_LOCK_HEAD).one()
        frontier = Frontier(size, [bytes.fromhex(h) for h in hashes])
        prev = last_hash
        rows: list[dict[str, Any]] = []
        for event in events:
            payload, redacted = self._keys.redactor.redact(event.payload, event.sensitive)
            now = utcnow()
            record = AuditEventV1(
                sequence=frontier.size,
                time=now.isoformat(timespec="microseconds"),
                actor=event.actor,
                action=event.action,
                resource=event.resource,
                decision=event.decision,
                reasons=tuple(event.reasons),
                run_id=event.run_id,
                request_id=event.request_id,
                payload=payload,
                payload_digest=payload_digest(payload),
                redacted=redacted,
            )
            leaf = encode_leaf(prev, record)
            digest = leaf_hash(leaf)
            rows.append(
                {
                    "sequence": record.sequence,
                    "occurred_at": now,
                    "actor": record.actor,
                    "action": record.action,
                    "resource": record.resource,
                    "run_id": record.run_id,
                    "leaf": leaf,
                    "leaf_hash": digest,
                }
            )
            frontier.append(digest)
            prev = digest
        if rows:
            # Prepared Core statements, not the ORM: this is the hot path of every request.
            connection.execute(_INSERT_RECORDS, rows)
            connection.execute(
                _MOVE_HEAD,
                {
                    "new_size": frontier.size,
                    "new_root": frontier.root(),
                    "new_last": prev,
                    "new_frontier": [h.hex() for h in frontier.subtrees],
                },
            )
        return [row["sequence"] for row in rows]

    def commit(self, events: Sequence[AuditEvent]) -> list[int]:
        """Write ``events`` in their own transaction, grouped with concurrent callers' records.

        Raises:
            AuditUnavailableError: the records were not committed.
        """
        try:
            return self._committer.commit(events)
        except AuditUnavailableError:
            raise
        except Exception as exc:
            raise AuditUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Commit what is queued and stop the group-commit thread."""
        self._committer.close()

    def checkpoint(self, fresh: bool = False) -> Checkpoint:
        """The latest signed checkpoint, signed anew at the head as the cadence says.

        Args:
            fresh: sign at the head whenever the log has grown since the latest checkpoint.
        """
        if not fresh:
            with self._db.session() as session:
                latest = self._current(session)
            if latest is not None:
                return latest
        with self._db.session(write=True) as session:
            size, root = session.execute(
                select(AuditHead.size, AuditHead.root_hash)
                .where(AuditHead.id == _HEAD)
                .with_for_update()
            ).one()
            row = session.get(AuditCheckpointRow, size)
            if row is None:
                signed = self._keys.signer.checkpoint(
                    size, root, utcnow().isoformat(timespec="microseconds")
                )
                row = AuditCheckpointRow(
                    size=size,
                    root_hash=root,
                    issued_at=signed.issued_at,
                    key_id=signed.key_id,
                    signature=signed.signature,
                )
                session.add(row)
            return _checkpoint(row)

    def _current(self, session: Session) -> Checkpoint | None:
        """The latest checkpoint if the cadence does not yet ask for a new one."""
        size = session.execute(select(AuditHead.size).where(AuditHead.id == _HEAD)).scalar_one()
        row = session.scalars(
            select(AuditCheckpointRow).order_by(AuditCheckpointRow.size.desc()).limit(1)
        ).first()
        if row is None:
            return None
        age = (utcnow() - datetime.fromisoformat(row.issued_at)).total_seconds()
        due = size - row.size >= self._cadence.records or age >= self._cadence.seconds
        return _checkpoint(row) if row.size == size or not due else None

    def events(
        self,
        after: int | None,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        run_id: str | None = None,
    ) -> list[AuditEventV1]:
        """Records in sequence order after ``after``, filtered."""
        statement = select(AuditRecord.leaf).order_by(AuditRecord.sequence).limit(limit)
        if after is not None:
            statement = statement.where(AuditRecord.sequence > after)
        for column, value in (
            (AuditRecord.actor, actor),
            (AuditRecord.action, action),
            (AuditRecord.resource, resource),
            (AuditRecord.run_id, run_id),
        ):
            if value is not None:
                statement = statement.where(column == value)
        with self._db.session() as session:
            return [decode_leaf(leaf)[1] for leaf in session.scalars(statement)]

    def verify(self) -> Verification:
        """Recompute the chain and the tree from the stored records.

        Every record's bytes, chain link, stored hash, sequence number and indexed fields are
        checked, the recomputed roots are held to every signed checkpoint, and the last one to
        the head. (Exports, which show records to readers, also check each record's form.)
        """
        with self._db.session() as session:
            if not self._db.is_sqlite:
                # One snapshot for the head and the records (SQLite transactions always are).
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            size, root = session.execute(
                select(AuditHead.size, AuditHead.root_hash).where(AuditHead.id == _HEAD)
            ).one()
            base = _base(session)
            checkpoints = [
                _checkpoint(row)
                for row in session.scalars(
                    select(AuditCheckpointRow).where(
                        AuditCheckpointRow.size > base.size, AuditCheckpointRow.size <= size
                    )
                )
            ]
            check = ChainCheck(
                base.frontier,
                base.prev_hash,
                checkpoints,
                self._keys.signer.public_key,
                parse="fields",
            )
            rows = session.execute(
                select(
                    AuditRecord.sequence,
                    AuditRecord.leaf,
                    AuditRecord.leaf_hash,
                    AuditRecord.occurred_at,
                    AuditRecord.actor,
                    AuditRecord.action,
                    AuditRecord.resource,
                    AuditRecord.run_id,
                )
                .where(AuditRecord.sequence >= base.size)
                .order_by(AuditRecord.sequence)
                .execution_options(yield_per=_CHUNK)
            )
            check.feed_all(
                (
                    sequence,
                    bytes(leaf),
                    bytes(stored),
                    {
                        "time": at.isoformat(timespec="microseconds"),
                        "actor": actor,
                        "action": action,
                        "resource": resource,
                        "run_id": run_id,
                    },
                )
                for sequence, leaf, stored, at, actor, action, resource, run_id in rows
            )
            return check.finish(head=(size, bytes(root)))

    def verify_recorded(self, actor: str, request_id: str | None = None) -> Verification:
        """:meth:`verify`, and record who verified and the outcome (``audit.verify``).

        Raises:
            AuditUnavailableError: the outcome could not be recorded (nothing is answered).
        """
        verification = self.verify()
        outcome = verification.to_json()
        event = AuditEvent(
            actor=actor,
            action="audit.verify",
            resource="audit:*",
            decision="ok" if verification.valid else "invalid",
            reasons=[verification.problem] if verification.problem else [],
            request_id=request_id,
            payload={k: outcome[k] for k in ("valid", "size", "root_hash", "first_invalid")},
        )
        self.commit([event])
        return verification

    def inclusion_proof(self, index: int, tree_size: int | None) -> dict[str, Any]:
        """The RFC 9162 inclusion proof of record ``index`` in the tree of ``tree_size``."""
        with self._db.session() as session:
            size, base = self._size(session, tree_size), _base(session)
            if not base.size <= index < size:
                raise InvalidInputError(
                    f"record {index} is not in the stored log [{base.size}, {size})"
                )
            ranges = inclusion_ranges(index, size)
            hashes = self._hashes(session, base, [*ranges, (index, index + 1)], size)
            root = self._root(session, base, size)
            leaf = session.scalar(select(AuditRecord.leaf).where(AuditRecord.sequence == index))
        return {
            "leaf_index": index,
            "tree_size": size,
            "leaf_hash": hashes[(index, index + 1)].hex(),
            "leaf": None if leaf is None else bytes(leaf).hex(),
            "root_hash": root.hex(),
            "audit_path": [hashes[r].hex() for r in ranges],
        }

    def consistency_proof(self, first: int, second: int | None) -> dict[str, Any]:
        """The RFC 9162 consistency proof between the trees of ``first`` and ``second`` leaves."""
        with self._db.session() as session:
            size, base = self._size(session, second), _base(session)
            if not 0 < first <= size:
                raise InvalidInputError(f"first must be within [1, {size}], not {first}")
            ranges = consistency_ranges(first, size)
            hashes = self._hashes(session, base, ranges, size)
            first_root = self._root(session, base, first)
            second_root = self._root(session, base, size)
        return {
            "first": first,
            "second": size,
            "first_root": first_root.hex(),
            "second_root": second_root.hex(),
            "consistency_path": [hashes[r].hex() for r in ranges],
        }

    def export(self, fmt: ExportFormat, filters: ExportFilter) -> Iterator[bytes]:
        """The export of the records ``filters`` selects, as a stream of byte chunks."""
        checkpoint = self.checkpoint(fresh=True)
        signer = self._keys.signer
        sink = _Chunks()
        writer = export_writer(fmt, sink)
        with self._db.session() as session:
            scope = self._export_range(session, checkpoint, filters)
            leaves = session.execute(
                select(AuditRecord.sequence, AuditRecord.leaf)
                .where(AuditRecord.sequence >= scope.start, AuditRecord.sequence < scope.end)
                .order_by(AuditRecord.sequence)
                .execution_options(yield_per=_CHUNK)
            )
            for item in export_items(
                scope, ((s, bytes(leaf)) for s, leaf in leaves), filters, signer
            ):
                writer.write(item)
                if sink.pending:
                    yield sink.take()
        writer.close()
        yield sink.take()

    def archive_and_prune(self, archive: Path, fmt: ExportFormat, until: datetime, by: str) -> int:
        """Export the records before ``until`` to ``archive``, verify it, then prune them.

        Returns:
            how many records were pruned (0 when none is older than ``until``).

        Raises:
            ExportError: the archive does not verify (nothing is pruned).
        """
        digest = hashlib.sha256()
        with archive.open("wb") as sink:
            for chunk in self.export(fmt, ExportFilter(until=until)):
                digest.update(chunk)
                sink.write(chunk)
        verified = verify_export(archive, self._keys.signer.public_key)
        if not verified.valid:
            raise ExportError(f"the archive does not verify: {verified.problem}")
        header = json.loads(next(read_export(archive))["meta"])
        if header["end"] <= header["start"]:
            return 0
        return self.prune(header["end"], digest.hexdigest(), by)

    def prune(self, before: int, archive_digest: str, pruned_by: str) -> int:
        """Delete the records before ``before``, keeping the tree state that replaces them.

        Only records already covered by a signed checkpoint can be pruned, and the pruning is
        itself recorded in the trail.

        Returns:
            how many records were deleted.
        """
        with self._db.session(write=True) as session:
            head_size = session.execute(
                select(AuditHead.size).where(AuditHead.id == _HEAD).with_for_update()
            ).scalar_one()
            base = _base(session)
            signed = session.scalar(
                select(func.max(AuditCheckpointRow.size)).where(
                    AuditCheckpointRow.size <= head_size
                )
            )
            if signed is None or not base.size < before <= signed:
                raise InvalidInputError(
                    f"records before {before} cannot be pruned: only records in "
                    f"[{base.size}, {signed or 0}) are stored and behind a signed checkpoint"
                )
            frontier = base.frontier.copy()
            last = base.prev_hash
            for (digest,) in session.execute(
                select(AuditRecord.leaf_hash)
                .where(AuditRecord.sequence >= base.size, AuditRecord.sequence < before)
                .order_by(AuditRecord.sequence)
                .execution_options(yield_per=_CHUNK)
            ):
                frontier.append(bytes(digest))
                last = bytes(digest)
            session.add(
                AuditPrune(
                    size=before,
                    frontier=[h.hex() for h in frontier.subtrees],
                    last_hash=last,
                    checkpoint_size=signed,
                    archive_digest=archive_digest,
                    pruned_by=pruned_by,
                )
            )
            deleted = session.execute(delete(AuditRecord).where(AuditRecord.sequence < before))
            self.append(
                session,
                [
                    AuditEvent(
                        actor=pruned_by,
                        action="audit.prune",
                        resource="audit:records",
                        decision="ok",
                        payload={"before": before, "archive_sha256": archive_digest},
                    )
                ],
            )
            return int(deleted.rowcount)  # type: ignore[attr-defined]

    def _export_range(
        self, session: Session, checkpoint: Checkpoint, filters: ExportFilter
    ) -> ExportRange:
        base, size = _base(session), checkpoint.size
        start = _first_at_or_after(session, filters.since, base.size, size)
        end = max(start, _end_before(session, filters.until, start, size))
        left = base.frontier.copy()
        prev = base.prev_hash
        for (digest,) in self._leaf_hashes(session, base.size, start):
            left.append(digest)
            prev = digest
        right = self._hashes(session, base, subtree_ranges(end, size, size), size)
        return ExportRange(checkpoint, start, end, left, right, prev)

    def _size(self, session: Session, tree_size: int | None) -> int:
        head = session.execute(select(AuditHead.size).where(AuditHead.id == _HEAD)).scalar_one()
        if tree_size is None:
            return int(head)
        if not 0 < tree_size <= head:
            raise InvalidInputError(f"tree_size must be within [1, {head}], not {tree_size}")
        return tree_size

    def _leaf_hashes(self, session: Session, start: int, end: int) -> Iterator[tuple[bytes]]:
        rows = session.execute(
            select(AuditRecord.leaf_hash)
            .where(AuditRecord.sequence >= start, AuditRecord.sequence < end)
            .order_by(AuditRecord.sequence)
            .execution_options(yield_per=_CHUNK)
        )
        return ((bytes(digest),) for (digest,) in rows)

    def _hashes(
        self, session: Session, base: _Base, ranges: Sequence[tuple[int, int]], size: int
    ) -> dict[tuple[int, int], bytes]:
        if not ranges:
            return {}
        low = max(base.size, min(lo for lo, _ in ranges))
        rows = session.execute(
            select(AuditRecord.sequence, AuditRecord.leaf_hash)
            .where(AuditRecord.sequence >= low, AuditRecord.sequence < size)
            .order_by(AuditRecord.sequence)
            .execution_options(yield_per=_CHUNK)
        )
        try:
            return range_hashes(
                ranges, ((s, bytes(h)) for s, h in rows), dict(base.frontier.ranges())
            )
        except ValueError as exc:
            raise InvalidInputError(f"the proof needs pruned records: {exc}") from exc

    def _root(self, session: Session, base: _Base, size: int) -> bytes:
        return self._hashes(session, base, [(0, size)], size)[(0, size)]


class _Chunks(io.RawIOBase):
    """A write-only sink whose bytes are taken out in chunks (for streamed responses)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0
        self._pending = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        self._pending += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    @property
    def pending(self) -> bool:
        return self._pending >= 65_536

    def take(self) -> bytes:
        data, self._parts, self._pending = b"".join(self._parts), [], 0
        return data


def _checkpoint(row: AuditCheckpointRow) -> Checkpoint:
    return Checkpoint(
        size=row.size,
        root_hash=bytes(row.root_hash),
        issued_at=row.issued_at,
        key_id=row.key_id,
        signature=bytes(row.signature),
    )


def _base(session: Session) -> _Base:
    row = session.scalars(select(AuditPrune).order_by(AuditPrune.size.desc()).limit(1)).first()
    if row is None:
        return _Base(Frontier(), GENESIS)
    return _Base(Frontier(row.size, [bytes.fromhex(h) for h in row.frontier]), row.last_hash)


def _first_at_or_after(session: Session, since: datetime | None, low: int, size: int) -> int:
    if since is None:
        return low
    first = session.scalar(
        select(func.min(AuditRecord.sequence)).where(
            AuditRecord.occurred_at >= since, AuditRecord.sequence < size
        )
    )
    return size if first is None else max(low, int(first))


def _end_before(session: Session, until: datetime | None, low: int, size: int) -> int:
    if until is None:
        return size
    last = session.scalar(
        select(func.max(AuditRecord.sequence)).where(
            AuditRecord.occurred_at < until,
            AuditRecord.sequence >= low,
            AuditRecord.sequence < size,
        )
    )
    return low if last is None else int(last) + 1

"""Self-verifying exports of the trail in JSONL, CSV and Parquet, written and read as streams.

An export covers the records ``[start, end)`` of a tree of ``size`` leaves (a signed
checkpoint). It is a stream of items, the same in every format:

* ``header``: the checkpoint, the filters, the frontier of ``[0, start)`` (``left``), the
  subtree hashes covering ``[end, size)`` (``right``) and the leaf hash before ``start``;
* one ``record`` per record that matches the filters (its exact leaf bytes, base64, plus
  readable copies of its main fields), or ``elided`` with only its leaf hash when it does not;
* ``trailer``: the SHA-256 of the canonical JSON lines of every item before it, signed.

From these alone (no server, no database) a verifier recomputes the chain over
``[start, end)`` and the tree root of ``size`` leaves, holds it to the signed checkpoint, and
checks the trailer's signature over everything else, so any changed, dropped, reordered or
inserted record is found and named.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.checkpoints import Checkpoint, CheckpointSigner, verify_signature
from audit.events import AuditEventV1, canonical_json, decode_leaf
from audit.merkle import Frontier, root_from_ranges, subtree_ranges
from audit.verification import ChainCheck, Verification

EXPORT_FORMAT = "govplane.audit.export/v1"
COLUMNS = (
    "kind",
    "sequence",
    "time",
    "actor",
    "action",
    "resource",
    "decision",
    "leaf_hash",
    "leaf",
    "meta",
)
_READABLE = ("time", "actor", "action", "resource", "decision")
ExportFormat = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv", "parquet")
MEDIA_TYPES: dict[ExportFormat, str] = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
_PARQUET_SCHEMA = pa.schema(
    [(name, pa.int64() if name == "sequence" else pa.string()) for name in COLUMNS]
)
_PARQUET_BATCH = 4096


class ExportError(ValueError):
    """An export that cannot be read at all (not one of the formats, truncated, garbled)."""


@dataclass(frozen=True)
class ExportFilter:
    """Which records an export shows in full; the rest of its range are elided to hashes."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    resource: str | None = None
    action: str | None = None

    def matches(self, event: AuditEventV1) -> bool:
        """Whether ``event`` is shown by this filter."""
        time = datetime.fromisoformat(event.time)
        return (
            (self.since is None or time >= self.since)
            and (self.until is None or time < self.until)
            and (self.actor is None or event.actor == self.actor)
            and (self.resource is None or event.resource == self.resource)
            and (self.action is None or event.action == self.action)
        )

    def to_json(self) -> dict[str, str | None]:
        """The filter as written into the export header."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "actor": self.actor,
            "resource": self.resource,
            "action": self.action,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ExportFilter:
        """Parse the filter of an export header."""
        since, until = value.get("since"), value.get("until")
        return cls(
            since=datetime.fromisoformat(since) if since else None,
            until=datetime.fromisoformat(until) if until else None,
            actor=value.get("actor"),
            resource=value.get("resource"),
            action=value.get("action"),
        )


@dataclass(frozen=True)
class ExportRange:
    """The part of the tree an export covers, with the context that proves it.

    Attributes:
        checkpoint: the signed checkpoint of the tree (``checkpoint.size`` leaves).
        start: the first record covered.
        end: one past the last record covered.
        left: the tree state of ``[0, start)``.
        right: the hashes of the subtrees covering ``[end, size)``, by leaf range.
        prev_hash: the leaf hash of record ``start - 1`` (zeros when ``start`` is 0).
    """

    checkpoint: Checkpoint
    start: int
    end: int
    left: Frontier
    right: Mapping[tuple[int, int], bytes]
    prev_hash: bytes


def export_items(
    scope: ExportRange,
    leaves: Iterable[tuple[int, bytes]],
    filters: ExportFilter,
    signer: CheckpointSigner,
) -> Iterator[dict[str, Any]]:
    """The items of an export, header to trailer, from the leaves ``[start, end)`` in order."""
    digest = hashlib.sha256()

    def emit(item: dict[str, Any]) -> dict[str, Any]:
        digest.update(canonical_json(item) + b"\n")
        return item

    yield emit(
        _item(
            "header",
            meta={
                "format": EXPORT_FORMAT,
                "checkpoint": scope.checkpoint.to_json(),
                "filters": filters.to_json(),
                "start": scope.start,
                "end": scope.end,
                "left": [h.hex() for h in scope.left.subtrees],
                "right": [[lo, hi, h.hex()] for (lo, hi), h in sorted(scope.right.items())],
                "prev_hash": scope.prev_hash.hex(),
            },
        )
    )
    count = 0
    for sequence, leaf in leaves:
        _, event = decode_leaf(leaf)
        if filters.matches(event):
            record = event.to_json()
            yield emit(
                _item(
                    "record",
                    sequence=sequence,
                    leaf=base64.b64encode(leaf).decode(),
                    **{name: record[name] for name in _READABLE},
                )
            )
        else:
            leaf_digest = hashlib.sha256(b"\x00" + leaf).hexdigest()
            yield emit(_item("elided", sequence=sequence, leaf_hash=leaf_digest))
        count += 1
    if count != scope.end - scope.start:
        raise ExportError(f"expected {scope.end - scope.start} records, read {count}")
    final = digest.hexdigest()
    signature = signer.sign(_trailer_note(final))
    yield _item(
        "trailer",
        meta={"digest": final, "signature": base64.b64encode(signature).decode()},
    )


def _item(kind: str, **values: Any) -> dict[str, Any]:
    item: dict[str, Any] = dict.fromkeys(COLUMNS)
    item["kind"] = kind
    for name, value in values.items():
        item[name] = canonical_json(value).decode() if name == "meta" else value
    return item


def _trailer_note(digest: str) -> bytes:
    return f"{EXPORT_FORMAT}\n{digest}\n".encode()


class ExportWriter(Protocol):
    """Writes export items to a binary stream in one format."""

    def write(self, item: Mapping[str, Any]) -> None:
        """Write one item."""
        ...

    def close(self) -> None:
        """Finish the stream (flush what is buffered, write any footer)."""
        ...


class _JsonlWriter:
    def __init__(self, sink: IO[bytes] | io.RawIOBase) -> None:
        self._sink = sink

    def write(self, item: Mapping[str, Any]) -> None:
        self._sink.write(canonical_json(item) + b"\n")

    def close(self) -> None:
        self._sink.flush()


class _CsvWriter:
    def __init__(self, sink: IO[bytes] | io.RawIOBase) -> None:
        self._sink = sink
        self._sink.write(_csv_line(COLUMNS))

    def write(self, item: Mapping[str, Any]) -> None:
        self._sink.write(_csv_line(_csv_cells(item)))

    def close(self) -> None:
        self._sink.flush()


def _csv_cells(item: Mapping[str, Any]) -> list[str]:
    return ["" if item[name] is None else str(item[name]) for name in COLUMNS]


def _csv_line(cells: Iterable[str]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(cells)
    return text.getvalue().encode()


class _ParquetWriter:
    def __init__(self, sink: IO[bytes] | io.RawIOBase) -> None:
        self._writer = pq.ParquetWriter(sink, _PARQUET_SCHEMA, write_page_checksum=True)
        self._rows: list[Mapping[str, Any]] = []

    def write(self, item: Mapping[str, Any]) -> None:
        self._rows.append(item)
        if len(self._rows) >= _PARQUET_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=_PARQUET_SCHEMA))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def export_writer(fmt: ExportFormat, sink: IO[bytes] | io.RawIOBase) -> ExportWriter:
    """A writer of ``fmt`` onto ``sink``."""
    writers: dict[str, type[_JsonlWriter | _CsvWriter | _ParquetWriter]] = {
        "jsonl": _JsonlWriter,
        "csv": _CsvWriter,
        "parquet": _ParquetWriter,
    }
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    return writers[fmt](sink)


def write_export(fmt: ExportFormat, items: Iterable[Mapping[str, Any]], sink: IO[bytes]) -> None:
    """Write every item of an export to ``sink``."""
    writer = export_writer(fmt, sink)
    for item in items:
        writer.write(item)
    writer.close()


def read_export(path: Path) -> Iterator[dict[str, Any]]:
    """The items of an export file, whatever its format.

    JSONL and CSV must be byte for byte in the form the exporter writes, so that a byte that
    changes no value (a space, a quote) is still a change; Parquet pages carry checksums.

    Raises:
        ExportError: the file is in none of the formats, or is not in canonical form.
    """
    with path.open("rb") as probe:
        magic = probe.read(4)
    if magic == b"PAR1":
        yield from _read_parquet(path)
    elif magic.startswith(b"{"):
        yield from _read_jsonl(path)
    elif magic.startswith(b"kind"):
        yield from _read_csv(path)
    else:
        raise ExportError(f"{path} is not a JSONL, CSV or Parquet audit export")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ExportError(f"line {number} is not JSON: {exc}") from exc
            if not isinstance(item, dict) or canonical_json(item) + b"\n" != line:
                raise ExportError(f"line {number} is not a canonical export item")
            yield item


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding="utf-8", newline="") as text, path.open("rb") as raw:
        rows = csv.reader(text)
        header = _csv_line(COLUMNS)
        if next(rows, None) != list(COLUMNS) or raw.read(len(header)) != header:
            raise ExportError("the CSV header row is not the export's columns")
        for number, cells in enumerate(rows, start=2):
            expected = _csv_line(cells)
            if len(cells) != len(COLUMNS) or raw.read(len(expected)) != expected:
                raise ExportError(f"row {number} is not a canonical export item")
            item: dict[str, Any] = {
                name: cell or None for name, cell in zip(COLUMNS, cells, strict=True)
            }
            if item["sequence"] is not None:
                try:
                    item["sequence"] = int(item["sequence"])
                except ValueError as exc:
                    raise ExportError(f"row {number}: the sequence is not a number") from exc
            yield item
        if raw.read(1):
            raise ExportError("the CSV has bytes after its last row")


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        if parquet.schema_arrow != _PARQUET_SCHEMA:
            raise ExportError("the Parquet schema is not the export's columns")
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH):
            yield from batch.to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise ExportError(f"the Parquet file cannot be read: {exc}") from exc


def verify_export(path: Path, public_key: Ed25519PublicKey) -> Verification:
    """Verify an export file offline, with only the log's public key."""
    try:
        return _verify_items(read_export(path), public_key)
    except ExportError as exc:
        return Verification(valid=False, size=0, root_hash="", problem=str(exc))


def _verify_items(items: Iterator[dict[str, Any]], public_key: Ed25519PublicKey) -> Verification:
    digest = hashlib.sha256()
    first = next(items, None)
    if first is None or first.get("kind") != "header":
        raise ExportError("the export does not start with its header")
    digest.update(canonical_json(first) + b"\n")
    header = _header(first, public_key)
    checkpoint, start, end = header["checkpoint"], header["start"], header["end"]
    filters = ExportFilter.from_json(header["filters"])
    check = ChainCheck(header["left"], header["prev_hash"])
    trailer: dict[str, Any] | None = None
    for item in items:
        if trailer is not None:
            check.fail(None, "items follow the trailer")
            break
        kind, sequence = item.get("kind"), item.get("sequence")
        if kind == "trailer":
            trailer = item
            continue
        digest.update(canonical_json(item) + b"\n")
        if not check.ok:
            continue
        if not isinstance(sequence, int) or not start <= sequence < end:
            check.fail(sequence if isinstance(sequence, int) else None, "a record is out of range")
        elif kind == "record":
            _check_record(check, sequence, item, filters)
        elif kind == "elided":
            _check_elided(check, sequence, item)
        else:
            check.fail(sequence, f"item {sequence} has unknown kind {kind!r}")
    result = check.finish()
    if check.ok and result.size != end:
        check.fail(result.size, f"the export stops at record {result.size}, not {end}")
    if check.ok:
        known = dict(check.frontier.ranges())
        known.update(header["right"])
        if root_from_ranges(checkpoint.size, known) != checkpoint.root_hash:
            check.fail(end - 1, "the records do not produce the signed checkpoint's root")
    if check.ok:
        _check_trailer(check, trailer, digest.hexdigest(), public_key)
    return Verification(
        valid=check.ok,
        size=end - start,
        root_hash=checkpoint.root_hash.hex(),
        first_invalid=check.first_invalid,
        problem=check.problem,
        records=check.records,
    )


def _header(item: Mapping[str, Any], public_key: Ed25519PublicKey) -> dict[str, Any]:
    try:
        meta = json.loads(item["meta"])
        if meta["format"] != EXPORT_FORMAT:
            raise ExportError(f"not a {EXPORT_FORMAT} export")
        checkpoint = Checkpoint.from_json(meta["checkpoint"])
        start, end = int(meta["start"]), int(meta["end"])
        left = Frontier(start, [bytes.fromhex(h) for h in meta["left"]])
        right = {(int(lo), int(hi)): bytes.fromhex(h) for lo, hi, h in meta["right"]}
        prev_hash = bytes.fromhex(meta["prev_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"malformed export header: {exc}") from exc
    if not verify_signature(public_key, checkpoint.signature, checkpoint.note):
        raise ExportError("the checkpoint is not signed by the given public key")
    if not 0 <= start <= end <= checkpoint.size or len(prev_hash) != 32:
        raise ExportError("the export range does not fit its checkpoint")
    if sorted(right) != subtree_ranges(end, checkpoint.size, checkpoint.size):
        raise ExportError("the right-hand subtrees do not cover the rest of the tree")
    if any(len(h) != 32 for h in right.values()):
        raise ExportError("a right-hand subtree hash is not 32 bytes")
    return {
        "checkpoint": checkpoint,
        "start": start,
        "end": end,
        "left": left,
        "right": right,
        "prev_hash": prev_hash,
        "filters": meta.get("filters") or {},
    }


def _check_record(
    check: ChainCheck, sequence: int, item: Mapping[str, Any], filters: ExportFilter
) -> None:
    try:
        leaf = base64.b64decode(item.get("leaf") or "", validate=True)
    except ValueError:
        check.fail(sequence, f"record {sequence}: the leaf is not base64")
        return
    if check.feed(sequence, leaf, fields={name: item.get(name) for name in _READABLE}) is None:
        return
    if not filters.matches(decode_leaf(leaf)[1]):
        check.fail(sequence, f"record {sequence} does not match the export's filters")


def _check_elided(check: ChainCheck, sequence: int, item: Mapping[str, Any]) -> None:
    if any(item.get(name) is not None for name in (*_READABLE, "leaf", "meta")):
        check.fail(sequence, f"elided record {sequence} carries content")
        return
    try:
        digest = bytes.fromhex(item.get("leaf_hash") or "")
    except ValueError:
        digest = b""
    if len(digest) != 32:
        check.fail(sequence, f"elided record {sequence} has no 32-byte leaf hash")
        return
    check.skip(sequence, digest)


def _check_trailer(
    check: ChainCheck,
    trailer: Mapping[str, Any] | None,
    digest: str,
    public_key: Ed25519PublicKey,
) -> None:
    if trailer is None:
        check.fail(None, "the export has no trailer (it was cut short)")
        return
    try:
        meta = json.loads(trailer["meta"])
        signature = base64.b64decode(meta["signature"], validate=True)
        stated = meta["digest"]
    except (KeyError, TypeError, ValueError):
        check.fail(None, "the trailer is malformed")
        return
    if stated != digest:
        check.fail(None, "the export's content does not match the digest in its trailer")
    elif not verify_signature(public_key, signature, _trailer_note(digest)):
        check.fail(None, "the trailer's signature does not verify")

"""Audit trail throughput: appends (committed, durable) and verification, next to raw SHA-256.

The reference is the raw SHA-256 hash chain over 256-byte records (``h = SHA-256(h || r)``),
measured in the same run. Appends are measured on a fresh SQLite store with
``synchronous=FULL`` (each commit is fsynced), by writer threads whose records are group
committed, and counted only once committed. Verification is measured twice: the chain and tree
over the stored leaves (what ``verify-export`` does per record, no field parsing), and the full
store verification behind ``GET /api/v1/audit/verify`` (every record parsed and its indexed
fields checked).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder is first on sys.path and its name would shadow the
# ``audit`` package: the repository root goes first, this folder (for _rows) last.
sys.path[0] = str(Path(__file__).resolve().parents[1])
sys.path.append(str(Path(__file__).resolve().parent))

import _rows  # noqa: E402
from sqlalchemy import event, select  # noqa: E402

from audit import (  # noqa: E402
    AuditEvent,
    ExportFilter,
    Verification,
    load_public_key,
    verify_export,
    verify_leaves,
)
from control_plane.audit_trail import AuditLog, ensure_audit_keys, load_audit_keys  # noqa: E402
from control_plane.settings import Settings  # noqa: E402
from control_plane.store import Database, upgrade  # noqa: E402
from control_plane.store.models import AuditRecord  # noqa: E402


def raw_chain_rate(records: int) -> float:
    """Records per second of a bare SHA-256 chain over 256-byte records."""
    data = [os.urandom(256) for _ in range(records)]
    digest = bytes(32)
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for record in data:
        digest = sha256(digest + record).digest()
    return records / (time.perf_counter() - started)


def _full_sync(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def append_rate(trail: AuditLog, writers: int, per_writer: int, batch: int) -> float:
    """Committed records/s from ``writers`` threads, each committing ``batch`` records a call."""
    payload = {"note": "x" * 120}

    def write(number: int) -> None:
        for i in range(per_writer):
            trail.commit(
                [
                    AuditEvent(
                        f"writer{number}", "bench.append", f"item:{i}", "ok", payload=payload
                    )
                    for _ in range(batch)
                ]
            )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return writers * per_writer * batch / (time.perf_counter() - started)


def _best(rounds: int, measure: Callable[[], float]) -> float:
    """The best rate of ``rounds`` measurements (the machine is shared; noise only slows)."""
    return max(measure() for _ in range(rounds))


def _timed(count: Callable[[], int]) -> float:
    started = time.perf_counter()
    done = count()
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--per-writer", type=int, default=150)
    parser.add_argument("--raw-records", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="end with the rows as JSON")
    args = parser.parse_args()
    rounds = args.rounds
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), run_worker=False)
        upgrade(settings.sqlalchemy_url)
        ensure_audit_keys(settings)
        db = Database(settings.sqlalchemy_url)
        event.listen(db.engine, "connect", _full_sync)
        trail = AuditLog(db, load_audit_keys(settings))
        key = load_public_key(trail.public_key_pem.encode())
        export = Path(folder) / "audit.jsonl"
        try:
            appends = _best(rounds, lambda: append_rate(trail, args.writers, args.per_writer, 1))
            batched = _best(rounds, lambda: append_rate(trail, 4, args.per_writer // 25, 100))
            trail.checkpoint()
            with db.session() as session:
                leaves = [bytes(x) for x in session.scalars(select(AuditRecord.leaf))]
            # The raw chain and the leaf verification alternate, so that load on a shared
            # machine weighs on both alike
            raw_rates, chain_rates = [], []
            for _ in range(rounds):
                raw_rates.append(raw_chain_rate(args.raw_records))
                chain_rates.append(_timed(lambda: _valid(verify_leaves(leaves)).records))
            raw, chain = max(raw_rates), max(chain_rates)
            stored = _best(rounds, lambda: _timed(lambda: _valid(trail.verify()).records))
            with export.open("wb") as sink:
                for chunk in trail.export("jsonl", ExportFilter()):
                    sink.write(chunk)
            exported = _best(
                rounds, lambda: _timed(lambda: _valid(verify_export(export, key)).records)
            )
        finally:
            trail.close()
            db.dispose()
    size = sum(len(leaf) for leaf in leaves) / len(leaves)
    print(f"records: {len(leaves)} of {size:.0f} bytes on average; best of {rounds} rounds")
    print(f"raw SHA-256 chain, 256-byte records:  {raw:12,.0f} records/s")
    print(
        f"append, SQLite synchronous=FULL, {args.writers} writers, group commit: "
        f"{appends:9,.0f} records/s  ({appends / raw:.2%} of raw; goal >= 5,000/s)"
    )
    print(
        f"append, SQLite synchronous=FULL, 4 writers of 100-record batches: "
        f"{batched:9,.0f} records/s  ({batched / raw:.2%} of raw; goal >= 5,000/s)"
    )
    print(
        f"verify chain + tree over the leaves (bytes only): {chain:12,.0f} records/s  "
        f"({chain / raw:.1%} of raw; goal >= 25%)"
    )
    print(
        f"verify the store (GET /audit/verify: + parse, field checks): {stored:9,.0f} "
        f"records/s  ({stored / raw:.1%} of raw)"
    )
    print(
        f"verify-export of a JSONL export (+ canonical form, signatures): {exported:9,.0f} "
        f"records/s  ({exported / raw:.1%} of raw)"
    )
    if args.json:
        raw_name, unit = "raw SHA-256 chain, 256-byte records", "records/s"
        _rows.emit(
            [
                _rows.row(
                    f"append, SQLite synchronous=FULL, {args.writers} writers",
                    appends,
                    unit,
                    raw,
                    raw_name,
                    goal=">= 5,000 records/s",
                    met=appends >= 5000,
                ),
                _rows.row(
                    "append, SQLite synchronous=FULL, 4 writers of 100-record batches",
                    batched,
                    unit,
                    raw,
                    raw_name,
                    goal=">= 5,000 records/s",
                    met=batched >= 5000,
                ),
                _rows.row(
                    "verify chain + tree over the leaves",
                    chain,
                    unit,
                    raw,
                    raw_name,
                    goal=">= 25% of raw",
                    met=chain >= 0.25 * raw,
                ),
                _rows.row("verify the store (GET /audit/verify)", stored, unit, raw, raw_name),
                _rows.row("verify-export of a JSONL export", exported, unit, raw, raw_name),
            ]
        )


def _valid(result: Verification) -> Verification:
    assert result.valid, result.problem
    return result


if __name__ == "__main__":
    main()

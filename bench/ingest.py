"""Governed ingest of 1 million rows next to a plain pyiceberg append of the same Arrow table.

Measures, in one run, on one embedded control plane (SQLite store, Iceberg SQL catalog on SQLite
with a local warehouse):

- governed: an ``ingest`` run on UCI Adult repeated to ``--rows`` rows, uploaded beforehand,
  from claim to success: schema capture, PII detection and column classification, the
  data-quality gate (evidently), pseudonyms of the sensitive columns, the Iceberg append, the
  dataset registration, audit and lineage;
- plain: ``Table.append`` of the same Arrow table with pyiceberg into a fresh table of a fresh
  SQL catalog.

Each round runs both, alternated, in fresh folders; the fastest round of each counts (the machine
is shared, and noise only slows). Every table is read back and must hold the rows given;
otherwise exit status 1. Goal: governance adds at most 2x to the plain append.

Run: ``.venv/bin/python bench/ingest.py [--rows 1000000] [--rounds 5] [--json]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

# Run as a script, this file's folder is first on sys.path and bench/audit.py would shadow the
# audit package: the repository root goes first, this folder (for _rows) last.
sys.path[0] = str(Path(__file__).resolve().parents[1])
sys.path.append(str(Path(__file__).resolve().parent))

import _rows  # noqa: E402
from pyiceberg.catalog.sql import SqlCatalog  # noqa: E402
from sqlalchemy import select  # noqa: E402

from control_plane.api.deps import Services  # noqa: E402
from control_plane.app import build_services  # noqa: E402
from control_plane.audit_trail import DecisionAudit  # noqa: E402
from control_plane.authorization import Caller, Guard  # noqa: E402
from control_plane.bootstrap import initialize  # noqa: E402
from control_plane.ingest.sources import UploadStore  # noqa: E402
from control_plane.runs import RunKind, RunState, RunSubmission, RunWorker  # noqa: E402
from control_plane.sample_data import read_adult  # noqa: E402
from control_plane.settings import Settings  # noqa: E402
from control_plane.store.models import Dataset, Principal, Run  # noqa: E402


def adult_rows(rows: int) -> pa.Table:
    """Adult repeated (and cut) to ``rows`` rows, in one chunk per column.

    Each copy's ``fnlwgt`` is shifted by a multiple of 10^7 (above any census weight), so the
    copies are not duplicates of each other and pass the quality gate as Adult itself does.
    """
    adult = read_adult()
    copies = -(-rows // adult.num_rows)
    weight = adult.schema.get_field_index("fnlwgt")
    shifted = [
        adult.set_column(weight, "fnlwgt", pc.add(adult.column("fnlwgt"), copy * 10_000_000))
        for copy in range(copies)
    ]
    return pa.concat_tables(shifted).slice(0, rows).combine_chunks()


def plain_append(table: pa.Table, folder: Path) -> tuple[float, int]:
    """Seconds of one pyiceberg append into a fresh table; and the rows read back."""
    (folder / "warehouse").mkdir(parents=True)
    catalog = SqlCatalog(
        "plain",
        uri=f"sqlite:///{folder / 'catalog.db'}",
        warehouse=(folder / "warehouse").as_uri(),
    )
    catalog.create_namespace("plain")
    iceberg = catalog.create_table("plain.adult", schema=table.schema)
    started = time.perf_counter()
    iceberg.append(table)
    seconds = time.perf_counter() - started
    return seconds, iceberg.scan().to_arrow().num_rows


def governed_ingest(table: pa.Table, folder: Path) -> tuple[float, int]:
    """Seconds from claim to success of an ingest run of ``table``; and its registered rows."""
    settings = Settings(data_dir=folder, run_worker=False, worker_id="bench")
    initialize(settings)
    services = build_services(settings)
    with services.db.session(write=True) as session:
        dataset = Dataset(
            name="adult",
            domain="retail",
            owner="admin",
            classification="confidential",
            created_by="admin",
        )
        session.add(dataset)
        session.flush()
        dataset_id = dataset.id
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    upload, _ = UploadStore(settings.uploads_dir).add_part(
        dataset_id, None, sink.getvalue().to_pybytes()
    )
    guard = _admin_guard(services)
    with services.db.session(write=True) as session:
        run = services.runs.submit(
            session,
            guard,
            RunSubmission(RunKind.INGEST, "dataset:adult", (), {"source": {"upload": upload}}),
        )
        run_id = run.id
    started = time.perf_counter()
    RunWorker(services.runs, "bench", 1.0).drain()
    seconds = time.perf_counter() - started
    with services.db.session() as session:
        finished = session.get_one(Run, run_id)
        if finished.state != RunState.SUCCEEDED:
            raise SystemExit(f"the governed ingest failed: {finished.error}")
        rows = session.get_one(Dataset, dataset_id).row_count or 0
    services.audit.close()
    services.db.dispose()
    return seconds, rows


def _admin_guard(services: Services) -> Guard:
    """The bootstrap admin's guard, as a request would bind it."""
    with services.db.session() as session:
        admin = session.scalars(select(Principal).where(Principal.name == "admin")).one()
        engine = services.authorization.engine(session)
        caller = Caller(admin.id, admin.name, admin.kind, dict(admin.attributes))
    return Guard(engine, caller, DecisionAudit(services.audit), "bench")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON last")
    args = parser.parse_args()
    table = adult_rows(args.rows)
    print(f"{args.rows:,} rows of Adult, {table.nbytes / 2**20:.0f} MiB in Arrow")
    plain_times, governed_times, wrong = [], [], False
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="govplane-bench-ingest-") as folder:
            plain_seconds, plain_rows = plain_append(table, Path(folder) / "plain")
            governed_seconds, governed_rows = governed_ingest(table, Path(folder) / "governed")
        print(
            f"round {round_}: plain {plain_seconds:.2f} s, governed {governed_seconds:.2f} s "
            f"({governed_seconds / plain_seconds:.2f}x)"
        )
        if plain_rows != args.rows or governed_rows != args.rows:
            print(f"rows read back: plain {plain_rows}, governed {governed_rows}", file=sys.stderr)
            wrong = True
        plain_times.append(plain_seconds)
        governed_times.append(governed_seconds)
    plain_seconds, governed_seconds = min(plain_times), min(governed_times)
    plain_rate = args.rows / plain_seconds
    governed_rate = args.rows / governed_seconds
    print(f"best of {args.rounds} rounds")
    print(f"plain pyiceberg append: {plain_seconds:.2f} s, {plain_rate:,.0f} rows/s")
    print(f"governed ingest run:    {governed_seconds:.2f} s, {governed_rate:,.0f} rows/s")
    print(f"governance costs {governed_seconds / plain_seconds:.2f}x the plain append")
    if args.json:
        _rows.emit(
            [
                _rows.row(
                    "governed ingest, 1M Adult rows",
                    governed_rate,
                    "rows/s",
                    plain_rate,
                    "plain pyiceberg append",
                    goal="at most 2x the plain append's time",
                    met=governed_seconds <= 2 * plain_seconds,
                )
            ]
        )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

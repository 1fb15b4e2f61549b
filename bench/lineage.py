"""Lineage ingestion through HTTP and upstream queries on a 100,000-node graph.

Measures, in one run, on one embedded (SQLite) control plane served by a real uvicorn process:

- ingestion: OpenLineage RunEvents per second POSTed by concurrent clients, one event per
  request to ``/api/v1/lineage`` (as Marquez takes them) and 100 per request to
  ``/api/v1/lineage/batch``, next to the same server's bare request rate (``GET /health``) and
  the raw SQLite rate of writing the same rows (event, nodes, edges) with the sqlite3 module,
  one transaction per event;
- queries: latency of depth-10 upstream queries on a generated 100,000-node graph, through
  ``GET /api/v1/lineage/graph`` and through the library (``lineage.traverse`` on the store),
  next to a plain in-memory BFS over a dict of the same edges. Every answer of the store is
  checked against the plain BFS (same node set); a difference fails the run with exit status 1.

The ingestion goal (1,000 events/s) is judged on the batch endpoint. One event per request
cannot be faster than the server answers bare requests (``GET /health``, printed next to it),
and on a 2-core machine that shares its cores with the clients, that is a few hundred requests/s.

Run: ``.venv/bin/python bench/lineage.py [--events 4000 --clients 16 --nodes 100000]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from _rows import emit, row

# Run as a script, this file's folder is first on sys.path and its name would shadow the lineage
# package: look in the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from control_plane.bootstrap import initialize  # noqa: E402
from control_plane.launcher import serve  # noqa: E402
from control_plane.lineage import StoredGraph  # noqa: E402
from control_plane.settings import Settings  # noqa: E402
from control_plane.store import Database  # noqa: E402
from control_plane.store.models import LineageEdge, LineageNode  # noqa: E402
from lineage import Direction, traverse  # noqa: E402

PRODUCER = "https://example.org/bench"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(index: int) -> dict[str, Any]:
    facet = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
        "fields": [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DOUBLE"}],
    }
    return {
        "eventType": "COMPLETE",
        "eventTime": (T0 + timedelta(milliseconds=index)).isoformat(),
        "producer": PRODUCER,
        "schemaURL": SCHEMA,
        "run": {"runId": str(uuid.uuid4()), "facets": {}},
        "job": {"namespace": "bench", "name": f"job{index % 500}"},
        "inputs": [
            {"namespace": "warehouse", "name": f"in{index % 997}"},
            {"namespace": "warehouse", "name": f"in{index % 991}"},
        ],
        "outputs": [
            {"namespace": "warehouse", "name": f"out{index % 1009}", "facets": {"schema": facet}}
        ],
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def raw_sqlite_rate(events: list[dict[str, Any]], path: Path) -> float:
    """Events/s writing each event's rows (event, nodes, edges) with plain sqlite3."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, run_id TEXT, event_type TEXT,"
        " event_time TEXT, payload TEXT, UNIQUE (run_id, event_type, event_time));"
        "CREATE TABLE nodes (id TEXT PRIMARY KEY, facets TEXT);"
        "CREATE TABLE edges (key TEXT PRIMARY KEY, source TEXT, target TEXT, kind TEXT);"
        "CREATE INDEX edges_source ON edges (source); CREATE INDEX edges_target ON edges (target);"
    )
    start = time.perf_counter()
    for event in events:
        job = f"job:{event['job']['namespace']}:{event['job']['name']}"
        ins = [f"dataset:{d['namespace']}:{d['name']}" for d in event["inputs"]]
        outs = [f"dataset:{d['namespace']}:{d['name']}" for d in event["outputs"]]
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT OR IGNORE INTO events (run_id, event_type, event_time, payload)"
            " VALUES (?, ?, ?, ?)",
            (event["run"]["runId"], event["eventType"], event["eventTime"], json.dumps(event)),
        )
        connection.executemany(
            "INSERT INTO nodes VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET facets = excluded.facets",
            [(node, "{}") for node in [job, *ins, *outs]],
        )
        connection.executemany(
            "INSERT OR REPLACE INTO edges VALUES (?, ?, ?, ?)",
            [
                (hashlib.sha256(f"{s}{t}".encode()).hexdigest(), s, t, kind)
                for s, t, kind in [(i, job, "input") for i in ins]
                + [(job, o, "output") for o in outs]
            ],
        )
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - start
    connection.close()
    return len(events) / elapsed


def http_rate(
    url: str, token: str, path: str, bodies: list[bytes] | None, requests: int, clients: int
) -> float:
    """Requests/s from ``clients`` concurrent keep-alive clients (GET when no bodies)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    failures: list[str] = []

    def send(indexes: range) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for index in indexes:
                response = client.post(path, content=bodies[index]) if bodies else client.get(path)
                if response.status_code not in (200, 201):
                    failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [
        threading.Thread(target=send, args=(range(n, requests, clients),)) for n in range(clients)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} requests to {path} failed, e.g. {failures[0]}")
    return requests / elapsed


def build_graph(db: Database, nodes: int, fan_in: int, seed: int) -> dict[str, list[str]]:
    """A layered graph of ``nodes`` nodes (half datasets, half jobs), bulk-written to the store.

    Each layer has 500 datasets, each written by its own job that reads ``fan_in`` random
    datasets of the layer before. Returns the upstream adjacency (target -> sources).
    """
    rng = random.Random(seed)
    width = 500
    layers = nodes // (2 * width)
    upstream: dict[str, list[str]] = {}
    node_rows: list[dict[str, Any]] = []
    edge_rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for layer in range(layers):
        for index in range(width):
            dataset = f"dataset:lake:l{layer}_{index}"
            job = f"job:bench:make_l{layer}_{index}"
            for node_id, kind in ((dataset, "dataset"), (job, "job")):
                namespace, name = node_id.split(":")[1:]
                node_rows.append(
                    {
                        "id": node_id,
                        "type": kind,
                        "namespace": namespace,
                        "name": name,
                        "domain": "*",
                        "facets": {},
                        "first_seen": T0,
                        "updated_at": now,
                    }
                )
            sources = (
                [f"dataset:lake:l{layer - 1}_{i}" for i in rng.sample(range(width), fan_in)]
                if layer
                else []
            )
            upstream[dataset] = [job]
            upstream[job] = sources
            pairs = [(job, dataset, "output")] + [(s, job, "input") for s in sources]
            for source, target, kind in pairs:
                key = hashlib.sha256(f"{source}\x1f{target}\x1f{kind}\x1f\x1f".encode()).hexdigest()
                edge_rows.append(
                    {
                        "key": key,
                        "source": source,
                        "target": target,
                        "kind": kind,
                        "source_field": "",
                        "target_field": "",
                        "run_id": str(uuid.uuid4()),
                        "facets": {},
                        "first_seen": T0,
                        "last_seen": T0,
                    }
                )
    with db.session(write=True) as session:
        for start in range(0, len(node_rows), 5000):
            session.execute(LineageNode.__table__.insert(), node_rows[start : start + 5000])
        for start in range(0, len(edge_rows), 5000):
            session.execute(LineageEdge.__table__.insert(), edge_rows[start : start + 5000])
    return upstream


def plain_bfs(upstream: dict[str, list[str]], root: str, depth: int) -> set[str]:
    seen = {root}
    queue = deque([(root, 0)])
    while queue:
        node, hops = queue.popleft()
        if hops < depth:
            for other in upstream.get(node, ()):
                if other not in seen:
                    seen.add(other)
                    queue.append((other, hops + 1))
    return seen


def _timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--fan-in", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="end with the rows as JSON")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="govplane-bench-lineage-"))
    settings = Settings(data_dir=work / "data")
    token = initialize(settings).admin_token

    print(f"building a {args.nodes:,}-node lineage graph (fan-in {args.fan_in}) ...", flush=True)
    db = Database(settings.sqlalchemy_url)
    upstream = build_graph(db, args.nodes, args.fan_in, seed=1)
    db.dispose()
    # The harness's own 100,000-entry adjacency would otherwise be rescanned by every full
    # garbage collection inside the timed queries.
    gc.collect()
    gc.freeze()

    with serve(settings.data_dir) as server:
        url = server.url
        events = [_event(i) for i in range(2 * args.events)]
        raw = raw_sqlite_rate(events[: args.events], work / "raw.db")
        health = http_rate(url, token, "/api/v1/health", None, args.events, args.clients)
        single = [json.dumps(e).encode() for e in events[: args.events]]
        one = http_rate(url, token, "/api/v1/lineage", single, len(single), args.clients)
        batches = [
            json.dumps(events[i : i + args.batch]).encode()
            for i in range(args.events, 2 * args.events, args.batch)
        ]
        batched = args.batch * http_rate(
            url, token, "/api/v1/lineage/batch", batches, len(batches), args.clients
        )
        print(f"\ningestion, {args.events:,} events, {args.clients} concurrent HTTP clients")
        print(f"  govplane POST /lineage, 1 event/request  : {one:8,.0f} events/s")
        print(f"  govplane POST /lineage/batch, {args.batch}/request: {batched:8,.0f} events/s")
        print(f"  plain GET /health, same server, clients  : {health:8,.0f} requests/s")
        print(f"  raw sqlite3, same rows, 1 txn/event      : {raw:8,.0f} events/s")
        print(
            f"  one event per request runs at {one / health:.0%} of the server's bare request "
            f"rate; batched at {batched / raw:.0%} of raw sqlite3"
        )

        rng = random.Random(2)
        layers = args.nodes // 1000
        roots = [
            f"dataset:lake:l{rng.randrange(layers // 2, layers)}_{rng.randrange(500)}"
            for _ in range(args.queries)
        ]
        plain, library, http, health_latency = [], [], [], []
        sizes = []
        mismatches = 0
        db = Database(settings.sqlalchemy_url)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for root in roots:
                took, want = _timed(lambda root=root: plain_bfs(upstream, root, 10))
                plain.append(took)
                with db.session() as session:
                    took, found = _timed(
                        lambda session=session, root=root: traverse(
                            StoredGraph(session), root, Direction.UPSTREAM, 10, 5000
                        )
                    )
                library.append(took)
                took, response = _timed(
                    lambda root=root: client.get(
                        "/api/v1/lineage/graph",
                        params={"node": root, "direction": "upstream", "depth": 10},
                    )
                )
                http.append(took)
                health_latency.append(_timed(lambda: client.get("/api/v1/health"))[0])
                got = {n.ref.id for n in found.nodes}
                over_http = {n["id"] for n in response.json()["nodes"]}
                mismatches += got != want or over_http != want
                sizes.append(len(want))
        db.dispose()
        print(
            f"\nupstream depth-10 queries on {args.nodes:,} nodes, {len(roots)} random roots "
            f"(answers of {min(sizes)}-{max(sizes)} nodes, median {statistics.median(sizes):.0f})"
        )
        for name, values in (
            ("govplane GET /lineage/graph (HTTP)", http),
            ("lineage.traverse on the store", library),
            ("plain in-memory BFS (dict)", plain),
            ("GET /health, same client, same loop", health_latency),
        ):
            print(
                f"  {name:<36}: p50 {_percentile(values, 0.5):8.2f} ms   "
                f"p99 {_percentile(values, 0.99):8.2f} ms"
            )
        if mismatches:
            print(f"\nFAIL: {mismatches} answers differ from the plain BFS")
            return 1
        print("\nevery answer matches the plain BFS")
        if args.json:
            http_p99, health_p99 = _percentile(http, 0.99), _percentile(health_latency, 0.99)
            library_p99 = _percentile(library, 0.99)
            emit(
                [
                    row("POST /lineage, 1 event/request", one, "events/s", health, "GET /health"),
                    row(
                        f"POST /lineage/batch, {args.batch}/request",
                        batched,
                        "events/s",
                        raw,
                        "raw sqlite3, 1 txn/event",
                        ">= 1000 events/s",
                        batched >= 1000,
                    ),
                    row(
                        "GET /lineage/graph depth 10 p99",
                        http_p99,
                        "ms",
                        health_p99,
                        "GET /health",
                        "p99 < 100 ms",
                        http_p99 < 100,
                    ),
                    row(
                        "lineage.traverse depth 10 p99",
                        library_p99,
                        "ms",
                        _percentile(plain, 0.99),
                        "plain in-memory BFS",
                    ),
                ]
            )
        return 0


if __name__ == "__main__":
    sys.exit(main())

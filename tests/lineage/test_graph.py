"""Graph queries against the stored graph, on generated graphs whose answer a plain BFS gives."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from control_plane.lineage import LineageStore, StoredGraph
from control_plane.store import Database
from lineage import Direction, EdgeKind, traverse, validate_run_event
from tests.lineage.events import at, ds, run_event


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _ingest(db: Database, *events: dict[str, Any]) -> None:
    store = LineageStore()
    for event in events:
        with db.session(write=True) as session:
            store.ingest(session, validate_run_event(event), event, "retail", "test")


def _plain_bfs(adjacency: Mapping[str, set[str]], root: str, depth: int) -> set[str]:
    seen = {root}
    queue = deque([(root, 0)])
    while queue:
        node, hops = queue.popleft()
        if hops == depth:
            continue
        for other in adjacency.get(node, ()):
            if other not in seen:
                seen.add(other)
                queue.append((other, hops + 1))
    return seen


def test_traversals_match_a_plain_bfs_on_a_random_cyclic_graph(db: Database) -> None:
    # Given 120 jobs each reading and writing random datasets among 80 (so with cycles)
    rng = random.Random(7)
    datasets = [f"t{i}" for i in range(80)]
    downstream: dict[str, set[str]] = {}
    upstream: dict[str, set[str]] = {}
    events = []
    for index in range(120):
        job = f"job{index}"
        reads = rng.sample(datasets, rng.randint(1, 3))
        writes = rng.sample(datasets, rng.randint(1, 2))
        events.append(run_event(job, reads, writes, time=at(index)))
        job_id = f"job:etl:{job}"
        for name in reads:
            downstream.setdefault(ds(name), set()).add(job_id)
            upstream.setdefault(job_id, set()).add(ds(name))
        for name in writes:
            downstream.setdefault(job_id, set()).add(ds(name))
            upstream.setdefault(ds(name), set()).add(job_id)
    _ingest(db, *events)
    roots = [ds(name) for name in rng.sample(datasets, 10)] + ["job:etl:job3", "job:etl:job77"]
    with db.session() as session:
        graph = StoredGraph(session)
        for root in roots:
            for depth in (1, 2, 5, 50):
                # When the stored graph is traversed
                up = traverse(graph, root, Direction.UPSTREAM, depth, max_nodes=10_000)
                down = traverse(graph, root, Direction.DOWNSTREAM, depth, max_nodes=10_000)
                both = traverse(graph, root, Direction.BOTH, depth, max_nodes=10_000)
                # Then it finds exactly what a plain BFS over the same edges finds
                want_up = _plain_bfs(upstream, root, depth)
                want_down = _plain_bfs(downstream, root, depth)
                assert {n.ref.id for n in up.nodes} == want_up
                assert {n.ref.id for n in down.nodes} == want_down
                assert {n.ref.id for n in both.nodes} == want_up | want_down
                assert not up.truncated
                # and every edge it returns joins two returned nodes
                ids = {n.ref.id for n in both.nodes}
                assert all(e.source in ids and e.target in ids for e in both.edges)


def test_a_layered_graph_answers_by_construction(db: Database) -> None:
    # Given 12 layers of 5 datasets, each dataset of layer k+1 made by a job from all of layer k
    width, layers = 5, 12
    events = [
        run_event(
            f"make_{k + 1}_{j}",
            [f"l{k}_{i}" for i in range(width)],
            [f"l{k + 1}_{j}"],
            time=at(k),
        )
        for k in range(layers - 1)
        for j in range(width)
    ]
    _ingest(db, *events)
    with db.session() as session:
        graph = StoredGraph(session)
        # Then depth 2d upstream of the last layer reaches back exactly d layers
        for hops in (1, 2, 4, 10):
            found = traverse(graph, ds("l11_0"), Direction.UPSTREAM, 2 * hops, 10_000)
            datasets = {n.ref.id for n in found.nodes if n.ref.type == "dataset"}
            want = {ds("l11_0")} | {
                ds(f"l{11 - d}_{i}") for d in range(1, hops + 1) for i in range(width)
            }
            assert datasets == want
            jobs = [n for n in found.nodes if n.ref.type == "job"]
            assert len(jobs) == 1 + width * (hops - 1)


def test_the_node_cap_truncates_instead_of_growing(db: Database) -> None:
    # Given one dataset read by 50 jobs
    _ingest(db, *[run_event(f"fan{i}", ["hub"], [f"leaf{i}"], time=at(i)) for i in range(50)])
    with db.session() as session:
        found = traverse(StoredGraph(session), ds("hub"), Direction.DOWNSTREAM, 10, max_nodes=20)
    assert found.truncated
    assert len(found.nodes) == 20


def test_a_cycle_ends(db: Database) -> None:
    # Given a -> x -> b -> y -> a
    _ingest(db, run_event("x", ["a"], ["b"]), run_event("y", ["b"], ["a"], time=at(1)))
    with db.session() as session:
        found = traverse(StoredGraph(session), ds("a"), Direction.DOWNSTREAM, 50, 1000)
    assert {n.ref.id for n in found.nodes} == {ds("a"), ds("b"), "job:etl:x", "job:etl:y"}
    assert len(found.edges) == 4


def test_time_travel_sees_the_graph_as_it_was(db: Database) -> None:
    # Given raw -> clean at minute 0 and clean -> report at minute 10
    _ingest(
        db,
        run_event("clean", ["raw"], ["clean"], time=at(0)),
        run_event("report", ["clean"], ["report"], time=at(10)),
    )
    with db.session() as session:
        graph = StoredGraph(session)
        before = traverse(graph, ds("raw"), Direction.DOWNSTREAM, 10, 100, as_of=at(5))
        after = traverse(graph, ds("raw"), Direction.DOWNSTREAM, 10, 100, as_of=at(10))
        now = traverse(graph, ds("raw"), Direction.DOWNSTREAM, 10, 100)
        with pytest.raises(LookupError):
            traverse(graph, ds("report"), Direction.UPSTREAM, 10, 100, as_of=at(5))
    assert {n.ref.id for n in before.nodes} == {ds("raw"), "job:etl:clean", ds("clean")}
    assert ds("report") in {n.ref.id for n in after.nodes}
    assert {n.ref.id for n in now.nodes} == {n.ref.id for n in after.nodes}


def test_an_edge_seen_again_earlier_moves_its_first_time_back(db: Database) -> None:
    _ingest(
        db,
        run_event("clean", ["raw"], ["clean"], time=at(10)),
        run_event("clean", ["raw"], ["clean"], time=at(2)),
    )
    with db.session() as session:
        found = traverse(StoredGraph(session), ds("raw"), Direction.DOWNSTREAM, 2, 100, at(3))
    assert ds("clean") in {n.ref.id for n in found.nodes}


def test_column_lineage_becomes_column_edges(db: Database) -> None:
    # Given clean.id from raw.id and clean.age_band from raw.age
    _ingest(
        db,
        run_event(
            "clean",
            ["raw"],
            ["clean"],
            columns={"id": [("raw", "id")], "age_band": [("raw", "age"), ("ages", "band")]},
        ),
    )
    with db.session() as session:
        found = traverse(StoredGraph(session), ds("clean"), Direction.UPSTREAM, 1, 100)
    columns = {
        (e.source, e.source_field, e.target_field) for e in found.edges if e.kind == EdgeKind.COLUMN
    }
    assert columns == {
        (ds("raw"), "id", "id"),
        (ds("raw"), "age", "age_band"),
        (ds("ages"), "band", "age_band"),
    }
    # A column source that is not an input of the event is still a node of the graph
    assert ds("ages") in {n.ref.id for n in found.nodes}


def test_facets_merge_and_deleted_facets_go(db: Database) -> None:
    first = run_event("clean", ["raw"], ["clean"], time=at(0))
    first["outputs"][0]["facets"] = {
        "documentation": {
            "_producer": "https://e.org",
            "_schemaURL": "https://e.org/d.json",
            "description": "clean rows",
        },
        "owner": {"_producer": "https://e.org", "_schemaURL": "https://e.org/o.json", "n": 1},
    }
    second = run_event("clean", ["raw"], ["clean"], time=at(1))
    second["outputs"][0]["facets"] = {
        "owner": {
            "_producer": "https://e.org",
            "_schemaURL": "https://e.org/o.json",
            "_deleted": True,
        },
    }
    _ingest(db, first, second)
    with db.session() as session:
        (node,) = StoredGraph(session).nodes([ds("clean")], None)
    assert set(node.facets) == {"documentation"}

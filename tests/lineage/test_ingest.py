"""``POST /lineage``: OpenLineage RunEvents in, validated, stored once, authorized."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import as_caller, principal_token
from tests.lineage.events import ds, run_event


def test_a_valid_event_is_stored_and_builds_the_graph(client: TestClient) -> None:
    # Given a RunEvent of a job reading raw and writing clean
    event = run_event("clean", inputs=["raw"], outputs=["clean"])
    # When it is posted
    response = client.post("/api/v1/lineage", json=event)
    # Then it is created, and the graph links raw -> job -> clean
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created"
    graph = client.get(
        "/api/v1/lineage/graph", params={"node": ds("clean"), "direction": "upstream"}
    ).json()
    assert {n["id"] for n in graph["nodes"]} == {ds("clean"), "job:etl:clean", ds("raw")}
    assert {(e["source"], e["target"], e["kind"]) for e in graph["edges"]} == {
        (ds("raw"), "job:etl:clean", "input"),
        ("job:etl:clean", ds("clean"), "output"),
    }


def test_the_same_event_twice_is_stored_once(client: TestClient) -> None:
    event = run_event("clean", inputs=["raw"], outputs=["clean"])
    first = client.post("/api/v1/lineage", json=event)
    # The same instant written another way is the same event
    again = copy.deepcopy(event)
    again["eventTime"] = event["eventTime"].replace("+00:00", "Z")
    second = client.post("/api/v1/lineage", json=again)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "event_id": None}
    # A START of the same run at the same time is a different event
    start = copy.deepcopy(event)
    start["eventType"] = "START"
    assert client.post("/api/v1/lineage", json=start).status_code == 201


def _without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    holder = broken
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return broken


def _with(event: dict[str, Any], value: Any, *path: str | int) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    holder = broken
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return broken


GOOD = run_event("clean", inputs=["raw"], outputs=["clean"], columns={"id": [("raw", "id")]})
MALFORMED = {
    "no run": (_without(GOOD, "run"), "run"),
    "no job": (_without(GOOD, "job"), "job"),
    "no job name": (_without(GOOD, "job", "name"), "job.name"),
    "empty namespace": (_with(GOOD, "", "job", "namespace"), "job.namespace"),
    "no eventTime": (_without(GOOD, "eventTime"), "eventTime"),
    "eventTime without zone": (_with(GOOD, "2026-01-01T00:00:00", "eventTime"), "eventTime"),
    "eventTime not a time": (_with(GOOD, "yesterday", "eventTime"), "eventTime"),
    "eventTime a date only": (_with(GOOD, "2026-01-01", "eventTime"), "eventTime"),
    "unknown eventType": (_with(GOOD, "FINISHED", "eventType"), "eventType"),
    "runId not a UUID": (_with(GOOD, "run-42", "run", "runId"), "run.runId"),
    "producer not a URI": (_with(GOOD, "my producer", "producer"), "producer"),
    "no schemaURL": (_without(GOOD, "schemaURL"), "schemaURL"),
    "facet not an object": (_with(GOOD, {"x": 3}, "run", "facets"), "run.facets.x"),
    "facet without _producer": (
        _with(GOOD, {"x": {"_schemaURL": "https://e.org/s.json"}}, "run", "facets"),
        "run.facets.x._producer",
    ),
    "inputs not a list": (_with(GOOD, {"name": "raw"}, "inputs"), "inputs"),
    "input without namespace": (_without(GOOD, "inputs", 0, "namespace"), "inputs.0.namespace"),
    "column lineage without fields": (
        _with(
            GOOD,
            {"_producer": "https://e.org", "_schemaURL": "https://e.org/s.json"},
            "outputs",
            0,
            "facets",
            "columnLineage",
        ),
        "outputs.0.facets.columnLineage.fields",
    ),
    "node id too long": (_with(GOOD, "é" * 1000, "inputs", 0, "name"), "inputs.0"),
    "not an object": ([GOOD], ""),
}


@pytest.mark.parametrize("case", sorted(MALFORMED), ids=sorted(MALFORMED))
def test_a_malformed_event_is_refused_with_the_place_and_reason(
    client: TestClient, case: str
) -> None:
    body, where = MALFORMED[case]
    response = client.post("/api/v1/lineage", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"].startswith("not a valid OpenLineage RunEvent")
    assert where in {".".join(str(p) for p in e["loc"]) for e in problem["errors"]}
    # Nothing was written: the graph has no node of the event's job
    graph = client.get("/api/v1/lineage/graph", params={"node": "job:etl:clean"})
    assert graph.status_code == 404


def test_a_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/api/v1/lineage", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_posting_lineage_needs_a_token_and_the_write_permission(client: TestClient) -> None:
    event = run_event("clean", inputs=["raw"], outputs=["clean"])
    anonymous = client.post("/api/v1/lineage", json=event, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    dana = principal_token(client, "dana", [("data_scientist", "retail")])
    forbidden = client.post(
        "/api/v1/lineage", params={"domain": "retail"}, json=event, headers=as_caller(client, dana)
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["rule"] == "default deny: no rule allows"
    airflow = principal_token(client, "airflow", [("lineage_producer", "retail")])
    elsewhere = client.post(
        "/api/v1/lineage",
        params={"domain": "health"},
        json=event,
        headers=as_caller(client, airflow),
    )
    assert elsewhere.status_code == 403
    allowed = client.post(
        "/api/v1/lineage",
        params={"domain": "retail"},
        json=event,
        headers=as_caller(client, airflow),
    )
    assert allowed.status_code == 201, allowed.text


def test_graph_readers_see_only_nodes_of_domains_they_may_read(client: TestClient) -> None:
    # Given lineage posted in two domains, the retail output fed by a health dataset
    health = run_event("ingest", outputs=["patients"])
    retail = run_event("score", inputs=["patients"], outputs=["scores"])
    assert client.post("/api/v1/lineage", params={"domain": "health"}, json=health).is_success
    assert client.post("/api/v1/lineage", params={"domain": "retail"}, json=retail).is_success
    dana = principal_token(client, "dana", [("data_scientist", "retail")])
    # When a retail data scientist asks where the scores come from
    graph = client.get(
        "/api/v1/lineage/graph",
        params={"node": ds("scores"), "direction": "upstream"},
        headers=as_caller(client, dana),
    ).json()
    # Then the health nodes are hidden and counted, not shown
    ids = {n["id"] for n in graph["nodes"]}
    assert ids == {ds("scores"), "job:etl:score"}
    assert graph["hidden"] == 2
    # And a health node itself is refused
    refused = client.get(
        "/api/v1/lineage/graph", params={"node": ds("patients")}, headers=as_caller(client, dana)
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"node": "table:x"}, 422),
        ({"node": "dataset"}, 422),
        ({"node": ds("raw"), "depth": 0}, 422),
        ({"node": ds("raw"), "depth": 51}, 422),
        ({"node": ds("raw"), "direction": "sideways"}, 422),
        ({"node": ds("raw"), "as_of": "last week"}, 422),
        ({"node": ds("nowhere")}, 404),
    ],
)
def test_bad_graph_queries_are_named(
    client: TestClient, params: dict[str, Any], status: int
) -> None:
    client.post("/api/v1/lineage", json=run_event("clean", inputs=["raw"], outputs=["clean"]))
    response = client.get("/api/v1/lineage/graph", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_batch_is_stored_in_one_go_and_counts_duplicates(client: TestClient) -> None:
    events = [run_event(f"job{i}", inputs=["raw"], outputs=[f"out{i}"]) for i in range(3)]
    assert client.post("/api/v1/lineage", json=events[0]).status_code == 201
    response = client.post("/api/v1/lineage/batch", json=[*events, events[1]])
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["created"], body["duplicate"]) == (2, 2)
    assert [r["status"] for r in body["results"]] == [
        "duplicate",
        "created",
        "created",
        "duplicate",
    ]
    impact = client.get("/api/v1/lineage/impact", params={"node": ds("raw")}).json()
    assert impact["datasets"] == [ds("out0"), ds("out1"), ds("out2")]


def test_a_batch_with_one_bad_event_stores_none_and_names_it(client: TestClient) -> None:
    good = run_event("first", inputs=["raw"], outputs=["a"])
    bad = _with(run_event("second", inputs=["raw"], outputs=["b"]), "soon", "eventTime")
    response = client.post("/api/v1/lineage/batch", json=[good, bad])
    assert response.status_code == 422
    problem = response.json()
    assert "event 1" in problem["detail"]
    assert [1, "eventTime"] in [e["loc"] for e in problem["errors"]]
    assert client.get("/api/v1/lineage/graph", params={"node": ds("raw")}).status_code == 404


@pytest.mark.parametrize("body", [{"run": {}}, [GOOD] * 1001, "events"])
def test_a_batch_must_be_an_array_of_at_most_1000_events(client: TestClient, body: Any) -> None:
    response = client.post("/api/v1/lineage/batch", json=body)
    assert response.status_code in (413, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"

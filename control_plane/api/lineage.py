"""``/lineage``: the OpenLineage endpoint (same body as Marquez's) and graph queries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import Domain, ResponseModel
from control_plane.authorization import Guard
from control_plane.errors import InvalidInputError, NotFoundError
from control_plane.lineage.store import Ingested, StoredGraph
from lineage import (
    MAX_DEPTH,
    RFC3339,
    Direction,
    InvalidEventError,
    NodeType,
    RunEventModel,
    Subgraph,
    graph_delta,
    job_node,
    parse_event_time,
    traverse,
    validate_run_event,
)

router = APIRouter(prefix="/lineage", tags=["lineage"])


NodeId = Annotated[
    str,
    Query(
        min_length=3,
        max_length=2000,
        pattern=rf"^({'|'.join(NodeType)}):[^\x00]+$",
        description="dataset:NS:NAME, job:NS:NAME, model:NAME:VERSION or deployment:NAME.",
    ),
]
Depth = Annotated[int, Query(ge=1, le=MAX_DEPTH, description="Hops to follow.")]
AsOf = Annotated[
    str | None,
    Query(pattern=RFC3339, description="RFC 3339 time with a zone: the graph as it was then."),
]


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each ``$defs`` reference replaced by its definition (none is recursive)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                named = definitions[node["$ref"].rsplit("/", 1)[1]]
                return resolve({**named, **{k: v for k, v in node.items() if k != "$ref"}})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


RUN_EVENT = _inlined(RunEventModel.model_json_schema(by_alias=True))
"""The JSON schema of an OpenLineage RunEvent as this endpoint checks it."""


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


class Accepted(ResponseModel):
    status: str
    event_id: int | None


class NodeOut(ResponseModel):
    id: str
    type: str
    facets: dict[str, Any]


class EdgeOut(ResponseModel):
    source: str
    target: str
    kind: str
    source_field: str | None = None
    target_field: str | None = None
    run_id: str
    facets: dict[str, Any]


class GraphOut(ResponseModel):
    root: str
    direction: str
    depth: int
    as_of: datetime | None
    nodes: list[NodeOut]
    edges: list[EdgeOut]
    truncated: bool
    hidden: int


class ImpactOut(ResponseModel):
    root: str
    depth: int
    as_of: datetime | None
    datasets: list[str]
    jobs: list[str]
    models: list[str]
    deployments: list[str]
    truncated: bool
    hidden: int


MAX_BATCH = 1000


class BatchAccepted(ResponseModel):
    created: int
    duplicate: int
    results: list[Accepted]


def _store(
    services: ServicesDep, guard: Guard, payloads: list[Any], domain: str, batch: bool
) -> list[Ingested]:
    """Validate and authorize every event, then store them all in one transaction (or none)."""
    events = []
    for index, payload in enumerate(payloads):
        try:
            event = validate_run_event(payload)
            graph_delta(event, parse_event_time(event.eventTime))
            events.append(event)
        except InvalidEventError as exc:
            raise _invalid(exc, index if batch else None) from None
    for job in sorted({job_node(e.job.namespace, e.job.name).id for e in events}):
        guard.require("write", f"lineage:{job}", domain)
    return services.lineage_writer.write(
        list(zip(events, payloads, strict=True)), domain, guard.caller.name
    )


def _invalid(exc: InvalidEventError, index: int | None) -> InvalidInputError:
    errors = [{**e, "loc": [index, *e["loc"]]} if index is not None else e for e in exc.errors]
    where = f"event {index}: " if index is not None else ""
    return InvalidInputError(f"not a valid OpenLineage RunEvent: {where}{exc}", errors=errors)


def _accepted(stored: Ingested) -> Accepted:
    if stored.duplicate:
        return Accepted(status="duplicate", event_id=None)
    return Accepted(status="created", event_id=stored.event_id)


DomainParam = Annotated[Domain, Query(description="Domain the events' nodes belong to.")]


@router.post("", status_code=201, response_model=Accepted, openapi_extra=_json_body(RUN_EVENT))
def ingest(
    payload: Annotated[Any, Body(description="An OpenLineage RunEvent.")],
    services: ServicesDep,
    guard: GuardDep,
    response: Response,
    domain: DomainParam = "*",
) -> Accepted:
    """Store one RunEvent (201), or recognise one already stored (200)."""
    (stored,) = _store(services, guard, [payload], domain, batch=False)
    if stored.duplicate:
        response.status_code = 200
    return _accepted(stored)


@router.post(
    "/batch",
    status_code=201,
    openapi_extra=_json_body({"type": "array", "items": RUN_EVENT, "maxItems": MAX_BATCH}),
)
def ingest_batch(
    payloads: Annotated[
        list[Any], Body(max_length=MAX_BATCH, description="A JSON array of RunEvents.")
    ],
    services: ServicesDep,
    guard: GuardDep,
    domain: DomainParam = "*",
) -> BatchAccepted:
    """Store up to 1000 RunEvents in one transaction: all of them, or none if any is invalid."""
    results = [_accepted(s) for s in _store(services, guard, payloads, domain, batch=True)]
    created = sum(r.status == "created" for r in results)
    return BatchAccepted(created=created, duplicate=len(results) - created, results=results)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_event_time(value)
    except ValueError as exc:
        raise InvalidInputError(f"as_of: {exc}") from None


def visible_graph(
    services: ServicesDep,
    guard: Guard,
    node: str,
    direction: Direction,
    depth: int,
    as_of: datetime | None,
) -> tuple[Subgraph, set[str]]:
    """The traversal and the ids of the nodes the caller may see (the root it must)."""
    with services.db.session() as session:
        graph = StoredGraph(session)
        domains = graph.domains([node])
        if node not in domains:
            raise NotFoundError(f"no lineage node {node}")
        guard.require("read", f"lineage:{node}", domains[node])
        try:
            found = traverse(
                graph, node, direction, depth, services.settings.lineage_max_nodes, as_of
            )
        except LookupError:
            raise NotFoundError(f"no lineage node {node} as of {as_of}") from None
        domains = graph.domains([n.ref.id for n in found.nodes])
    visible = {
        node_id
        for node_id, domain in domains.items()
        if guard.decide("read", f"lineage:{node_id}", domain).allowed
    }
    return found, visible


@router.get("/graph")
def graph(
    services: ServicesDep,
    guard: GuardDep,
    node: NodeId,
    direction: Annotated[Direction, Query()] = Direction.BOTH,
    depth: Depth = 3,
    as_of: AsOf = None,
) -> GraphOut:
    at = _as_of(as_of)
    found, visible = visible_graph(services, guard, node, direction, depth, at)
    return GraphOut(
        root=node,
        direction=direction,
        depth=depth,
        as_of=at,
        nodes=[
            NodeOut(id=n.ref.id, type=n.ref.type, facets=dict(n.facets))
            for n in found.nodes
            if n.ref.id in visible
        ],
        edges=[
            EdgeOut(
                source=e.source,
                target=e.target,
                kind=e.kind,
                source_field=e.source_field or None,
                target_field=e.target_field or None,
                run_id=e.run_id,
                facets=dict(e.facets),
            )
            for e in found.edges
            if e.source in visible and e.target in visible
        ],
        truncated=found.truncated,
        hidden=len(found.nodes) - len(visible),
    )


@router.get("/impact")
def impact(
    services: ServicesDep,
    guard: GuardDep,
    node: NodeId,
    depth: Depth = 10,
    as_of: AsOf = None,
) -> ImpactOut:
    """Everything downstream of ``node``: the datasets, jobs, models and deployments it feeds."""
    at = _as_of(as_of)
    found, visible = visible_graph(services, guard, node, Direction.DOWNSTREAM, depth, at)
    by_type: dict[NodeType, list[str]] = {t: [] for t in NodeType}
    for n in found.nodes:
        if n.ref.id != node and n.ref.id in visible:
            by_type[n.ref.type].append(n.ref.id)
    return ImpactOut(
        root=node,
        depth=depth,
        as_of=at,
        datasets=sorted(by_type[NodeType.DATASET]),
        jobs=sorted(by_type[NodeType.JOB]),
        models=sorted(by_type[NodeType.MODEL]),
        deployments=sorted(by_type[NodeType.DEPLOYMENT]),
        truncated=found.truncated,
        hidden=len(found.nodes) - len(visible),
    )

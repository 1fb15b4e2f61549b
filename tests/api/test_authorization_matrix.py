"""The authorization matrix: every route x every role of the default bundle x where it acts.

Each route says once which decisions it needs (action, object, domain, resource attributes).
The expected outcome of every cell is then decided by plain pycasbin (``CasbinReference``) over
the default bundle and the world's role assignments, never typed per cell; the cell passes only
if the API does exactly that: the success status or the item in the list when allowed, 403 or
the item missing when denied.

Three scopes per role: the role held in the object's domain (``own``), held in another domain
than the object's (``other``), and held in every domain (``everywhere``). Platform routes
(principals, policies, metrics) act in domain ``*`` whatever the scope.

Apart from the matrix, the invariants the platform promises are asserted directly: a role held
in one domain never reads or changes another domain's objects, lists included; only a platform
admin reaches the admin routes; a client cannot set server-owned fields (mass assignment).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from control_plane.app import create_app
from control_plane.bootstrap import initialize
from control_plane.maturity import RUBRICS
from control_plane.runs import RunKind, RunState
from control_plane.runs.train import Handover
from control_plane.settings import Settings
from control_plane.store.models import Dataset, Deployment, ModelVersion, Run
from policies import (
    DEFAULT_BUNDLE_DIR,
    AuthzRequest,
    CasbinReference,
    PolicyBundle,
    RoleAssignment,
    load_bundle,
)
from tests.conftest import RecordingExecutor, as_caller, drain, recorded_evaluation
from tests.lineage.events import ds, run_event

BUNDLE = load_bundle(DEFAULT_BUNDLE_DIR)
ROLES = sorted(BUNDLE.roles)
OWN, OTHER = "alpha", "beta"
# What the promotion_evidence gate asks of a version before its approval is opened.
EVALUATED = {"evaluation": {"status": "passed", "model_card": {"json": "sha256:" + "0" * 64}}}
PLATFORM = "*"
SCOPES = ("own", "other", "everywhere")
CALLER_ATTRIBUTES = {"clearance": "confidential"}


def caller_name(role: str, scope: str) -> str:
    """The principal holding ``role`` in ``alpha`` (or everywhere, for that scope)."""
    return f"{role.replace('_', '-')}.{'all' if scope == 'everywhere' else OWN}"


@dataclass
class Objects:
    """What the bootstrap admin registered in one domain."""

    domain: str
    dataset_id: str
    model: str
    site_id: str
    run_id: str
    approval_id: str
    lineage_node: str
    upload_id: str


@dataclass
class World:
    """One control plane with a principal per role and scope, and objects in two domains."""

    client: TestClient
    tokens: dict[str, str]
    objects: dict[str, Objects]
    target_id: str
    reference: CasbinReference


@dataclass(frozen=True)
class Cell:
    """Who calls, on which domain's objects, with a suffix for names it creates."""

    caller: str
    objects: Objects
    suffix: str


@dataclass(frozen=True)
class Need:
    """A decision a route needs; all of a route's needs must be allowed."""

    action: str
    object: str
    domain: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """A route, the decisions it needs, and how to call it for a cell."""

    method: str
    path: str
    needs: Callable[[Cell, World], list[Need]]
    call: Callable[[Cell, World], tuple[str, dict[str, Any] | bytes | None]]
    success: int = 200
    listed: Callable[[Cell, World], str] | None = None
    """For a list: the id of the cell's object that must be listed exactly when allowed."""


def _dataset(cell: Cell, action: str = "read") -> Need:
    attributes = {"classification": "internal", "owner": "admin"}
    return Need(action, f"dataset:ds-{cell.objects.domain}", cell.objects.domain, attributes)


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


ROWS = pa.table({"x": [1, 2, 3]})


def _model(cell: Cell, action: str = "read") -> Need:
    attributes = {"risk_tier": "medium", "owner": "admin"}
    return Need(action, f"model:{cell.objects.model}", cell.objects.domain, attributes)


def _site(cell: Cell) -> Need:
    attributes = {"residency": "DE", "owner": "admin"}
    return Need("read", f"site:site-{cell.objects.domain}", cell.objects.domain, attributes)


def _budget(cell: Cell) -> Need:
    attributes = {"classification": "internal", "owner": "admin"}
    return Need("read", f"privacy_budget:ds-{cell.objects.domain}", cell.objects.domain, attributes)


def _fresh_run(cell: Cell, world: World, kind: str = "train") -> str:
    """A new pending run (``train`` or ``federated_train``) on the cell's dataset, submitted by
    the admin."""
    run = _created(
        world.client.post(
            "/api/v1/runs",
            json={
                "kind": kind,
                "target": f"model:{cell.objects.model}",
                "inputs": [f"dataset:ds-{cell.objects.domain}"],
            },
        )
    )
    run_id: str = run["id"]
    return run_id


def _reservation(cell: Cell, world: World, verb: str) -> tuple[str, dict[str, Any] | None]:
    """A reservation the cell's caller holds on a fresh run, and the route settling it."""
    run_id = _fresh_run(cell, world)
    services = world.client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        services.privacy_ledger.reserve(
            session, cell.objects.dataset_id, run_id, 0.01, 1e-9, cell.caller
        )
    path = f"/api/v1/privacy/budgets/{cell.objects.dataset_id}/reservations/{run_id}/{verb}"
    spend = {"epsilon": 0.005, "delta": 1e-9, "accountant": "rdp"}
    return path, spend if verb == "commit" else None


_REGISTRY_VERSIONS = itertools.count(1000)


def _report(cell: Cell, world: World) -> tuple[str, dict[str, Any]]:
    """A fresh train run of the cell's model as govplane leaves it once Kubeflow took its job,
    and the pipeline's report of the version it registered."""
    run_id = _fresh_run(cell, world)
    services = world.client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        run = session.get_one(Run, run_id)
        dataset = session.get_one(Dataset, cell.objects.dataset_id)
        assert dataset.snapshot_id is not None
        job = Handover(
            "kfp", f"kfp-{run_id}", cell.objects.model, dataset.id, dataset.snapshot_id, None
        )
        run.state = RunState.SUCCEEDED
        run.params = {"label": "x", "positive_label": "1"}
        run.outputs = job.as_outputs()
    outcome = {
        "model_uri": f"models:/{cell.objects.model}/{next(_REGISTRY_VERSIONS)}",
        "artifact_digest": "sha256:" + "ab" * 32,
        "registry_run_id": "f" * 32,
        "metrics": {"accuracy": 0.9},
        "rows": {"train": 2, "test": 1},
    }
    return f"/api/v1/runs/{run_id}/report", outcome


PROMOTER = "ml-engineer.all"
"""Who submits the promotions that cells decide (separation of duties then excludes only it)."""


def _fresh_approval(cell: Cell, world: World) -> str:
    """A new approval of a staging promotion of the cell's model, submitted by the promoter."""
    run = _created(
        world.client.post(
            "/api/v1/runs",
            json={
                "kind": "promote",
                "target": f"model:{cell.objects.model}",
                "params": {"target_stage": "staging", "version": 1},
            },
            headers=as_caller(world.client, world.tokens[PROMOTER]),
        )
    )
    drain(world.client)
    approvals = world.client.get("/api/v1/approvals", params={"limit": 200}).json()["items"]
    (approval,) = [item for item in approvals if item["run_id"] == run["id"]]
    approval_id: str = approval["id"]
    return approval_id


def _approval(cell: Cell, action: str) -> Need:
    attributes = {"requested_by": PROMOTER, "target": f"model:{cell.objects.model}"}
    return Need(action, "approval:fresh", cell.objects.domain, attributes)


def _proposal(cell: Cell) -> dict[str, str]:
    files = dict(BUNDLE.files)
    files["policy.csv"] += f"# proposal {cell.suffix}\n"
    return files


def _creation(kind: str, attributes: dict[str, str], body: dict[str, str] | None = None) -> Route:
    """``POST /{kind}s``: a new object in the cell's domain, owned by its caller.

    Args:
        kind: the object type (``dataset``, ``model``, ``site``).
        attributes: the resource attributes the body sets, which the decision reads.
        body: further fields of the body that no decision reads.
    """
    return Route(
        "POST",
        f"/api/v1/{kind}s",
        lambda c, w: [
            Need(
                "create",
                f"{kind}:new-{c.suffix}",
                c.objects.domain,
                {**attributes, "owner": c.caller},
            )
        ],
        lambda c, w: (
            f"/api/v1/{kind}s",
            {"name": f"new-{c.suffix}", "domain": c.objects.domain, **attributes, **(body or {})},
        ),
        success=201,
    )


def _audit(path: str, query: str = "") -> Route:
    """A read of the audit trail: a platform object, whatever the cell's domain."""
    return Route(
        "GET",
        f"/api/v1/audit/{path}",
        lambda c, w: [Need("read", "audit:*", PLATFORM)],
        lambda c, w: (f"/api/v1/audit/{path}{query}", None),
    )


def _job_event(cell: Cell) -> dict[str, Any]:
    return run_event(f"job-{cell.suffix}", namespace=f"lake-{cell.objects.domain}")


def _lineage_write(cell: Cell) -> Need:
    job = f"job:lake-{cell.objects.domain}:job-{cell.suffix}"
    return Need("write", f"lineage:{job}", cell.objects.domain)


def _lineage_query(path: str) -> Route:
    """A lineage query from the cell's domain's node: it needs to read that node."""
    return Route(
        "GET",
        f"/api/v1/lineage/{path}",
        lambda c, w: [Need("read", f"lineage:{c.objects.lineage_node}", c.objects.domain)],
        lambda c, w: (f"/api/v1/lineage/{path}?node={c.objects.lineage_node}", None),
    )


ROUTES = (
    Route("GET", "/api/v1/health", lambda c, w: [], lambda c, w: ("/api/v1/health", None)),
    Route(
        "GET",
        "/api/v1/metrics",
        lambda c, w: [Need("read", "metrics:*", PLATFORM)],
        lambda c, w: ("/api/v1/metrics", None),
    ),
    Route(
        "POST",
        "/api/v1/principals",
        lambda c, w: [Need("create", f"principal:new-{c.suffix}", PLATFORM)],
        lambda c, w: ("/api/v1/principals", {"name": f"new-{c.suffix}", "kind": "user"}),
        success=201,
    ),
    Route(
        "GET",
        "/api/v1/principals",
        lambda c, w: [Need("read", "principal:target", PLATFORM)],
        lambda c, w: ("/api/v1/principals?limit=200", None),
        listed=lambda c, w: w.target_id,
    ),
    Route(
        "GET",
        "/api/v1/principals/{principal_id}",
        lambda c, w: [Need("read", "principal:target", PLATFORM)],
        lambda c, w: (f"/api/v1/principals/{w.target_id}", None),
    ),
    Route(
        "POST",
        "/api/v1/principals/{principal_id}/tokens",
        lambda c, w: [Need("issue_token", "principal:target", PLATFORM)],
        lambda c, w: (f"/api/v1/principals/{w.target_id}/tokens", {}),
        success=201,
    ),
    Route(
        "GET",
        "/api/v1/policies",
        lambda c, w: [Need("read", "policy:*", PLATFORM)],
        lambda c, w: ("/api/v1/policies", None),
    ),
    Route(
        "POST",
        "/api/v1/policies",
        lambda c, w: [
            Need("propose", "policy:*", PLATFORM),
            Need(
                "policy_change",
                f"policy:{PolicyBundle.from_files(_proposal(c)).version}",
                PLATFORM,
            ),
        ],
        lambda c, w: ("/api/v1/policies", {"files": _proposal(c)}),
        success=202,
    ),
    Route(
        "POST",
        "/api/v1/policies/decide",
        lambda c, w: [Need("decide", "policy:*", c.objects.domain)],
        lambda c, w: (
            "/api/v1/policies/decide",
            {
                "subject": "admin",
                "domain": c.objects.domain,
                "object": f"dataset:ds-{c.objects.domain}",
                "action": "read",
            },
        ),
    ),
    _creation("dataset", {"classification": "internal"}),
    Route(
        "GET",
        "/api/v1/datasets",
        lambda c, w: [_dataset(c)],
        lambda c, w: ("/api/v1/datasets?limit=200", None),
        listed=lambda c, w: c.objects.dataset_id,
    ),
    Route(
        "GET",
        "/api/v1/datasets/{dataset_id}",
        lambda c, w: [_dataset(c)],
        lambda c, w: (f"/api/v1/datasets/{c.objects.dataset_id}", None),
    ),
    Route(
        "POST",
        "/api/v1/datasets/{dataset_id}/uploads",
        lambda c, w: [_dataset(c, "ingest")],
        lambda c, w: (f"/api/v1/datasets/{c.objects.dataset_id}/uploads", _arrow(ROWS)),
        success=201,
    ),
    Route(
        "POST",
        "/api/v1/datasets/{dataset_id}/uploads/{upload_id}",
        lambda c, w: [_dataset(c, "ingest")],
        lambda c, w: (
            f"/api/v1/datasets/{c.objects.dataset_id}/uploads/{c.objects.upload_id}",
            _arrow(ROWS),
        ),
        success=201,
    ),
    Route(
        "GET",
        "/api/v1/datasets/{dataset_id}/preview",
        lambda c, w: [_dataset(c)],
        lambda c, w: (f"/api/v1/datasets/{c.objects.dataset_id}/preview", None),
    ),
    Route(
        "GET",
        "/api/v1/datasets/{dataset_id}/snapshots",
        lambda c, w: [_dataset(c)],
        lambda c, w: (f"/api/v1/datasets/{c.objects.dataset_id}/snapshots", None),
    ),
    _creation("model", {"risk_tier": "medium"}, {"intended_use": "scoring"}),
    Route(
        "GET",
        "/api/v1/models",
        lambda c, w: [_model(c)],
        lambda c, w: ("/api/v1/models?limit=200", None),
        listed=lambda c, w: c.objects.model,
    ),
    Route(
        "GET",
        "/api/v1/models/{name}",
        lambda c, w: [_model(c)],
        lambda c, w: (f"/api/v1/models/{c.objects.model}", None),
    ),
    Route(
        "GET",
        "/api/v1/models/{name}/versions/{version}",
        lambda c, w: [_model(c)],
        lambda c, w: (f"/api/v1/models/{c.objects.model}/versions/1", None),
    ),
    Route(
        "GET",
        "/api/v1/models/{name}/versions/{version}/card",
        lambda c, w: [_model(c)],
        lambda c, w: (f"/api/v1/models/{c.objects.model}/versions/1/card?format=html", None),
    ),
    Route(
        "GET",
        "/api/v1/deployments",
        lambda c, w: [_model(c)],
        lambda c, w: ("/api/v1/deployments?limit=200", None),
        listed=lambda c, w: f"dep-{c.objects.domain}",
    ),
    Route(
        "GET",
        "/api/v1/deployments/{name}",
        lambda c, w: [_model(c)],
        lambda c, w: (f"/api/v1/deployments/dep-{c.objects.domain}", None),
    ),
    _creation("site", {"residency": "DE"}),
    Route(
        "GET",
        "/api/v1/sites",
        lambda c, w: [_site(c)],
        lambda c, w: ("/api/v1/sites?limit=200", None),
        listed=lambda c, w: c.objects.site_id,
    ),
    Route(
        "GET",
        "/api/v1/sites/{site_id}",
        lambda c, w: [_site(c)],
        lambda c, w: (f"/api/v1/sites/{c.objects.site_id}", None),
    ),
    Route(
        "POST",
        "/api/v1/sites/{site_id}/participations",
        lambda c, w: [_site(c), replace(_site(c), action="approve")],
        lambda c, w: (
            f"/api/v1/sites/{c.objects.site_id}/participations",
            {"run_id": _fresh_run(c, w, "federated_train"), "decision": "approve"},
        ),
        success=201,
    ),
    Route(
        "POST",
        "/api/v1/runs",
        lambda c, w: [_model(c, "train"), _dataset(c)],
        lambda c, w: (
            "/api/v1/runs",
            {
                "kind": "train",
                "target": f"model:{c.objects.model}",
                "inputs": [f"dataset:ds-{c.objects.domain}"],
            },
        ),
        success=202,
    ),
    Route(
        "GET",
        "/api/v1/runs",
        lambda c, w: [Need("read", f"run:{c.objects.run_id}", c.objects.domain)],
        lambda c, w: ("/api/v1/runs?limit=200", None),
        listed=lambda c, w: c.objects.run_id,
    ),
    Route(
        "GET",
        "/api/v1/runs/{run_id}",
        lambda c, w: [Need("read", f"run:{c.objects.run_id}", c.objects.domain)],
        lambda c, w: (f"/api/v1/runs/{c.objects.run_id}", None),
    ),
    Route(
        "POST",
        "/api/v1/runs/{run_id}/report",
        lambda c, w: [Need("report", f"run:{c.objects.run_id}", c.objects.domain)],
        lambda c, w: _report(c, w),
    ),
    Route(
        "GET",
        "/api/v1/runs/{run_id}/evidence",
        lambda c, w: [Need("read", f"run:{c.objects.run_id}", c.objects.domain)],
        lambda c, w: (f"/api/v1/runs/{c.objects.run_id}/evidence", None),
    ),
    Route(
        "GET",
        "/api/v1/runs/{run_id}/evidence/{name}",
        lambda c, w: [Need("read", f"run:{c.objects.run_id}", c.objects.domain)],
        lambda c, w: (f"/api/v1/runs/{c.objects.run_id}/evidence/model_card.json", None),
    ),
    Route(
        "GET",
        "/api/v1/approvals",
        lambda c, w: [Need("read", f"approval:{c.objects.approval_id}", c.objects.domain)],
        lambda c, w: ("/api/v1/approvals?limit=200", None),
        listed=lambda c, w: c.objects.approval_id,
    ),
    Route(
        "GET",
        "/api/v1/approvals/{approval_id}",
        lambda c, w: [Need("read", f"approval:{c.objects.approval_id}", c.objects.domain)],
        lambda c, w: (f"/api/v1/approvals/{c.objects.approval_id}", None),
    ),
    Route(
        "POST",
        "/api/v1/approvals/{approval_id}/decisions",
        lambda c, w: [_approval(c, "approve")],
        lambda c, w: (
            f"/api/v1/approvals/{_fresh_approval(c, w)}/decisions",
            {"decision": "approve", "comment": "reviewed"},
        ),
        success=201,
    ),
    Route(
        "POST",
        "/api/v1/approvals/{approval_id}/revoke",
        lambda c, w: [_approval(c, "revoke")],
        lambda c, w: (f"/api/v1/approvals/{_fresh_approval(c, w)}/revoke", {"comment": "stop"}),
    ),
    _audit("events"),
    _audit("verify"),
    _audit("checkpoints/latest"),
    _audit("proofs/inclusion", "?index=0"),
    _audit("proofs/consistency", "?first=1"),
    _audit("export"),
    Route(
        "POST",
        "/api/v1/lineage",
        lambda c, w: [_lineage_write(c)],
        lambda c, w: (f"/api/v1/lineage?domain={c.objects.domain}", _job_event(c)),
        success=201,
    ),
    Route(
        "POST",
        "/api/v1/lineage/batch",
        lambda c, w: [_lineage_write(c)],
        lambda c, w: (f"/api/v1/lineage/batch?domain={c.objects.domain}", [_job_event(c)]),
        success=201,
    ),
    _lineage_query("graph"),
    _lineage_query("impact"),
)
PRIVACY_ROUTES = (
    Route(
        "GET",
        "/api/v1/privacy/budgets/{dataset_id}",
        lambda c, w: [_dataset(c), _budget(c)],
        lambda c, w: (f"/api/v1/privacy/budgets/{c.objects.dataset_id}", None),
    ),
    Route(
        "POST",
        "/api/v1/privacy/budgets/{dataset_id}/reservations",
        lambda c, w: [_dataset(c), replace(_dataset(c), action="train")],
        lambda c, w: (
            f"/api/v1/privacy/budgets/{c.objects.dataset_id}/reservations",
            {"run_id": _fresh_run(c, w), "epsilon": 0.01, "delta": 1e-9},
        ),
        success=201,
    ),
    Route(
        "POST",
        "/api/v1/privacy/budgets/{dataset_id}/reservations/{run_id}/commit",
        lambda c, w: [_dataset(c), replace(_dataset(c), action="train")],
        lambda c, w: _reservation(c, w, "commit"),
    ),
    Route(
        "POST",
        "/api/v1/privacy/budgets/{dataset_id}/reservations/{run_id}/release",
        lambda c, w: [_dataset(c), replace(_dataset(c), action="train")],
        lambda c, w: _reservation(c, w, "release"),
    ),
)


def _maturity(cell: Cell, world: World) -> list[Need]:
    """``GET /maturity`` answers the rubrics the caller may read: allowed when it reads one."""
    needs = [Need("read", f"maturity:{rubric}", PLATFORM) for rubric in RUBRICS]
    readable = [need for need in needs if _expected_need(world, cell, need)]
    return readable[:1] or needs[:1]


MATURITY_AND_EVIDENCE_ROUTES = (
    Route("GET", "/api/v1/maturity", _maturity, lambda c, w: ("/api/v1/maturity", None)),
    Route(
        "GET",
        "/api/v1/models/{name}/versions/{version}/evidence-pack",
        lambda c, w: [_model(c), Need("read", "audit:*", PLATFORM)],
        lambda c, w: (f"/api/v1/models/{c.objects.model}/versions/1/evidence-pack", None),
    ),
)
ROUTES = (*ROUTES, *PRIVACY_ROUTES, *MATURITY_AND_EVIDENCE_ROUTES)
ROUTE_IDS = [f"{route.method} {route.path.removeprefix('/api/v1')}" for route in ROUTES]
ADMIN_ROUTES = [
    route
    for route in ROUTES
    if route.method == "POST"
    and route.path.startswith(("/api/v1/principals", "/api/v1/policies"))
    and not route.path.endswith("/decide")
]
DOMAIN_ROUTES = [
    route
    for route in ROUTES
    if route.path.startswith(
        ("/api/v1/datasets", "/api/v1/models", "/api/v1/deployments", "/api/v1/sites")
    )
    or route.path.startswith(("/api/v1/runs", "/api/v1/approvals", "/api/v1/policies/decide"))
    or route.path.startswith(("/api/v1/lineage", "/api/v1/privacy"))
]


def _created(response: Response) -> dict[str, Any]:
    assert response.status_code in (201, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def _register(client: TestClient, domain: str) -> Objects:
    dataset = _created(
        client.post(
            "/api/v1/datasets",
            json={"name": f"ds-{domain}", "domain": domain, "classification": "internal"},
        )
    )
    model = _created(
        client.post(
            "/api/v1/models",
            json={
                "name": f"model-{domain}",
                "domain": domain,
                "risk_tier": "medium",
                "intended_use": "scoring",
            },
        )
    )
    site = _created(
        client.post(
            "/api/v1/sites",
            json={
                "name": f"site-{domain}",
                "domain": domain,
                "residency": "DE",
                "datasets": [f"ds-{domain}"],
            },
        )
    )
    # An evaluated version of it, with a model card, and its promotion that waits for an
    # approval (medium risk): one run and one approval; the run is then deployed.
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        version = ModelVersion(model_id=model["id"], version=1, evidence=EVALUATED)
        session.add(version)
        session.flush()
        version_id = version.id
    run = _created(
        client.post(
            "/api/v1/runs",
            json={
                "kind": "promote",
                "target": f"model:{model['name']}",
                "params": {"target_stage": "staging", "version": 1},
            },
        )
    )
    drain(client)
    with services.db.session(write=True) as session:
        session.get_one(ModelVersion, version_id).evidence = {
            "evaluation": recorded_evaluation(session, model["name"], 1, run_id=run["id"])
        }
    approvals = client.get("/api/v1/approvals", params={"limit": 200}).json()["items"]
    (approval,) = [item for item in approvals if item["run_id"] == run["id"]]
    with services.db.session(write=True) as session:
        session.add(
            Deployment(
                name=f"dep-{domain}",
                domain=domain,
                model_version_id=version_id,
                model=model["name"],
                version=1,
                target="local",
                endpoint_url="http://127.0.0.1:1/invocations",
                status="ready",
                run_id=run["id"],
                created_by="admin",
            )
        )
    # The dataset is ingested (for previews), and one more upload waits for parts.
    uploads = f"/api/v1/datasets/{dataset['id']}/uploads"
    ingested = _created(client.post(uploads, content=_arrow(ROWS), headers=_ARROW_HEADERS))
    _created(
        client.post(
            "/api/v1/runs",
            json={
                "kind": "ingest",
                "target": f"dataset:{dataset['name']}",
                "params": {"source": {"upload": ingested["upload_id"]}},
            },
        )
    )
    drain(client)
    upload = _created(client.post(uploads, content=_arrow(ROWS), headers=_ARROW_HEADERS))
    # A job of the domain reading one dataset and writing another: lineage nodes of the domain
    event = run_event("build", [f"raw-{domain}"], [f"clean-{domain}"], namespace=f"lake-{domain}")
    _created(client.post("/api/v1/lineage", params={"domain": domain}, json=event))
    return Objects(
        domain,
        dataset["id"],
        model["name"],
        site["id"],
        run["id"],
        approval["id"],
        ds(f"clean-{domain}"),
        upload["upload_id"],
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder: Path = tmp_path_factory.mktemp("matrix")
    settings = Settings(
        data_dir=folder,
        database_url=f"sqlite:///{folder / 'govplane.db'}",
        run_worker=False,
        worker_id="matrix",
    )
    admin_token = initialize(settings).admin_token
    executors = {kind: RecordingExecutor(kind) for kind in (RunKind.TRAIN, RunKind.PROMOTE)}
    with TestClient(create_app(settings, executors), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        assignments = [RoleAssignment("admin", "admin", PLATFORM)]
        tokens = {}
        for role in ROLES:
            for scope, domain in (("own", OWN), ("everywhere", PLATFORM)):
                name = caller_name(role, scope)
                principal = _created(
                    client.post(
                        "/api/v1/principals",
                        json={
                            "name": name,
                            "kind": "user",
                            "roles": [{"role": role, "domain": domain}],
                            "attributes": CALLER_ATTRIBUTES,
                        },
                    )
                )
                tokens[name] = _created(
                    client.post(f"/api/v1/principals/{principal['id']}/tokens")
                )["token"]
                assignments.append(RoleAssignment(name, role, domain))
        target = _created(
            client.post("/api/v1/principals", json={"name": "target", "kind": "user"})
        )
        objects = {domain: _register(client, domain) for domain in (OWN, OTHER)}
        yield World(client, tokens, objects, target["id"], CasbinReference(BUNDLE, assignments))


_ARROW_HEADERS = {"Content-Type": "application/vnd.apache.arrow.stream"}


def _cell(role: str, scope: str) -> tuple[str, str]:
    return caller_name(role, scope), OTHER if scope == "other" else OWN


def _expected_need(world: World, cell: Cell, need: Need) -> bool:
    request = AuthzRequest(
        cell.caller, need.domain, need.object, need.action, {**CALLER_ATTRIBUTES, **need.attributes}
    )
    return world.reference.decide(request).allowed


def _expected(world: World, route: Route, cell: Cell) -> bool:
    return all(_expected_need(world, cell, need) for need in route.needs(cell, world))


def _call(world: World, route: Route, cell: Cell) -> Response:
    url, body = route.call(cell, world)
    headers = as_caller(world.client, world.tokens[cell.caller])
    if route.method == "GET":
        return world.client.get(url, headers=headers)
    if isinstance(body, bytes):
        return world.client.post(url, content=body, headers={**headers, **_ARROW_HEADERS})
    return world.client.post(url, json=body, headers=headers)


def _outcome(route: Route, cell: Cell, world: World, response: Response) -> bool:
    """Whether the API allowed the cell; anything but the two expected answers fails."""
    if route.listed is None:
        assert response.status_code in (route.success, 403), response.text
        return response.status_code == route.success
    assert response.status_code == 200, response.text
    keys = {item[key] for item in response.json()["items"] for key in ("id", "name") if key in item}
    return route.listed(cell, world) in keys


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_each_cell_gets_the_decision_of_the_bundle(
    world: World, route: Route, role: str, scope: str
) -> None:
    # Given a caller holding the role, and the objects of the cell's domain
    caller, domain = _cell(role, scope)
    cell = Cell(caller, world.objects[domain], f"{role.replace('_', '-')}-{scope}")
    want = _expected(world, route, cell)
    # When the caller calls the route
    response = _call(world, route, cell)
    # Then the API allows exactly what plain pycasbin decides over the default bundle
    assert _outcome(route, cell, world, response) == want, (want, response.text)


def test_the_matrix_covers_every_route(world: World) -> None:
    schema = world.client.get("/openapi.json").json()
    served = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert served == {(route.method, route.path) for route in ROUTES}


@pytest.mark.parametrize("role", ROLES)
def test_a_domain_role_never_reads_or_changes_another_domain(world: World, role: str) -> None:
    # Given a caller whose role is held in alpha only, and beta's objects
    cell = Cell(caller_name(role, "own"), world.objects[OTHER], f"{role.replace('_', '-')}-x")
    for route in DOMAIN_ROUTES:
        # When it calls any domain route on beta's objects
        response = _call(world, route, cell)
        # Then it is refused, and no list shows beta's objects
        if route.listed is None:
            assert response.status_code == 403, (route.path, response.text)
        else:
            assert response.status_code == 200, response.text
            domains = {item["domain"] for item in response.json()["items"]}
            assert OTHER not in domains, route.path


@pytest.mark.parametrize("scope", ["own", "everywhere"])
@pytest.mark.parametrize("role", [role for role in ROLES if role != "admin"] + ["admin"])
def test_only_a_platform_admin_reaches_admin_routes(world: World, role: str, scope: str) -> None:
    cell = Cell(caller_name(role, scope), world.objects[OWN], f"{role.replace('_', '-')}-{scope}a")
    platform_admin = role == "admin" and scope == "everywhere"
    for route in ADMIN_ROUTES:
        response = _call(world, route, cell)
        want = route.success if platform_admin else 403
        assert response.status_code == want, (route.path, response.text)

"""``/health`` (no token) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.errors import problem_responses
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.store.revisions import current_revision

router = APIRouter(tags=["health"])


@router.get("/health")
def health(services: ServicesDep) -> dict[str, str]:
    """Liveness and store reachability."""
    with services.db.session() as session:
        initialized = current_revision(session) is not None
    return {"status": "ok" if initialized else "uninitialized"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problem_responses(401, 403, 503),
    },
)
def metrics(request: Request, guard: GuardDep) -> Response:
    """Request counts and latencies of this replica."""
    guard.require("read", "metrics:*", PLATFORM_DOMAIN)
    registry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

"""``create_app(settings)``: the FastAPI application, built with everything it needs."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from connectors.serving import LocalScoringServers, LocalServingConfig
from control_plane.api import (
    approvals,
    audit,
    datasets,
    deployments,
    health,
    lineage,
    maturity,
    models,
    policies,
    principals,
    privacy,
    runs,
    sites,
)
from control_plane.api.deps import Services
from control_plane.approvals import (
    ApprovalRequestNotifier,
    ApprovalWorkflow,
    WebhookDeliverer,
    WebhookNotifier,
    load_webhook_secret,
)
from control_plane.audit_trail import (
    AuditLog,
    CheckpointCadence,
    RunTransitionAudit,
    load_audit_keys,
)
from control_plane.authorization import Authorization
from control_plane.body_limit import BodyLimit
from control_plane.connectors import (
    model_registry,
    orchestrator,
    registry_config,
    serving_backends,
)
from control_plane.dashboard import pages as dashboard
from control_plane.dashboard.pages import render_problem
from control_plane.dashboard.session import Sessions
from control_plane.errors import install_problem_handlers, problem_responses
from control_plane.http_metrics import RequestMetrics
from control_plane.identity.oidc import OidcConfig, OidcVerifier
from control_plane.identity.oidc_login import OidcLogin
from control_plane.ingest import lake_catalog, open_lake
from control_plane.inventory.releases import load_release_signer
from control_plane.launcher import free_port
from control_plane.lineage import LineageDeliverer, LineageRecorder, LineageStore, LineageWriter
from control_plane.privacy_ledger import LedgerSettlement, PrivacyLedger
from control_plane.runs import Executor, RunEngine, RunKind, RunWorker, TransitionRecorder
from control_plane.runs.deploy import DeployExecutor
from control_plane.runs.evaluate import EvaluateExecutor
from control_plane.runs.federated import FederatedTrainExecutor
from control_plane.runs.ingest import IngestExecutor
from control_plane.runs.policy_change import PolicyChangeExecutor
from control_plane.runs.promote import PromoteExecutor
from control_plane.runs.train import TrainExecutor
from control_plane.settings import Settings
from control_plane.store import Database
from lineage import build_transport

API_PREFIX = "/api/v1"
# The problem+json answers any resource route may give (documented in the OpenAPI schema).
RESOURCE_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 422, 503)


def build_services(
    settings: Settings,
    executors: Mapping[RunKind, Executor] | None = None,
    recorders: Sequence[TransitionRecorder] = (),
) -> Services:
    """The store, policy decision point, run engine, worker and OIDC verifier for ``settings``.

    Args:
        settings: the configuration.
        executors: executors by run kind, added to (or replacing) the built-in ones
            (``policy_change``, ``ingest``, ``train``, ``evaluate``, ``promote``,
            ``deploy``, ``federated_train``).
        recorders: what else records each run transition, after the audit trail.
    """
    db = Database(settings.sqlalchemy_url)
    cadence = CheckpointCadence(
        settings.audit_checkpoint_seconds, settings.audit_checkpoint_records
    )
    trail = AuditLog(db, load_audit_keys(settings), cadence)
    lineage_store = LineageStore(tuple(settings.lineage_destinations))
    lineage_recorder = LineageRecorder(lineage_store)
    ledger = PrivacyLedger(trail)
    lake = open_lake(settings)
    notifier = WebhookNotifier(settings.webhook_urls)
    registry = model_registry(settings)
    signer = load_release_signer(settings)
    local_serving = LocalScoringServers(
        LocalServingConfig(
            log_dir=settings.serving_dir / "logs",
            start_timeout_seconds=settings.serving_start_timeout_seconds,
        ),
        free_port,
    )
    engine = RunEngine(
        db,
        {
            RunKind.POLICY_CHANGE: PolicyChangeExecutor(db, trail),
            RunKind.INGEST: IngestExecutor(db, trail, settings, lake),
            RunKind.TRAIN: TrainExecutor(
                db,
                trail,
                ledger,
                orchestrator(settings),
                registry_config(settings),
                lake_catalog(settings),
                settings.dp_secure_rng,
            ),
            RunKind.EVALUATE: EvaluateExecutor(db, trail, lake, registry),
            RunKind.PROMOTE: PromoteExecutor(db, trail, registry, signer),
            RunKind.DEPLOY: DeployExecutor(
                db,
                trail,
                registry,
                signer,
                serving_backends(settings, local_serving),
                settings.serving_dir / "models",
            ),
            RunKind.FEDERATED_TRAIN: FederatedTrainExecutor(db, trail, ledger, registry, settings),
            **(executors or {}),
        },
        [
            RunTransitionAudit(trail),
            LedgerSettlement(ledger),
            lineage_recorder,
            ApprovalRequestNotifier(notifier),
            *recorders,
        ],
        timedelta(seconds=settings.run_lease_seconds),
    )
    approvals = ApprovalWorkflow(db, engine, trail, notifier)
    worker = (
        RunWorker(
            engine,
            settings.worker_id or f"{socket.gethostname()}:{os.getpid()}",
            settings.worker_poll_seconds,
            [approvals.expire_due],
        )
        if settings.run_worker
        else None
    )
    oidc = _oidc_verifier(settings, settings.oidc_audience) if settings.oidc_enabled else None
    deliverer = (
        LineageDeliverer(
            db,
            {name: build_transport(c) for name, c in settings.lineage_destinations.items()},
            settings.lineage_delivery_poll_seconds,
        )
        if settings.lineage_destinations
        else None
    )
    webhooks = (
        WebhookDeliverer(
            db,
            load_webhook_secret(settings.webhook_secret_path),
            settings.webhook_delivery_poll_seconds,
        )
        if settings.webhook_urls
        else None
    )
    return Services(
        settings,
        db,
        Authorization(),
        engine,
        worker,
        oidc,
        trail,
        LineageWriter(db, lineage_store),
        lineage_recorder,
        deliverer,
        ledger,
        lake,
        approvals,
        webhooks,
        local_serving,
    )


def _oidc_verifier(settings: Settings, audience: str | None) -> OidcVerifier:
    """Verifies JWTs of the settings' OIDC issuer for ``audience``."""
    assert settings.oidc_issuer
    assert settings.oidc_jwks_url
    assert audience
    return OidcVerifier(
        OidcConfig(
            issuer=settings.oidc_issuer,
            audience=audience,
            jwks_url=settings.oidc_jwks_url,
            algorithms=settings.oidc_algorithms,
        )
    )


def _oidc_login(settings: Settings) -> OidcLogin | None:
    """The dashboard's OIDC client, when the settings configure one."""
    if not settings.oidc_login_enabled:
        return None
    assert settings.oidc_client_id
    assert settings.oidc_authorization_url
    assert settings.oidc_token_url
    secret = settings.oidc_client_secret
    return OidcLogin(
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        authorization_url=settings.oidc_authorization_url,
        token_url=settings.oidc_token_url,
        verifier=_oidc_verifier(settings, settings.oidc_client_id),
    )


def create_app(
    settings: Settings,
    executors: Mapping[RunKind, Executor] | None = None,
    recorders: Sequence[TransitionRecorder] = (),
) -> FastAPI:
    """The control-plane application for ``settings`` (see :func:`build_services`)."""
    services = build_services(settings, executors, recorders)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if services.worker is not None:
            services.worker.start()
        if services.lineage_deliverer is not None and settings.run_worker:
            services.lineage_deliverer.start()
        if services.webhook_deliverer is not None and settings.run_worker:
            services.webhook_deliverer.start()
        try:
            yield
        finally:
            if services.webhook_deliverer is not None:
                services.webhook_deliverer.stop()
            if services.lineage_deliverer is not None:
                services.lineage_deliverer.stop()
            if services.worker is not None:
                services.worker.stop()
            services.local_serving.close()
            services.audit.close()
            services.db.dispose()

    app = FastAPI(
        title="govplane",
        version="0.1.0",
        summary="Governance, privacy and model-risk control plane for machine learning",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    secret = settings.session_secret.get_secret_value() if settings.session_secret else None
    app.state.sessions = Sessions(secret, round(settings.session_hours * 3600))
    app.state.oidc_login = _oidc_login(settings)
    install_problem_handlers(app, render_problem)
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(health.router)
    for module in (
        principals,
        policies,
        datasets,
        models,
        deployments,
        sites,
        runs,
        approvals,
        audit,
        lineage,
        privacy,
        maturity,
    ):
        api.include_router(module.router, responses=RESOURCE_PROBLEMS)
    app.include_router(api)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    app.add_middleware(RequestMetrics, registry=registry)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app

"""Shared fixtures: a migrated store on every backend, an initialized control plane, clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.app import create_app
from control_plane.bootstrap import initialize
from control_plane.inventory.model_card import CARD_FILES, ModelCard, render_card
from control_plane.launcher import GOVPLANE as GOVPLANE
from control_plane.launcher import serve
from control_plane.runs import ExecutionContext, RunKind, RunState, RunWorker
from control_plane.runs.evidence import keep_artifact
from control_plane.settings import Settings
from control_plane.store import upgrade
from control_plane.store.models import Model, Run

PG_ADMIN_DSN = os.environ.get(
    "GOVPLANE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_TEMPLATE = f"govplane_template_{os.getpid()}"


def _pg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def _pg_admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test clones (CREATE DATABASE ... TEMPLATE)."""
    _pg_admin(f"DROP DATABASE IF EXISTS {_TEMPLATE}")
    _pg_admin(f"CREATE DATABASE {_TEMPLATE}")
    upgrade(_pg_url(_TEMPLATE))
    yield _TEMPLATE
    _pg_admin(f"DROP DATABASE IF EXISTS {_TEMPLATE} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty store, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'govplane.db'}"
        upgrade(url)
        yield url
        return
    template = request.getfixturevalue("pg_template")
    name = f"govplane_{uuid.uuid4().hex[:12]}"
    _pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield _pg_url(name)
    _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, run_worker=False, worker_id="test"
    )


@pytest.fixture
def admin_token(settings: Settings) -> str:
    """``govplane init`` on the store; the bootstrap admin's token."""
    return initialize(settings).admin_token


class RecordingExecutor:
    """A real executor for tests: records what it was asked to do and returns it as outputs."""

    def __init__(self, kind: RunKind, fail_with: str | None = None) -> None:
        self.kind = kind
        self.fail_with = fail_with
        self.executed: list[str] = []

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        self.executed.append(context.run_id)
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        return {"target": context.target, "inputs": list(context.inputs)}


@pytest.fixture
def executors() -> dict[RunKind, RecordingExecutor]:
    return {
        kind: RecordingExecutor(kind) for kind in (RunKind.TRAIN, RunKind.INGEST, RunKind.PROMOTE)
    }


@pytest.fixture
def client(
    settings: Settings, admin_token: str, executors: dict[RunKind, RecordingExecutor]
) -> Iterator[TestClient]:
    """An API client authenticated as the bootstrap admin."""
    app = create_app(settings, executors)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin_token}"
        yield test_client


def drain(client: TestClient) -> int:
    """Process every claimable run now, as the worker would."""
    return RunWorker(client.app.state.services.runs, "test", 1.0).drain()  # type: ignore[attr-defined]


def principal_token(
    client: TestClient,
    name: str,
    roles: list[tuple[str, str]],
    attributes: Mapping[str, Any] | None = None,
) -> str:
    """Create a principal through the API (as the client's caller) and return a token for it."""
    created = client.post(
        "/api/v1/principals",
        json={
            "name": name,
            "kind": "user",
            "roles": [{"role": role, "domain": domain} for role, domain in roles],
            "attributes": dict(attributes or {}),
        },
    )
    assert created.status_code == 201, created.text
    issued = client.post(f"/api/v1/principals/{created.json()['id']}/tokens")
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token


def as_caller(client: TestClient, token: str) -> dict[str, str]:
    """Headers that make one request as another principal."""
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def govplane_serve(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    startup_seconds: float = 180.0,
) -> Iterator[str]:
    """A real ``govplane serve`` process on a free loopback port; yields its URL.

    Args:
        data_dir: the data directory it serves (``govplane init`` must have run on it).
        env: ``GOVPLANE_*`` settings for the process, on top of this process's environment.
        log: a file for its output (discarded otherwise).
        startup_seconds: how long it may take to answer its health check.
    """
    with serve(data_dir, env, log, startup_seconds) as server:
        yield server.url


def recorded_evaluation(
    session: Session, model: str, version: int, status: str = "passed", run_id: str | None = None
) -> dict[str, Any]:
    """``evidence["evaluation"]`` of a ``model`` version as evaluate run ``run_id`` records
    it, with the version's model card kept as the run's evidence. Without ``run_id``, a
    finished evaluate run is added to the store first."""
    row = session.scalars(select(Model).where(Model.name == model)).one()
    if run_id is None:
        run = Run(
            kind=RunKind.EVALUATE,
            state=RunState.SUCCEEDED if status == "passed" else RunState.FAILED,
            domain=row.domain,
            target=f"model:{model}",
            params={"version": version},
            bundle_version="sha256:" + "0" * 64,
            submitted_by="admin",
        )
        session.add(run)
        session.flush()
        run_id = run.id
    card = ModelCard(
        model, str(version), row.risk_tier, row.owner, row.intended_use, "adult", "adult", "plain"
    )
    kept = {
        name: keep_artifact(session, run_id, name, text).digest
        for name, text in render_card(card.to_dict()).items()
    }
    digests = {fmt: kept[name] for fmt, name in CARD_FILES.items()}
    return {"run_id": run_id, "status": status, "model_card": digests}

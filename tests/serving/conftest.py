"""Fixtures of the promotion and deployment tests: a control plane with the real promote and
deploy executors, a real MLflow store in its data directory, and Adult models registered in it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sqlalchemy import select

from connectors.registry import MlflowRegistry, ModelFlavor, ModelUri, Provenance
from control_plane.app import create_app
from control_plane.connectors import ensure_model_registry, registry_config
from control_plane.inventory.versions import record_model_version
from control_plane.runs import RunKind, RunState
from control_plane.sample_data import ADULT_LABEL, read_adult
from control_plane.settings import Settings
from control_plane.store.models import Approval, Model, ModelVersion
from tests.conftest import RecordingExecutor, drain, recorded_evaluation
from tests.serving.fake_kubernetes import FakeKubernetes, fake_kubernetes

NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]


@pytest.fixture(scope="session")
def adult_frame() -> pd.DataFrame:
    return read_adult().slice(0, 3000).to_pandas()


def fit_model(frame: pd.DataFrame, c: float) -> Pipeline:
    """A classifier that predicts from the raw Adult columns (it selects the numeric ones)."""
    columns = ColumnTransformer([("numeric", "passthrough", NUMERIC)])
    model = Pipeline([("columns", columns), ("classifier", LogisticRegression(C=c, max_iter=500))])
    return model.fit(frame, frame[ADULT_LABEL] == ">50K")


@dataclass
class Governed:
    """The API client (as the bootstrap admin), the services and the registry behind them."""

    client: TestClient
    registry: MlflowRegistry
    frame: pd.DataFrame
    settings: Settings

    @property
    def services(self) -> Any:
        return self.client.app.state.services  # type: ignore[attr-defined]

    def model(self, name: str, risk_tier: str = "low") -> None:
        body = {"name": name, "domain": "retail", "risk_tier": risk_tier, "intended_use": "test"}
        assert self.client.post("/api/v1/models", json=body).status_code == 201

    def register(self, name: str, evaluation: str | None = "passed", c: float = 1.0) -> int:
        """Train, register and record a version of ``name``, with training and evaluation facts
        as the train and evaluate runs record them; returns the inventory version."""
        run = self.client.post(
            "/api/v1/runs",
            json={"kind": "train", "target": f"model:{name}", "inputs": ["dataset:adult"]},
        )
        assert run.status_code == 202, run.text
        drain(self.client)
        run_id = run.json()["id"]
        provenance = Provenance(run_id, "adult", "1", "plain")
        registered = self.registry.register(
            name, fit_model(self.frame, c), ModelFlavor.SKLEARN, provenance
        )
        with self.services.db.session(write=True) as session:
            row = record_model_version(
                session,
                self.services.audit,
                name,
                str(registered.uri),
                registered.artifact_digest,
                run_id,
                "admin",
            )
            evidence: dict[str, Any] = {
                "training": {
                    "run_id": run_id,
                    "features": NUMERIC,
                    "label": ADULT_LABEL,
                    "privacy": {"mode": "plain"},
                }
            }
            if evaluation is not None:
                evidence["evaluation"] = recorded_evaluation(session, name, row.version, evaluation)
            row.evidence = evidence
            version: int = row.version
        return version

    def version(self, name: str, version: int) -> ModelVersion:
        with self.services.db.session() as session:
            row = session.scalars(
                select(ModelVersion)
                .join(Model, Model.id == ModelVersion.model_id)
                .where(Model.name == name, ModelVersion.version == version)
            ).one()
            session.expunge(row)
            return row

    def registry_uri(self, name: str, version: int) -> ModelUri:
        uri = self.version(name, version).registry_uri
        assert uri is not None
        return ModelUri.parse(uri)

    def run(self, kind: str, target: str, /, **params: Any) -> dict[str, Any]:
        """Submit a run, process it, and return it as the API shows it."""
        submitted = self.client.post(
            "/api/v1/runs", json={"kind": kind, "target": target, "params": params}
        )
        assert submitted.status_code == 202, submitted.text
        drain(self.client)
        shown: dict[str, Any] = self.client.get(f"/api/v1/runs/{submitted.json()['id']}").json()
        return shown

    def approve(self, run_id: str) -> None:
        """Stand in for the approval decision: the approval completes and the run resumes."""
        with self.services.db.session(write=True) as session:
            approval = session.scalars(select(Approval).where(Approval.run_id == run_id)).one()
            approval.status = "approved"
            self.services.runs.resume(session, run_id, approved=True, reason="approved")
        drain(self.client)

    def promote_to_production(self, model: str, version: int, **params: Any) -> str:
        """An approved promotion of ``version`` to production; its run id."""
        run = self.run(
            "promote", f"model:{model}", version=version, target_stage="production", **params
        )
        assert run["state"] == RunState.AWAITING_APPROVAL, run
        self.approve(run["id"])
        done = self.client.get(f"/api/v1/runs/{run['id']}").json()
        assert done["state"] == RunState.SUCCEEDED, done
        run_id: str = run["id"]
        return run_id

    def tamper(self, model: str, version: int) -> None:
        """Append a byte to the version's model file in the MLflow artifact store."""
        registered = self.registry.describe(self.registry_uri(model, version))
        folder = self.settings.mlflow_dir / "artifacts"
        (path,) = [
            p for p in folder.rglob("model.skops") if registered.registry_run_id in p.as_posix()
        ]
        with path.open("ab") as stream:
            stream.write(b"\0")

    def audit(self, action: str) -> list[dict[str, Any]]:
        events = self.client.get("/api/v1/audit/events", params={"action": action, "limit": 200})
        items: list[dict[str, Any]] = events.json()["items"]
        return items


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with fake_kubernetes() as fake:
        yield fake


@pytest.fixture
def governed(
    settings: Settings,
    admin_token: str,
    adult_frame: pd.DataFrame,
    cluster: FakeKubernetes,
    tmp_path: Path,
) -> Iterator[Governed]:
    """The control plane, with KServe and Seldon targets on the fake Kubernetes API."""
    kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig")
    settings = settings.model_copy(update={"kubeconfig_file": kubeconfig})
    ensure_model_registry(settings)
    app = create_app(settings, {RunKind.TRAIN: RecordingExecutor(RunKind.TRAIN)})
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        body = {"name": "adult", "domain": "retail", "classification": "internal"}
        assert client.post("/api/v1/datasets", json=body).status_code == 201
        registry = MlflowRegistry(registry_config(settings))
        yield Governed(client, registry, adult_frame, settings)

"""A control plane for tests of governed runs: its client, two principals, and the steps every
such test takes first (a dataset ingested into the lake, a model registered, a run processed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from control_plane.api.deps import Services
from control_plane.runs import RunWorker
from control_plane.settings import Settings


@dataclass
class Plane:
    """A control plane with the real executors, a data owner and a data scientist.

    Attributes:
        client: an HTTP client of the app (a ``TestClient``, or a client of the served app).
        services: the app's services (the run engine drained by :meth:`run`).
    """

    client: httpx.Client
    services: Services
    settings: Settings
    owner: dict[str, str]
    scientist: dict[str, str]

    def dataset(self, name: str, table: pa.Table, classification: str, **extra: Any) -> str:
        """Register ``name`` and ingest ``table`` into the lake; the dataset id."""
        registered = self.client.post(
            "/api/v1/datasets",
            json={"name": name, "domain": "retail", "classification": classification, **extra},
            headers=self.owner,
        )
        assert registered.status_code == 201, registered.text
        pq.write_table(table, self.settings.source_roots[0] / f"{name}.parquet")
        ingested = self.run("ingest", f"dataset:{name}", {"source": {"path": f"{name}.parquet"}})
        assert ingested["state"] == "succeeded", ingested["error"]
        dataset_id: str = registered.json()["id"]
        return dataset_id

    def model(self, name: str) -> None:
        created = self.client.post(
            "/api/v1/models",
            json={"name": name, "domain": "retail", "risk_tier": "low", "intended_use": "tests"},
            headers=self.scientist,
        )
        assert created.status_code == 201, created.text

    def run(
        self, kind: str, target: str, params: dict[str, Any], inputs: list[str] | None = None
    ) -> dict[str, Any]:
        """Submit a run as the scientist (ingest: as the owner), process it, return it."""
        submitted = self.client.post(
            "/api/v1/runs",
            json={"kind": kind, "target": target, "inputs": inputs or [], "params": params},
            headers=self.owner if kind == "ingest" else self.scientist,
        )
        assert submitted.status_code == 202, submitted.text
        RunWorker(self.services.runs, "test", 1.0).drain()
        run: dict[str, Any] = self.client.get(f"/api/v1/runs/{submitted.json()['id']}").json()
        return run

"""A control plane with the real ingest and federated executors, sites holding Adult
partitions in its lake, and a real Flower deployment (SuperLink and SuperNode processes)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from control_plane.app import create_app
from control_plane.federation import site_deployment
from control_plane.launcher import free_ports
from control_plane.sample_data import ADULT_SITE_CATEGORICAL, ADULT_SITE_NUMERIC, read_adult
from control_plane.settings import Settings
from control_plane.store import Database
from privacy.federated import Deployment
from tests.conftest import drain


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    fleet, control, serverappio = free_ports(3)
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        run_worker=False,
        worker_id="test",
        flower_fleet_port=fleet,
        flower_control_port=control,
        flower_serverappio_port=serverappio,
        federated_round_timeout_seconds=300,
        federated_run_timeout_seconds=1200,
        run_lease_seconds=600,
    )


@dataclass
class Federation:
    """The control plane, its lake's site partitions and the running Flower deployment."""

    client: TestClient
    settings: Settings
    partitions: dict[str, pandas.DataFrame]
    deployment: Deployment | None = None

    def register_model(self, name: str) -> None:
        created = self.client.post(
            "/api/v1/models",
            json={"name": name, "domain": "retail", "risk_tier": "low", "intended_use": "test"},
        )
        assert created.status_code == 201, created.text

    def add_site(
        self, name: str, frame: pandas.DataFrame, classification: str, **policy: Any
    ) -> str:
        """Ingest ``frame`` as dataset ``NAME-data`` and register site ``NAME`` holding it."""
        dataset = f"{name}-data"
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, self.settings.source_roots[0] / f"{dataset}.parquet")
        registered = self.client.post(
            "/api/v1/datasets",
            json={"name": dataset, "domain": "retail", "classification": classification},
        )
        assert registered.status_code == 201, registered.text
        run = self.run("ingest", f"dataset:{dataset}", source={"path": f"{dataset}.parquet"})
        assert run["state"] == "succeeded", run["error"]
        site = self.client.post(
            "/api/v1/sites",
            json={
                "name": name,
                "domain": "retail",
                "residency": "DE",
                "datasets": [dataset],
                "policy": policy,
            },
        )
        assert site.status_code == 201, site.text
        self.partitions[name] = frame
        site_id: str = site.json()["id"]
        return site_id

    def submit(self, kind: str, target: str, inputs: list[str] | None = None, **params: Any) -> str:
        submitted = self.client.post(
            "/api/v1/runs",
            json={"kind": kind, "target": target, "inputs": inputs or [], "params": params},
        )
        assert submitted.status_code == 202, submitted.text
        run_id: str = submitted.json()["id"]
        return run_id

    def run(
        self, kind: str, target: str, inputs: list[str] | None = None, **params: Any
    ) -> dict[str, Any]:
        return self.finish(self.submit(kind, target, inputs, **params))

    def train(self, model: str, sites: Iterable[str], **params: Any) -> dict[str, Any]:
        """A federated run training ``model`` to predict Adult's income on the sites' datasets."""
        return self.run(
            "federated_train",
            f"model:{model}",
            [f"dataset:{site}-data" for site in sites],
            label="income",
            positive_label=">50K",
            numeric=ADULT_SITE_NUMERIC,
            categorical=ADULT_SITE_CATEGORICAL,
            **params,
        )

    def finish(self, run_id: str) -> dict[str, Any]:
        drain(self.client)
        run: dict[str, Any] = self.client.get(f"/api/v1/runs/{run_id}").json()
        return run

    def start_flower(self) -> Deployment:
        self.deployment = site_deployment(self.settings, Database(self.settings.sqlalchemy_url))
        self.deployment.start()
        return self.deployment


def adult_partition(rows: int, workclasses: tuple[str, ...], sensitive: bool) -> pandas.DataFrame:
    """The first ``rows`` Adult rows of these employer types (without sex, race and
    native-country unless ``sensitive``)."""
    table = read_adult().slice(0, rows)
    table = table.filter(pc.is_in(table["workclass"], pa.array(workclasses)))
    frame = table.to_pandas()
    if not sensitive:
        frame = frame.drop(columns=["sex", "race", "native-country"])
    return frame.drop_duplicates().reset_index(drop=True)


@contextmanager
def watching(*watchers: Callable[[threading.Event], None]) -> Iterator[None]:
    """Run each watcher in a thread while the block runs; each is given an event set when the
    block has ended, and is waited for."""
    done = threading.Event()
    threads = [threading.Thread(target=watcher, args=(done,)) for watcher in watchers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        done.set()
        for thread in threads:
            thread.join()


def asked_to_train(deployment: Deployment, site: str, in_round: int, done: threading.Event) -> bool:
    """Wait until the site's SuperNode log shows a training message of ``in_round``; false if
    ``done`` is set first."""
    log = deployment.home / "logs" / f"supernode-{site}.log"
    asked = re.compile(rf"ROUND {in_round}\][^\n]*\n[^\n]*Receiving: train message")
    while not done.wait(0.5):
        if log.exists() and asked.search(log.read_text(errors="replace")):
            return True
    return False


@pytest.fixture
def federation(settings: Settings, admin_token: str) -> Iterator[Federation]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        found = Federation(client, settings, {})
        try:
            yield found
        finally:
            if found.deployment is not None:
                found.deployment.stop()

"""Governed ingest through the API: classify, check, gate, mask, write one snapshot, register,
record; and previews filtered per column for each caller."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from control_plane.app import create_app
from control_plane.sample_data import ADULT_SENSITIVE, read_adult
from control_plane.settings import Settings
from tests.conftest import as_caller, drain, principal_token


@dataclass
class Ingest:
    """A control plane with the real ingest executor, a data owner and a data scientist."""

    client: TestClient
    settings: Settings
    owner: dict[str, str]
    scientist: dict[str, str]

    @property
    def sources(self) -> Path:
        return self.settings.source_roots[0]

    def register(self, name: str, classification: str = "confidential") -> str:
        response = self.client.post(
            "/api/v1/datasets",
            json={"name": name, "domain": "retail", "classification": classification},
            headers=self.owner,
        )
        assert response.status_code == 201, response.text
        dataset_id: str = response.json()["id"]
        return dataset_id

    def ingest(self, name: str, **params: Any) -> dict[str, Any]:
        submitted = self.client.post(
            "/api/v1/runs",
            json={"kind": "ingest", "target": f"dataset:{name}", "params": params},
            headers=self.owner,
        )
        assert submitted.status_code == 202, submitted.text
        drain(self.client)
        run: dict[str, Any] = self.client.get(f"/api/v1/runs/{submitted.json()['id']}").json()
        return run

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/api/v1/datasets/{dataset_id}").json()
        return body


@pytest.fixture
def ingest(settings: Settings, admin_token: str) -> Iterator[Ingest]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        owner = principal_token(client, "olga", [("data_owner", "retail")])
        scientist = principal_token(
            client, "dana", [("data_scientist", "retail")], {"clearance": "confidential"}
        )
        yield Ingest(client, settings, as_caller(client, owner), as_caller(client, scientist))


@pytest.fixture(scope="module")
def adult() -> pa.Table:
    return read_adult().slice(0, 2000)


def test_adult_is_ingested_classified_registered_and_recorded(
    ingest: Ingest, adult: pa.Table
) -> None:
    # Given Adult as a Parquet file under the source root, registered as confidential
    pq.write_table(adult, ingest.sources / "adult.parquet")
    dataset_id = ingest.register("adult")
    # When its owner ingests it
    run = ingest.ingest("adult", source={"path": "adult.parquet"})
    # Then the run succeeds with the quality gate passed
    assert run["state"] == "succeeded", run["error"]
    assert [g["gate"] for g in run["gates"]] == ["data_quality"]
    assert run["gates"][0]["status"] == "pass"
    # And the dataset is registered with its lake snapshot, rows, schema and classification
    dataset = ingest.dataset(dataset_id)
    assert dataset["row_count"] == adult.num_rows
    assert dataset["snapshot_id"] == run["outputs"]["snapshot_id"]
    assert dataset["lake_table"] == "govplane.adult"
    assert dataset["quality_report"]["status"] == "pass"
    columns = {c["name"]: c for c in dataset["columns"]}
    assert list(columns) == adult.column_names
    assert {name for name, c in columns.items() if c["sensitive"]} == set(ADULT_SENSITIVE)
    assert columns["sex"]["required"] == "confidential"
    assert columns["age"]["type"] == "int64"
    # And the ingest is in the audit trail and in the lineage graph
    events = ingest.client.get("/api/v1/audit/events", params={"action": "dataset.ingest"})
    assert [e["resource"] for e in events.json()["items"]] == ["dataset:adult"]
    graph = ingest.client.get(
        "/api/v1/lineage/graph",
        params={"node": "dataset:govplane://datasets:adult", "direction": "upstream"},
    ).json()
    assert "job:govplane.retail:ingest.dataset.adult" in {n["id"] for n in graph["nodes"]}


def test_preview_shows_owner_values_and_scientist_pseudonyms(
    ingest: Ingest, adult: pa.Table
) -> None:
    # Given Adult ingested
    pq.write_table(adult, ingest.sources / "adult.parquet")
    dataset_id = ingest.register("adult")
    assert ingest.ingest("adult", source={"path": "adult.parquet"})["state"] == "succeeded"
    key = bytes.fromhex(ingest.settings.pseudonymization_key_path.read_text().strip())
    # When the owner and a data scientist preview it
    url = f"/api/v1/datasets/{dataset_id}/preview"
    mine = ingest.client.get(url, params={"limit": 5}, headers=ingest.owner).json()
    theirs = ingest.client.get(url, params={"limit": 5}, headers=ingest.scientist).json()
    # Then the owner sees values and the scientist the keyed pseudonyms of sensitive columns
    assert [row["sex"] for row in mine["rows"]] == adult.column("sex")[:5].to_pylist()
    assert [row["sex"] for row in theirs["rows"]] == [
        "pn_" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:32]
        for v in adult.column("sex")[:5].to_pylist()
    ]
    assert [row["age"] for row in theirs["rows"]] == adult.column("age")[:5].to_pylist()
    access = {c["name"]: c["access"] for c in theirs["columns"]}
    assert {n for n, a in access.items() if a == "pseudonyms"} == set(ADULT_SENSITIVE)


def test_a_scientist_below_a_columns_classification_gets_no_column(
    ingest: Ingest, adult: pa.Table
) -> None:
    pq.write_table(adult, ingest.sources / "adult.parquet")
    dataset_id = ingest.register("adult", classification="internal")
    run = ingest.ingest(
        "adult",
        source={"path": "adult.parquet"},
        columns={c: {"classification": "confidential"} for c in ADULT_SENSITIVE},
    )
    assert run["state"] == "succeeded", run["error"]
    junior = as_caller(
        ingest.client,
        principal_token(
            ingest.client, "jun", [("data_scientist", "retail")], {"clearance": "internal"}
        ),
    )
    body = ingest.client.get(f"/api/v1/datasets/{dataset_id}/preview", headers=junior).json()
    assert set(body["rows"][0]) == set(adult.column_names) - set(ADULT_SENSITIVE)


def test_an_under_declared_classification_fails_naming_the_columns(
    ingest: Ingest, adult: pa.Table
) -> None:
    pq.write_table(adult, ingest.sources / "adult.parquet")
    ingest.register("adult", classification="internal")
    run = ingest.ingest("adult", source={"path": "adult.parquet"})
    assert run["state"] == "failed"
    for column in ADULT_SENSITIVE:
        assert f"{column} (declared internal, required confidential" in run["error"]
    assert ingest.client.app.state.services.lake.tables() == []  # type: ignore[attr-defined]


def test_reingest_adds_a_snapshot_and_keeps_history(ingest: Ingest, adult: pa.Table) -> None:
    pa_csv.write_csv(adult.slice(0, 100), ingest.sources / "first.csv")
    pa_csv.write_csv(adult.slice(100, 50), ingest.sources / "second.csv")
    dataset_id = ingest.register("adult")
    first = ingest.ingest("adult", source={"path": "first.csv"})["outputs"]["snapshot_id"]
    second = ingest.ingest("adult", source={"path": "second.csv"})
    assert second["state"] == "succeeded", second["error"]
    dataset = ingest.dataset(dataset_id)
    assert dataset["snapshot_id"] == second["outputs"]["snapshot_id"] != first
    assert dataset["row_count"] == 150
    old = ingest.client.get(
        f"/api/v1/datasets/{dataset_id}/preview",
        params={"snapshot_id": first, "limit": 1000},
        headers=ingest.owner,
    ).json()
    assert len(old["rows"]) == 100
    # And the history lists both snapshots, oldest first, the second one registered
    history = ingest.client.get(
        f"/api/v1/datasets/{dataset_id}/snapshots", headers=ingest.scientist
    ).json()
    assert [(s["snapshot_id"], s["total_records"], s["registered"]) for s in history] == [
        (first, 100, False),
        (second["outputs"]["snapshot_id"], 150, True),
    ]


def test_email_columns_are_pseudonymized_at_ingest(ingest: Ingest) -> None:
    table = pa.table(
        {"contact": [f"user{i}@example.org" for i in range(50)], "age": list(range(20, 70))}
    )
    pq.write_table(table, ingest.sources / "people.parquet")
    dataset_id = ingest.register("people")
    run = ingest.ingest("people", source={"path": "people.parquet"})
    assert run["state"] == "succeeded", run["error"]
    assert run["outputs"]["columns"]["contact"]["transformation"] == "pseudonymize"
    assert ingest.dataset(dataset_id)["pii_columns"] == ["contact"]
    stored = ingest.client.app.state.services.lake.read("people")  # type: ignore[attr-defined]
    assert all(v.startswith("pn_") for v in stored.column("contact").to_pylist())


# Bad input: each fails the run with its reason and writes no snapshot.


def _fails(ingest: Ingest, name: str, reason: str, **params: Any) -> None:
    run = ingest.ingest(name, **params)
    assert run["state"] == "failed"
    assert reason in run["error"], run["error"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../../../etc/passwd", "outside the source roots"),
        ("/etc/hostname", "outside the source roots"),
        ("missing.parquet", "is not a readable file"),
    ],
)
def test_paths_outside_the_roots_or_missing_are_refused(
    ingest: Ingest, path: str, reason: str
) -> None:
    ingest.register("adult")
    _fails(ingest, "adult", reason, source={"path": path})


def test_unreadable_and_empty_files_fail(ingest: Ingest, adult: pa.Table) -> None:
    ingest.register("adult")
    (ingest.sources / "broken.parquet").write_bytes(b"not parquet at all")
    _fails(ingest, "adult", "cannot be read as parquet", source={"path": "broken.parquet"})
    pq.write_table(adult.slice(0, 0), ingest.sources / "empty.parquet")
    _fails(ingest, "adult", "holds no rows", source={"path": "empty.parquet"})
    (ingest.sources / "empty.csv").write_text("")
    _fails(ingest, "adult", "empty.csv", source={"path": "empty.csv"})
    assert ingest.client.app.state.services.lake.tables() == []  # type: ignore[attr-defined]


def test_an_incompatible_schema_change_fails_and_keeps_the_snapshot(
    ingest: Ingest, adult: pa.Table
) -> None:
    pq.write_table(adult, ingest.sources / "adult.parquet")
    pq.write_table(adult.drop_columns(["fnlwgt"]), ingest.sources / "changed.parquet")
    retyped = adult.set_column(0, "age", adult.column("age").cast(pa.string()))
    pq.write_table(retyped, ingest.sources / "retyped.parquet")
    dataset_id = ingest.register("adult")
    kept = ingest.ingest("adult", source={"path": "adult.parquet"})["outputs"]["snapshot_id"]
    _fails(
        ingest, "adult", "changed incompatibly: missing fnlwgt", source={"path": "changed.parquet"}
    )
    _fails(ingest, "adult", "column age is string, not integer", source={"path": "retyped.parquet"})
    lake = ingest.client.app.state.services.lake  # type: ignore[attr-defined]
    assert lake.snapshot_id("adult") == kept
    assert ingest.dataset(dataset_id)["snapshot_id"] == kept


def test_wrong_declared_types_fail_naming_the_column(ingest: Ingest, adult: pa.Table) -> None:
    pq.write_table(adult, ingest.sources / "adult.parquet")
    ingest.register("adult")
    _fails(
        ingest,
        "adult",
        "wrong declared types: workclass is not int64",
        source={"path": "adult.parquet"},
        columns={"workclass": {"type": "int64"}},
    )


def test_a_missing_key_fails_the_run_naming_the_columns(ingest: Ingest) -> None:
    table = pa.table({"contact": [f"user{i}@example.org" for i in range(50)]})
    pq.write_table(table, ingest.sources / "people.parquet")
    ingest.register("people")
    ingest.settings.pseudonymization_key_path.unlink()
    _fails(
        ingest,
        "people",
        "does not exist; columns contact must be pseudonymized",
        source={"path": "people.parquet"},
    )
    assert ingest.client.app.state.services.lake.tables() == []  # type: ignore[attr-defined]


def test_invalid_params_fail_the_run(ingest: Ingest) -> None:
    ingest.register("adult")
    _fails(ingest, "adult", "exactly one of source.path or source.upload", source={})

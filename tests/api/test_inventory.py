"""Datasets, models and sites: registered by whom the policy allows, visible to whom it allows."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import as_caller, principal_token


def _create_dataset(
    client: TestClient, name: str, domain: str, classification: str, token: str | None = None
) -> int:
    headers = as_caller(client, token) if token else None
    body = {"name": name, "domain": domain, "classification": classification}
    return client.post("/api/v1/datasets", json=body, headers=headers).status_code


def _names(client: TestClient, path: str, token: str) -> list[str]:
    response = client.get(path, params={"limit": 200}, headers=as_caller(client, token))
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_a_dataset_is_owned_by_whoever_registers_it(client: TestClient) -> None:
    # Given a data owner of the retail domain
    owner = principal_token(client, "olga", [("data_owner", "retail")])
    # When she registers a dataset with columns, PII columns and a privacy budget
    response = client.post(
        "/api/v1/datasets",
        headers=as_caller(client, owner),
        json={
            "name": "adult",
            "domain": "retail",
            "classification": "confidential",
            "columns": [{"name": "age", "type": "int"}, {"name": "sex", "type": "string"}],
            "pii_columns": ["sex"],
            "privacy_budget": {"epsilon": 8.0, "delta": 1e-5},
        },
    )
    # Then it is stored with her as owner and reads back the same
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["owner"] == "olga"
    assert created["privacy_budget"] == {"epsilon": 8.0, "delta": 1e-5}
    assert client.get(f"/api/v1/datasets/{created['id']}").json() == created


def test_a_dataset_name_is_its_lake_table_name_so_it_has_no_dots(client: TestClient) -> None:
    # Iceberg would read the dots of "sales.v2" as namespace levels
    response = client.post(
        "/api/v1/datasets",
        json={"name": "sales.v2", "domain": "retail", "classification": "internal"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "name"]
    assert _create_dataset(client, "sales-v2@eu", "retail", "internal") == 201


def test_a_data_owner_cannot_register_in_another_domain(client: TestClient) -> None:
    owner = principal_token(client, "olga", [("data_owner", "retail")])
    assert _create_dataset(client, "claims", "insurance", "internal", owner) == 403
    assert _create_dataset(client, "basket", "retail", "internal", owner) == 201


def test_lists_show_only_what_the_caller_may_read(client: TestClient) -> None:
    # Given datasets in two domains and of two classifications
    for name, domain, classification in (
        ("retail-public", "retail", "public"),
        ("retail-internal", "retail", "internal"),
        ("retail-restricted", "retail", "restricted"),
        ("insurance-internal", "insurance", "internal"),
    ):
        assert _create_dataset(client, name, domain, classification) == 201
    # And a retail data scientist cleared for internal data
    scientist = principal_token(
        client, "sam", [("data_scientist", "retail")], {"clearance": "internal"}
    )
    # Then the list holds only the retail datasets at or below her clearance
    assert _names(client, "/api/v1/datasets", scientist) == ["retail-public", "retail-internal"]


def test_reading_a_forbidden_dataset_is_403_with_the_rule(client: TestClient) -> None:
    assert _create_dataset(client, "claims", "insurance", "internal") == 201
    dataset_id = client.get("/api/v1/datasets").json()["items"][0]["id"]
    scientist = principal_token(
        client, "sam", [("data_scientist", "retail")], {"clearance": "internal"}
    )
    response = client.get(f"/api/v1/datasets/{dataset_id}", headers=as_caller(client, scientist))
    assert response.status_code == 403
    assert response.json()["rule"]


def test_pagination_skips_invisible_rows_without_short_pages(client: TestClient) -> None:
    # Given visible and invisible datasets interleaved
    for index in range(6):
        domain = "retail" if index % 2 == 0 else "insurance"
        assert _create_dataset(client, f"d{index}", domain, "public") == 201
    scientist = principal_token(
        client, "sam", [("data_scientist", "retail")], {"clearance": "internal"}
    )
    headers = as_caller(client, scientist)
    # When paging two at a time
    first = client.get("/api/v1/datasets", params={"limit": 2}, headers=headers).json()
    second = client.get(
        "/api/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    # Then the pages are full and the last page says so
    assert [d["name"] for d in first["items"]] == ["d0", "d2"]
    assert [d["name"] for d in second["items"]] == ["d4"]
    assert second["next_cursor"] is None


def test_models_and_versions(client: TestClient) -> None:
    body = {"name": "credit", "domain": "retail", "risk_tier": "high", "intended_use": "credit"}
    created = client.post("/api/v1/models", json=body)
    assert created.status_code == 201
    assert created.json()["owner"] == "admin"
    assert (
        client.get("/api/v1/models", params={"risk_tier": "high"}).json()["items"][0]["name"]
        == "credit"
    )
    assert client.get("/api/v1/models", params={"risk_tier": "low"}).json()["items"] == []
    assert client.get("/api/v1/models/credit/versions/1").status_code == 404
    assert client.get("/api/v1/models/credit/versions/0").status_code == 422


def test_sites_record_their_operator_and_residency(client: TestClient) -> None:
    operator = principal_token(client, "otto", [("site_operator", "health")])
    response = client.post(
        "/api/v1/sites",
        headers=as_caller(client, operator),
        json={
            "name": "hospital-a",
            "domain": "health",
            "residency": "DE",
            "attributes": {"beds": 400},
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["operator"] == "otto"
    assert _names(client, "/api/v1/sites", operator) == ["hospital-a"]
    bad = client.post(
        "/api/v1/sites", json={"name": "x", "domain": "health", "residency": "Germany"}
    )
    assert bad.status_code == 422


def test_a_site_naming_a_dataset_that_does_not_exist_is_invalid_and_not_stored(
    client: TestClient,
) -> None:
    response = client.post(
        "/api/v1/sites",
        json={"name": "clinic", "domain": "health", "residency": "DE", "datasets": ["nope"]},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "no dataset named 'nope'"
    assert client.get("/api/v1/sites").json()["items"] == []

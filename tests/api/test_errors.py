"""Bad input gets a precise problem+json and leaves the store as it was."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def _problem(response_status: int, response: Any) -> dict[str, object]:
    assert response.status_code == response_status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == response_status
    assert body["title"]
    assert body["detail"]
    return body


def _principal_count(client: TestClient) -> int:
    return len(client.get("/api/v1/principals", params={"limit": 200}).json()["items"])


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/v1/datasets", content=b'{"name": "x",', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in str(_problem(400, response)["detail"])


def test_unknown_fields_are_refused(client: TestClient) -> None:
    # A client cannot set the owner by mass assignment
    response = client.post(
        "/api/v1/datasets",
        json={"name": "adult", "domain": "retail", "classification": "internal", "owner": "eve"},
    )
    assert "owner" in str(_problem(422, response)["detail"])


def test_wrong_types_name_the_field(client: TestClient) -> None:
    response = client.post(
        "/api/v1/models",
        json={"name": "m", "domain": "retail", "risk_tier": "extreme", "intended_use": "x"},
    )
    assert "risk_tier" in str(_problem(422, response)["detail"])


def test_declared_oversized_body_is_413(client: TestClient) -> None:
    response = client.post(
        "/api/v1/datasets",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    _problem(413, response)


def test_streamed_oversized_body_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 65_536

    response = client.post(
        "/api/v1/datasets", content=chunks(), headers={"content-type": "application/json"}
    )
    _problem(413, response)


def test_unknown_ids_are_404(client: TestClient) -> None:
    for path in (
        "/api/v1/datasets/0" + "f" * 31,
        "/api/v1/principals/nope",
        "/api/v1/runs/nope",
        "/api/v1/models/nope",
        "/api/v1/models/nope/versions/1",
    ):
        _problem(404, client.get(path))


def test_unknown_routes_and_methods(client: TestClient) -> None:
    _problem(404, client.get("/api/v1/nothing-here"))
    _problem(405, client.delete("/api/v1/datasets"))


@pytest.mark.parametrize("cursor", ["zz", "1" * 33, "../../etc"])
def test_malformed_cursor_is_422(client: TestClient, cursor: str) -> None:
    _problem(422, client.get("/api/v1/datasets", params={"cursor": cursor}))


@pytest.mark.parametrize("limit", [0, -1, 201, "many"])
def test_out_of_range_limit_is_422(client: TestClient, limit: object) -> None:
    _problem(422, client.get("/api/v1/runs", params={"limit": limit}))


def test_unknown_role_creates_nothing(client: TestClient) -> None:
    # Given the principals that exist
    before = _principal_count(client)
    # When a principal is created with a role no bundle defines
    response = client.post(
        "/api/v1/principals",
        json={"name": "bob", "kind": "user", "roles": [{"role": "superuser", "domain": "retail"}]},
    )
    # Then it is refused, naming the role, and no principal was written
    assert "superuser" in str(_problem(422, response)["detail"])
    assert _principal_count(client) == before


def test_duplicate_names_are_409_and_the_original_stays(client: TestClient) -> None:
    body = {"name": "credit", "domain": "retail", "risk_tier": "high", "intended_use": "scoring"}
    first = client.post("/api/v1/models", json=body)
    assert first.status_code == 201
    _problem(409, client.post("/api/v1/models", json={**body, "risk_tier": "low"}))
    assert client.get("/api/v1/models/credit").json()["risk_tier"] == "high"


def test_the_server_keeps_serving_after_bad_input(client: TestClient) -> None:
    client.post("/api/v1/runs", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert client.get("/api/v1/health").json() == {"status": "ok"}


NUL_BODIES = [
    ("/api/v1/models", {"intended_use": "scoring\x00", "description": "x"}),
    ("/api/v1/models", {"intended_use": "scoring", "description": "\x00"}),
    ("/api/v1/datasets", {"location": "s3://lake/\x00"}),
    ("/api/v1/datasets", {"columns": [{"name": "age", "type": "int\x00"}]}),
    ("/api/v1/sites", {"node_id": "node\x00"}),
    ("/api/v1/principals", {"oidc_subject": "sub\x00", "attributes": {"team": "a\x00"}}),
]
NUL_BASE = {
    "/api/v1/models": {"name": "credit", "domain": "retail", "risk_tier": "low"},
    "/api/v1/datasets": {"name": "adult", "domain": "retail", "classification": "internal"},
    "/api/v1/sites": {"name": "berlin", "domain": "retail", "residency": "DE"},
    "/api/v1/principals": {"name": "nul", "kind": "user"},
}


@pytest.mark.parametrize(("path", "fields"), NUL_BODIES)
def test_nul_characters_in_text_are_422(
    client: TestClient, path: str, fields: dict[str, Any]
) -> None:
    # Found by fuzzing: PostgreSQL text cannot hold NUL, and such a request was a 500
    body = {"intended_use": "scoring", **NUL_BASE[path], **fields}
    if path != "/api/v1/models":
        del body["intended_use"]
    before = client.get(path, params={"limit": 200}).json()["items"]
    _problem(422, client.post(path, json=body))
    assert client.get(path, params={"limit": 200}).json()["items"] == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/a%00",
        "/api/v1/principals/a%00",
        "/api/v1/runs/a%00",
        "/api/v1/models/a%00",
        "/api/v1/models/a%00/versions/1",
    ],
)
def test_nul_characters_in_path_keys_are_422(client: TestClient, path: str) -> None:
    _problem(422, client.get(path))
    assert client.get("/api/v1/health").status_code == 200

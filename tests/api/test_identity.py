"""Who is asking: bearer tokens are required and checked on every route but /health."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import principal_token


def _status(client: TestClient, token: str | None, path: str = "/api/v1/datasets") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {"Authorization": ""}
    return client.get(path, headers=headers).status_code


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/api/v1/health", headers={"Authorization": ""}).status_code == 200


def test_missing_token_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/datasets", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


def test_tampered_or_unknown_tokens_are_401(client: TestClient, admin_token: str) -> None:
    assert _status(client, admin_token[:-1] + ("A" if admin_token[-1] != "A" else "B")) == 401
    assert _status(client, "gp_" + "x" * 43) == 401
    assert _status(client, "not-a-token") == 401
    assert client.get("/api/v1/datasets", headers={"Authorization": "Basic abc"}).status_code == 401


def test_expired_tokens_are_401(client: TestClient) -> None:
    # Given a token issued with an expiry that has passed (set directly in the store)
    from datetime import timedelta

    from control_plane.identity.tokens import issue_token
    from control_plane.store import utcnow
    from control_plane.store.models import Principal

    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        admin = session.query(Principal).filter_by(name="admin").one()
        expired = issue_token(session, admin.id, utcnow() - timedelta(minutes=1))
    # Then it no longer authenticates
    assert _status(client, expired) == 401


def test_every_api_route_but_health_requires_a_token(client: TestClient) -> None:
    # Given every route of the API
    schema = client.get("/openapi.json").json()
    # Then each one answers 401 without a token
    for path, operations in schema["paths"].items():
        if path == "/api/v1/health":
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in operations:
            response = client.request(method, concrete, headers={"Authorization": ""}, json={})
            assert response.status_code == 401, (method, path, response.status_code)


def test_new_tokens_authenticate_their_principal(client: TestClient) -> None:
    token = principal_token(client, "carol", [("auditor", "*")])
    response = client.get("/api/v1/datasets", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200

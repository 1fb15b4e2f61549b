"""``/policies``: the active bundle, proposals as governed runs, and the decision endpoint."""

from __future__ import annotations

from fastapi.testclient import TestClient

from policies import DEFAULT_BUNDLE_DIR
from tests.conftest import as_caller, drain, principal_token


def _default_files() -> dict[str, str]:
    return {
        path.name: path.read_text()
        for path in DEFAULT_BUNDLE_DIR.iterdir()
        if path.is_file() and path.suffix in {".conf", ".csv", ".yaml"}
    }


def test_the_active_bundle_and_its_history(client: TestClient) -> None:
    body = client.get("/api/v1/policies").json()
    assert body["active"]["status"] == "active"
    assert body["active"]["version"].startswith("sha256:")
    assert set(body["files"]) >= {"model.conf", "policy.csv", "gates.yaml"}
    assert [row["version"] for row in body["history"]] == [body["active"]["version"]]


def test_decide_answers_with_the_deciding_rule(client: TestClient) -> None:
    principal_token(client, "sam", [("data_scientist", "retail")])
    body = {
        "subject": "sam",
        "domain": "retail",
        "object": "dataset:adult",
        "action": "read",
        "attributes": {"classification": "restricted", "clearance": "internal"},
    }
    denied = client.post("/api/v1/policies/decide", json=body).json()
    allowed = client.post(
        "/api/v1/policies/decide",
        json={**body, "attributes": {**body["attributes"], "classification": "internal"}},
    ).json()
    assert denied["allowed"] is False
    assert denied["rule"]
    assert allowed["allowed"] is True
    assert allowed["rule"].startswith("p, data_scientist")
    assert allowed["bundle_version"] == client.get("/api/v1/policies").json()["active"]["version"]


def test_a_proposal_is_a_policy_change_run_that_waits_for_approval(client: TestClient) -> None:
    # Given a changed bundle
    files = _default_files()
    files["policy.csv"] += "\np, auditor, *, metrics:*, read, allow, true\n"
    # When it is proposed
    response = client.post("/api/v1/policies", json={"files": files})
    assert response.status_code == 202, response.text
    proposal = response.json()
    drain(client)
    # Then a policy_change run waits for approval and the active bundle is unchanged
    run = client.get(f"/api/v1/runs/{proposal['run']['id']}").json()
    assert run["kind"] == "policy_change"
    assert run["state"] == "awaiting_approval"
    policies = client.get("/api/v1/policies").json()
    assert policies["active"]["version"] != proposal["version"]
    assert {row["status"] for row in policies["history"]} == {"active", "proposed"}
    # And once approved, the run activates it and decisions use the new version
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        services.runs.resume(session, run["id"], approved=True, reason="approved")
    drain(client)
    assert client.get(f"/api/v1/runs/{run['id']}").json()["state"] == "succeeded"
    assert client.get("/api/v1/policies").json()["active"]["version"] == proposal["version"]
    decision = client.post(
        "/api/v1/policies/decide",
        json={"subject": "admin", "domain": "*", "object": "x:y", "action": "read"},
    ).json()
    assert decision["bundle_version"] == proposal["version"]


def test_a_broken_proposal_is_422_naming_the_file(client: TestClient) -> None:
    files = _default_files()
    files["model.conf"] = "[request_definition]\nr = sub, obj\n[matchers]\nm = r.sub ==\n"
    response = client.post("/api/v1/policies", json={"files": files})
    assert response.status_code == 422
    assert "model.conf" in response.json()["detail"]
    assert len(client.get("/api/v1/policies").json()["history"]) == 1


def test_proposing_the_active_bundle_is_409(client: TestClient) -> None:
    assert client.post("/api/v1/policies", json={"files": _default_files()}).status_code == 409


def test_only_authorized_callers_may_propose_or_decide(client: TestClient) -> None:
    scientist = principal_token(client, "sam", [("data_scientist", "retail")])
    headers = as_caller(client, scientist)
    assert (
        client.post(
            "/api/v1/policies", json={"files": _default_files()}, headers=headers
        ).status_code
        == 403
    )
    files = _default_files()
    files["gates.yaml"] += "\n# change\n"
    assert (
        client.post("/api/v1/policies", json={"files": files}, headers=headers).status_code == 403
    )

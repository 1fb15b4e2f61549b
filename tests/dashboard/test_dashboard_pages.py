"""The dashboard through HTTP: login, CSRF, what each viewer sees, deciding approvals, escaping,
no N+1 queries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from control_plane.app import create_app
from control_plane.runs import RunKind
from control_plane.settings import Settings
from control_plane.store.models import ModelVersion
from tests.api.test_authorization_matrix import EVALUATED
from tests.conftest import RecordingExecutor, drain, principal_token

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _browser(settings: Settings, executors: dict[RunKind, RecordingExecutor]) -> TestClient:
    """A client without a bearer token: it holds cookies, as a browser does."""
    return TestClient(create_app(settings, executors), raise_server_exceptions=False)


def _login(browser: TestClient, token: str) -> Any:
    form = browser.get("/login")
    match = _CSRF.search(form.text)
    assert match, form.text
    return browser.post(
        "/login", data={"token": token, "csrf": match.group(1)}, follow_redirects=False
    )


@pytest.fixture
def browser(
    client: TestClient, settings: Settings, executors: dict[RunKind, RecordingExecutor]
) -> Iterator[TestClient]:
    with _browser(settings, executors) as web:
        yield web


def _seed(client: TestClient) -> None:
    """Objects in two domains, each with a trained run, an evaluated version and its staging
    promotion waiting for an approval."""
    for domain in ("retail", "insurance"):
        created = client.post(
            "/api/v1/datasets",
            json={"name": f"ds-{domain}", "domain": domain, "classification": "internal"},
        )
        assert created.status_code == 201, created.text
        created = client.post(
            "/api/v1/models",
            json={
                "name": f"model-{domain}",
                "domain": domain,
                "risk_tier": "medium",
                "intended_use": "<script>alert('x')</script>",
            },
        )
        assert created.status_code == 201, created.text
        body = {
            "kind": "train",
            "target": f"model:model-{domain}",
            "inputs": [f"dataset:ds-{domain}"],
        }
        assert client.post("/api/v1/runs", json=body).status_code == 202
        _evaluated_version(client, created.json()["id"])
        body = {
            "kind": "promote",
            "target": f"model:model-{domain}",
            "params": {"target_stage": "staging", "version": 1},
        }
        assert client.post("/api/v1/runs", json=body).status_code == 202, body
    drain(client)


def _evaluated_version(client: TestClient, model_id: str) -> None:
    """Version 1 of a model, with the passed evaluation its promotion's evidence gate asks."""
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        session.add(ModelVersion(model_id=model_id, version=1, evidence=EVALUATED))


def test_pages_need_a_login(browser: TestClient) -> None:
    for page in ("/", "/approvals", "/privacy", "/lineage", "/maturity", "/audit"):
        response = browser.get(page, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login"), page


def test_login_sets_a_strict_http_only_cookie(browser: TestClient, admin_token: str) -> None:
    # When the admin logs in with its API token
    response = _login(browser, admin_token)
    # Then it is sent to the inventory with an HttpOnly, SameSite=Strict session cookie
    assert (response.status_code, response.headers["location"]) == (303, "/")
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("govplane_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert admin_token not in cookie
    assert browser.get("/").status_code == 200


def test_the_cookie_is_secure_over_https(
    client: TestClient,
    settings: Settings,
    executors: dict[RunKind, RecordingExecutor],
    admin_token: str,
) -> None:
    with TestClient(create_app(settings, executors), base_url="https://testserver") as web:
        response = _login(web, admin_token)
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("govplane_session=")
        )
        assert "Secure" in cookie


def test_forms_without_the_csrf_token_are_refused(browser: TestClient, admin_token: str) -> None:
    browser.get("/login")
    refused = browser.post("/login", data={"token": admin_token, "csrf": "forged"})
    assert refused.status_code == 403
    assert _login(browser, admin_token).status_code == 303
    assert browser.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert browser.get("/", follow_redirects=False).status_code == 200


def test_a_bad_token_does_not_log_in(browser: TestClient) -> None:
    response = _login(browser, "gp_not-a-token")
    assert response.status_code == 401
    assert "unknown, revoked or expired token" in response.text
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_logout_ends_the_session(browser: TestClient, admin_token: str) -> None:
    _login(browser, admin_token)
    csrf = _CSRF.search(browser.get("/").text)
    assert csrf
    assert (
        browser.post("/logout", data={"csrf": csrf.group(1)}, follow_redirects=False).status_code
        == 303
    )
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_each_viewer_sees_only_its_domain(client: TestClient, browser: TestClient) -> None:
    # Given objects in retail and insurance, and a validator of retail only
    _seed(client)
    validator = principal_token(
        client, "vic", [("model_validator", "retail")], {"clearance": "internal"}
    )
    _login(browser, validator)
    # When the validator opens the inventory and the approvals
    inventory = browser.get("/").text
    approvals = browser.get("/approvals").text
    # Then retail's model and approval show, insurance's do not
    assert "model-retail" in inventory
    assert "model-insurance" not in inventory
    assert "model:model-retail" in approvals
    assert "model:model-insurance" not in approvals
    # And the validator may decide the approval from the page
    assert 'value="approve"' in approvals
    assert "disabled" not in approvals


def test_everything_shown_is_escaped(
    client: TestClient, browser: TestClient, admin_token: str
) -> None:
    _seed(client)
    _login(browser, admin_token)
    page = browser.get("/").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def test_a_run_page_shows_each_gate(
    client: TestClient, browser: TestClient, admin_token: str
) -> None:
    _seed(client)
    _login(browser, admin_token)
    runs = client.get("/api/v1/runs").json()["items"]
    train = next(r for r in runs if r["kind"] == "train")
    gates = client.get(f"/api/v1/runs/{train['id']}").json()["gates"]
    page = browser.get(f"/runs/{train['id']}").text
    assert gates
    for gate in gates:
        assert gate["gate"] in page
        assert gate["status"] in page
    assert browser.get("/runs/" + "0" * 32).status_code == 404


def test_a_viewer_without_the_right_gets_a_403_page(
    client: TestClient, browser: TestClient
) -> None:
    scientist = principal_token(client, "sam", [("data_scientist", "retail")])
    _login(browser, scientist)
    for page in ("/audit", "/maturity"):
        response = browser.get(page)
        assert response.status_code == 403, page
        assert response.headers["content-type"].startswith("text/html")


def test_budgets_lineage_maturity_and_audit_pages(
    client: TestClient, browser: TestClient, admin_token: str
) -> None:
    _seed(client)
    _login(browser, admin_token)
    assert "ds-retail" in browser.get("/privacy").text
    lineage = browser.get("/lineage", params={"node": "dataset:govplane://datasets:ds-retail"})
    assert lineage.status_code == 200
    assert "<svg" in lineage.text
    assert "train.model.model-retail" in lineage.text
    maturity = browser.get("/maturity").text
    assert "single breakthrough" in maturity
    assert "NIST AI RMF" in maturity
    audit = browser.get("/audit").text
    assert "valid" in audit
    export = browser.get("/audit/export?format=jsonl")
    assert export.status_code == 200
    assert export.content


def test_the_inventory_reads_a_fixed_number_of_queries(
    client: TestClient, browser: TestClient, admin_token: str
) -> None:
    # Given the queries of the inventory page with few objects
    _login(browser, admin_token)
    _seed(client)
    few = _count_queries(client, browser)
    # When many more models, datasets and runs exist
    for index in range(12):
        client.post(
            "/api/v1/models",
            json={"name": f"m{index}", "domain": "retail", "risk_tier": "low", "intended_use": "x"},
        )
    # Then the page still reads them with the same number of queries
    assert _count_queries(client, browser) == few


def _count_queries(client: TestClient, browser: TestClient) -> int:
    engine = client.app.state.services.db.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert browser.get("/").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


def _pending(client: TestClient, model: str) -> dict[str, Any]:
    listed = client.get("/api/v1/approvals", params={"status": "pending", "model": model})
    (approval,) = listed.json()["items"]
    result: dict[str, Any] = approval
    return result


def _decide(browser: TestClient, approval_id: str, decision: str, comment: str) -> Any:
    csrf = _CSRF.search(browser.get("/approvals").text)
    assert csrf
    return browser.post(
        f"/approvals/{approval_id}/decisions",
        data={"csrf": csrf.group(1), "decision": decision, "comment": comment},
        follow_redirects=False,
    )


def test_a_validator_approves_from_the_page(client: TestClient, browser: TestClient) -> None:
    # Given a medium-risk staging promotion waiting for one model validator
    _seed(client)
    approval = _pending(client, "model-retail")
    validator = principal_token(
        client, "vic", [("model_validator", "retail")], {"clearance": "internal"}
    )
    _login(browser, validator)
    # When the validator approves it from the approvals page
    response = _decide(browser, approval["id"], "approve", "card <checked>")
    # Then it is sent back to the list, which says what happened, once
    assert (response.status_code, response.headers["location"]) == (303, "/approvals")
    page = browser.get("/approvals").text
    assert "You decided approve on model:model-retail: the approval is approved" in page
    assert 'id="flash"' not in browser.get("/approvals").text
    # And the approval records the decision, as the API shows it
    recorded = client.get(f"/api/v1/approvals/{approval['id']}").json()
    assert recorded["status"] == "approved"
    assert [(d["approver"], d["decision"], d["comment"]) for d in recorded["decisions"]] == [
        ("vic", "approve", "card <checked>")
    ]
    # And the promotion run is released from its wait
    run = client.get(f"/api/v1/runs/{approval['run_id']}").json()
    assert run["state"] != "awaiting_approval"
    # And a changed decision from a page shown earlier is refused (409) on the page
    assert _decide(browser, approval["id"], "reject", "").status_code == 303
    assert "Refused: vic already decided approve" in browser.get("/approvals").text
    unknown = _decide(browser, "0" * 32, "approve", "")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")


@pytest.fixture
def admin_pending(client: TestClient, browser: TestClient, admin_token: str) -> dict[str, Any]:
    """The admin's browser session and the staging promotion of model-retail it submitted."""
    _seed(client)
    _login(browser, admin_token)
    return _pending(client, "model-retail")


def test_a_decision_without_the_csrf_token_is_refused(
    client: TestClient, browser: TestClient, admin_pending: dict[str, Any]
) -> None:
    action = f"/approvals/{admin_pending['id']}/decisions"
    # A form without the token is incomplete, one with another token is refused
    assert browser.post(action, data={"decision": "approve"}).status_code == 422
    forged = browser.post(action, data={"decision": "approve", "csrf": "forged"})
    assert forged.status_code == 403
    assert "CSRF" in forged.text
    assert client.get(f"/api/v1/approvals/{admin_pending['id']}").json()["decisions"] == []


def test_the_submitter_is_refused_with_the_reason_shown(
    client: TestClient, browser: TestClient, admin_pending: dict[str, Any]
) -> None:
    # Given a promotion the admin submitted, which the admin's role may otherwise approve
    approval = admin_pending
    assert f'action="/approvals/{approval["id"]}/decisions"' in browser.get("/approvals").text
    # When the admin approves it from the page
    response = _decide(browser, approval["id"], "approve", "")
    # Then the list shows the separation-of-duties refusal, and nothing is decided
    assert response.status_code == 303
    page = browser.get("/approvals").text
    assert "Refused: admin may not decide approval" in page
    assert "separation of duties" in page
    assert "Traceback" not in page
    recorded = client.get(f"/api/v1/approvals/{approval['id']}").json()
    assert (recorded["status"], recorded["decisions"]) == ("pending", [])
    # And the refusal is on the audit trail
    events = client.get("/api/v1/audit/events", params={"action": "approval.decide"}).json()
    assert [e["decision"] for e in events["items"]] == ["refused"]


def test_decisions_so_far_are_listed(client: TestClient, browser: TestClient) -> None:
    # Given a high-risk production promotion that needs a validator and a risk officer
    created = client.post(
        "/api/v1/models",
        json={"name": "scorer", "domain": "retail", "risk_tier": "high", "intended_use": "x"},
    )
    _evaluated_version(client, created.json()["id"])
    body = {
        "kind": "promote",
        "target": "model:scorer",
        "params": {"target_stage": "production", "version": 1},
    }
    assert client.post("/api/v1/runs", json=body).status_code == 202
    drain(client)
    approval = _pending(client, "scorer")
    validator = principal_token(
        client, "vic", [("model_validator", "retail")], {"clearance": "internal"}
    )
    _login(browser, validator)
    # When the validator approves it and the officer has not yet
    assert _decide(browser, approval["id"], "approve", "fair enough").status_code == 303
    page = browser.get("/approvals").text
    # Then the approval stays listed, with the decision so far
    assert "the approval is pending" in page
    assert "approve</span> by vic (model_validator): fair enough" in page

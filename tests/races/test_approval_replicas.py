"""Concurrent decisions on one approval, through two real ``govplane serve`` replicas.

The policy change approval of the bundle used here needs two distinct risk officers. Fifty of
them approve at once, half through each replica: exactly two decisions count, the approval
completes once, and the run resumes and executes once. Fifty identical calls by one principal
record one decision.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.races.conftest import replicas_with_policy_change

CALLS = 50
# Two replicas start, fifty principals are made and fifty calls race: slow on a loaded machine
pytestmark = pytest.mark.timeout(1200)
TWO_RISK_OFFICERS = "policy_change:\n  approvers: 2\n  roles: [risk_officer]\n"


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[list[str], str, Path]]:
    """Two replicas on a bundle whose policy changes need two risk officers."""
    with replicas_with_policy_change(tmp_path, database_url, TWO_RISK_OFFICERS) as up:
        yield up


_HTTP = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=CALLS))


def _call(method: str, url: str, token: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return _HTTP.request(method, url, headers=headers, json=body)


def _risk_officer(url: str, admin: str, name: str) -> str:
    created = _call(
        "POST",
        f"{url}/api/v1/principals",
        admin,
        {"name": name, "kind": "user", "roles": [{"role": "risk_officer", "domain": "*"}]},
    )
    assert created.status_code == 201, created.text
    issued = _call("POST", f"{url}/api/v1/principals/{created.json()['id']}/tokens", admin)
    token: str = issued.json()["token"]
    return token


def _waiting_approval(url: str, admin: str, bundle: Path, note: str) -> tuple[str, str]:
    """Propose a bundle change; once it awaits approval, its (run id, approval id)."""
    files = {p.name: p.read_text() for p in bundle.iterdir() if p.is_file()}
    files["policy.csv"] += f"# {note}\n"
    proposed = _call("POST", f"{url}/api/v1/policies", admin, {"files": files})
    assert proposed.status_code == 202, proposed.text
    run_id: str = proposed.json()["run"]["id"]
    deadline = time.monotonic() + 60
    while _call("GET", f"{url}/api/v1/runs/{run_id}", admin).json()["state"] != (
        "awaiting_approval"
    ):
        assert time.monotonic() < deadline, "the run never reached its approval"
        time.sleep(0.1)
    items = _call("GET", f"{url}/api/v1/approvals?limit=200", admin).json()["items"]
    (approval,) = [a for a in items if a["run_id"] == run_id]
    return run_id, approval["id"]


def _finished_run(url: str, admin: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        run: dict[str, Any] = _call("GET", f"{url}/api/v1/runs/{run_id}", admin).json()
        if run["state"] not in ("running", "awaiting_approval", "pending"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} did not finish"
        time.sleep(0.1)


def test_fifty_concurrent_approvals_complete_once_and_execute_once(
    replicas: tuple[list[str], str, Path],
) -> None:
    # Given a policy change waiting for two risk officers, and fifty of them
    urls, admin, bundle = replicas
    run_id, approval_id = _waiting_approval(urls[0], admin, bundle, "race")
    officers = [_risk_officer(urls[0], admin, f"officer-{i}") for i in range(CALLS)]
    # When all fifty approve at once, alternating between the replicas
    path = f"/api/v1/approvals/{approval_id}/decisions"
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        answers = list(
            pool.map(
                lambda i: _call(
                    "POST", f"{urls[i % 2]}{path}", officers[i], {"decision": "approve"}
                ),
                range(CALLS),
            )
        )
    # Then exactly two decisions counted, the rest found the approval closed
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 2 + [409] * (CALLS - 2), statuses
    approval = _call("GET", f"{urls[1]}/api/v1/approvals/{approval_id}", admin).json()
    assert approval["status"] == "approved"
    assert len(approval["decisions"]) == 2
    # And the run resumed once and executed once
    run = _finished_run(urls[0], admin, run_id)
    assert run["state"] == "succeeded", run
    assert [t["to_state"] for t in run["transitions"]] == [
        "pending",
        "running",
        "awaiting_approval",
        "running",
        "succeeded",
    ]
    events = _call(
        "GET", f"{urls[0]}/api/v1/audit/events?action=policy.activate&run_id={run_id}", admin
    ).json()
    assert len(events["items"]) == 1
    assert _call("GET", f"{urls[0]}/api/v1/audit/verify", admin).json()["valid"] is True


def test_fifty_identical_calls_by_one_principal_record_one_decision(
    replicas: tuple[list[str], str, Path],
) -> None:
    urls, admin, bundle = replicas
    _, approval_id = _waiting_approval(urls[0], admin, bundle, "repeat")
    officer = _risk_officer(urls[0], admin, "officer")
    path = f"/api/v1/approvals/{approval_id}/decisions"
    body = {"decision": "approve", "comment": "once"}
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        answers = list(
            pool.map(lambda i: _call("POST", f"{urls[i % 2]}{path}", officer, body), range(CALLS))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * (CALLS - 1) + [201], statuses
    approval = _call("GET", f"{urls[0]}/api/v1/approvals/{approval_id}", admin).json()
    assert approval["status"] == "pending"
    assert [d["approver"] for d in approval["decisions"]] == ["officer"]

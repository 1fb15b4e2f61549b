"""The policy case files, replayed against the HTTP decision endpoint.

The same files run against the engine in ``tests/policies``; here every subject is created as a
principal through the API with the case file's role assignments, so a case passes only if the
store, the engine sync and the endpoint agree with the bundle.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from policies import load_cases

CASES_DIR = Path(__file__).resolve().parents[1] / "policies" / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("case_path", CASE_FILES, ids=[path.stem for path in CASE_FILES])
def test_case_file_over_http(client: TestClient, case_path: Path) -> None:
    # Given the case file's subjects as principals with its role assignments
    (case_file,) = load_cases(case_path)
    roles: dict[str, list[dict[str, str]]] = defaultdict(list)
    for assignment in case_file.assignments:
        roles[assignment.subject].append({"role": assignment.role, "domain": assignment.domain})
    for case in case_file.cases:
        roles.setdefault(case.request.subject, [])
    for subject, bindings in roles.items():
        if subject == "admin":
            continue
        response = client.post(
            "/api/v1/principals", json={"name": subject, "kind": "user", "roles": bindings}
        )
        assert response.status_code == 201, response.text
    # Then every case gets the wanted decision over HTTP; a request the API refuses as
    # malformed (a wildcard where a name must stand) counts only where the case wants a deny
    failures = []
    for case in case_file.cases:
        response = client.post(
            "/api/v1/policies/decide",
            json={
                "subject": case.request.subject,
                "domain": case.request.domain,
                "object": case.request.object,
                "action": case.request.action,
                "attributes": dict(case.request.attributes),
            },
        )
        if response.status_code == 422 and not case.want_allowed:
            continue  # the API refuses the malformed request outright: denied all the same
        assert response.status_code == 200, (case.name, response.text)
        decision = response.json()
        if decision["allowed"] != case.want_allowed or (
            case.rule is not None and decision["rule"] != case.rule
        ):
            failures.append((case.name, case.want_allowed, decision))
    assert failures == []

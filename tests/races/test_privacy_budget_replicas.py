"""Two real ``govplane serve`` replicas reserve one dataset's privacy budget at once.

A pipeline outside the control plane reserves its planned spend through either replica; however
the requests interleave across the two processes and their connection pools, the reservations
granted never add up to more than the budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.races.conftest import serving_replicas

RUNS = 16
EPSILON = 1.5  # of a confidential dataset's 10 (privacy.yaml): 6 reservations fit

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[list[str], str]]:
    """Two replicas without run workers: submitted runs stay pending while they reserve."""
    with serving_replicas(tmp_path, database_url, None, {"GOVPLANE_RUN_WORKER": "false"}) as up:
        yield up


def _pending_runs(url: str, headers: dict[str, str], count: int) -> list[str]:
    """Runs that can hold reservations: policy proposals, pending without a worker."""
    active = httpx.get(f"{url}/api/v1/policies", headers=headers, timeout=30).json()
    run_ids = []
    for index in range(count):
        files = dict(active["files"])
        files["policy.csv"] += f"# proposal {index}\n"
        response = httpx.post(
            f"{url}/api/v1/policies", headers=headers, json={"files": files}, timeout=30
        )
        assert response.status_code == 202, response.text
        run_ids.append(response.json()["run"]["id"])
    return run_ids


def test_two_replicas_never_grant_more_than_the_budget(
    replicas: tuple[list[str], str],
) -> None:
    # Given a confidential dataset and pending runs
    urls, token = replicas
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{urls[0]}/api/v1/datasets",
        headers=headers,
        json={"name": "claims", "domain": "retail", "classification": "confidential"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    run_ids = _pending_runs(urls[0], headers, RUNS)

    # When every run reserves at once, alternating between the replicas
    def reserve(index: int) -> int:
        response = httpx.post(
            f"{urls[index % 2]}/api/v1/privacy/budgets/{dataset_id}/reservations",
            headers=headers,
            json={"run_id": run_ids[index], "epsilon": EPSILON, "delta": 1e-8},
            timeout=60,
        )
        assert response.status_code in (201, 409), response.text
        return response.status_code

    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        statuses = list(pool.map(reserve, range(RUNS)))

    # Then exactly as many as fit were granted, and both replicas see the same ledger
    assert statuses.count(201) == 6
    seen = [
        httpx.get(f"{url}/api/v1/privacy/budgets/{dataset_id}", headers=headers).json()
        for url in urls
    ]
    assert seen[0] == seen[1]
    assert seen[0]["epsilon"]["reserved"] == pytest.approx(6 * EPSILON)
    assert len(seen[0]["entries"]) == 6
    verify = httpx.get(f"{urls[1]}/api/v1/audit/verify", headers=headers, timeout=60).json()
    assert verify["valid"] is True

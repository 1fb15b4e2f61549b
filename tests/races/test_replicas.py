"""Two real ``govplane serve`` replicas (separate OS processes, run workers on) on one database.

Runs are submitted to both replicas at once; both workers race to claim them. Every run must be
executed exactly once (one claim, one pass through its states), and the policy changes the runs
carry must leave exactly one active bundle.
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

RUNS = 40
POLICY_CHANGE_WITHOUT_APPROVAL = "policy_change:\n  approvers: 0\n"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[list[str], str, Path]]:
    """Two replicas on a bundle whose policy changes need no approver: they execute at once.

    A run executed twice would fail its second recording (a finished run cannot move again),
    which the replicas' logs would show as a traceback.
    """
    with replicas_with_policy_change(tmp_path, database_url, POLICY_CHANGE_WITHOUT_APPROVAL) as up:
        yield up


def _propose(url: str, token: str, bundle: Path, index: int) -> str:
    files = {p.name: p.read_text() for p in bundle.iterdir() if p.is_file()}
    files["policy.csv"] += f"# change {index}\n"
    response = httpx.post(
        f"{url}/api/v1/policies",
        headers={"Authorization": f"Bearer {token}"},
        json={"files": files},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run"]["id"]
    return run_id


def _finished(url: str, token: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """The runs once none is pending or running (bounded wait)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 120
    while True:
        runs = [
            httpx.get(f"{url}/api/v1/runs/{run_id}", headers=headers, timeout=30).json()
            for run_id in run_ids
        ]
        if all(run["state"] not in ("pending", "running") for run in runs):
            return runs
        assert time.monotonic() < deadline, "runs did not finish within 120 s"
        time.sleep(0.2)


def test_two_replicas_execute_every_run_exactly_once(
    replicas: tuple[list[str], str, Path],
) -> None:
    # Given two replicas of one control plane, each with its run worker
    urls, token, bundle = replicas
    # When policy changes are submitted to both at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        run_ids = list(pool.map(lambda i: _propose(urls[i % 2], token, bundle, i), range(RUNS)))
    runs = _finished(urls[0], token, run_ids)
    # Then every run went once through its states, claimed by exactly one worker
    claims = []
    for run in runs:
        assert run["state"] == "succeeded", run
        assert [t["to_state"] for t in run["transitions"]] == ["pending", "running", "succeeded"]
        claims.append(run["transitions"][1]["reason"])
        assert run["outputs"]["activated"] == run["target"].removeprefix("policy:")
    # And both replicas took part
    assert set(claims) == {"claimed by replica-a", "claimed by replica-b"}
    # And exactly one bundle is active, the same seen from both replicas
    headers = {"Authorization": f"Bearer {token}"}
    seen = [httpx.get(f"{url}/api/v1/policies", headers=headers).json() for url in urls]
    assert seen[0]["active"] == seen[1]["active"]
    statuses = [row["status"] for row in seen[0]["history"]]
    assert statuses.count("active") == 1, statuses

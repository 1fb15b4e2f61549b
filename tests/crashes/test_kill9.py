"""``kill -9`` of a real ``govplane serve`` process, then a restart on the same store.

The server dies without any chance to clean up: mid-request, mid-transaction, with decisions
queued for group commit and a run claimed. After each restart, what the server acknowledged is
there with its audit record, nothing is half-written (no change without its record, no record
without its change), ``govplane audit verify`` passes, and a run whose worker died is failed,
never executed again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from control_plane.launcher import GOVPLANE, ServerProcess, init_data_dir, serve
from policies import DEFAULT_BUNDLE_DIR

CYCLES = 2
WRITERS = 4
POLICY_CHANGE_WITHOUT_APPROVAL = "policy_change:\n  approvers: 0\n"


@dataclass
class ControlPlane:
    """A data directory and store that servers are started on, one after another."""

    data_dir: Path
    env: dict[str, str]
    token: str
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def serve(self) -> Any:
        return serve(self.data_dir, self.env, self.log)


@pytest.fixture
def control_plane(tmp_path: Path, database_url: str) -> ControlPlane:
    """An initialized control plane whose policy changes need no approver (they run at once)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE_DIR, bundle)
    approvals = bundle / "approvals.yaml"
    text = approvals.read_text()
    approvals.write_text(text[: text.index("policy_change:")] + POLICY_CHANGE_WITHOUT_APPROVAL)
    env = {
        "GOVPLANE_DATABASE_URL": database_url,
        "GOVPLANE_WORKER_POLL_SECONDS": "0.05",
        "GOVPLANE_RUN_LEASE_SECONDS": "1",
    }
    data_dir = tmp_path / "data"
    token = init_data_dir(data_dir, env, "--bundle", str(bundle))
    return ControlPlane(data_dir, env, token, tmp_path / "server.log")


def _kill(server: ServerProcess) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(30)


def _verify(plane: ControlPlane) -> dict[str, Any]:
    done = subprocess.run(
        [*GOVPLANE, "audit", "verify", "--data-dir", str(plane.data_dir), "--json"],
        env={**os.environ, **plane.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _records(client: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    """Every audit record matching ``filters``, page after page."""
    records: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **filters}
        if after is not None:
            params["after"] = after
        page = client.get("/api/v1/audit/events", params=params).json()
        records += page["items"]
        after = page["next_after"]
        if after is None:
            return records


def _principals(client: httpx.Client) -> list[dict[str, Any]]:
    """Every principal, page after page."""
    principals: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": 200} if cursor is None else {"limit": 200, "cursor": cursor}
        page = client.get("/api/v1/principals", params=params).json()
        principals += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return principals


@dataclass
class Acknowledged:
    """What the dying server answered as done."""

    principals: dict[str, str] = field(default_factory=dict)
    """name -> id of each principal answered 201."""
    decisions: set[str] = field(default_factory=set)
    """request ids of decisions answered 200."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _write_until_dead(url: str, headers: dict[str, str], prefix: str, done: Acknowledged) -> None:
    """Create principals and ask for decisions until the server stops answering."""
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for index in range(10_000):
            request_id = uuid.uuid4().hex
            try:
                created = client.post(
                    "/api/v1/principals", json={"name": f"{prefix}-{index}", "kind": "user"}
                )
                decided = client.post(
                    "/api/v1/policies/decide",
                    headers={"X-Request-ID": request_id},
                    json={
                        "subject": "admin",
                        "domain": "retail",
                        "object": f"dataset:{prefix}-{index}",
                        "action": "read",
                    },
                )
            except httpx.TransportError:
                return
            with done.lock:
                if created.status_code == 201:
                    done.principals[created.json()["name"]] = created.json()["id"]
                if decided.status_code == 200:
                    done.decisions.add(request_id)


def test_audited_writes_survive_kill_9_whole_or_not_at_all(control_plane: ControlPlane) -> None:
    plane = control_plane
    acknowledged = Acknowledged()
    with ExitStack() as servers:
        server = servers.enter_context(plane.serve())
        for cycle in range(CYCLES):
            # Given a server under a load of audited writes and group-committed decisions
            writers = [
                threading.Thread(
                    target=_write_until_dead,
                    args=(server.url, plane.headers, f"c{cycle}w{n}", acknowledged),
                )
                for n in range(WRITERS)
            ]
            for writer in writers:
                writer.start()
            # When it is killed -9 in the middle of it, and started again on the same store
            time.sleep(1.0 + 0.5 * cycle)
            _kill(server)
            for writer in writers:
                writer.join(30)
            server = servers.enter_context(plane.serve())
            with httpx.Client(base_url=server.url, headers=plane.headers, timeout=30) as client:
                verified = client.get("/api/v1/audit/verify").json()
                creations = _records(client, action="principal.create")
                stored = _principals(client)
                decided = {r["request_id"] for r in _records(client, action="policy.decide")}
            recorded = [r["resource"].removeprefix("principal:") for r in creations]
            names = {p["name"] for p in stored}
            # Then the trail verifies
            assert verified["valid"] is True, verified
            # And every acknowledged principal is stored, with exactly one record of its creation
            assert acknowledged.principals, "the server acknowledged no write before it died"
            assert set(acknowledged.principals) <= names
            assert len(recorded) == len(set(recorded))
            # And nothing is half-written: no principal without its record, no record without it
            assert set(recorded) == names
            # And every acknowledged decision is on the trail
            assert acknowledged.decisions <= decided
    # And the command line verifies the trail offline from the store, after every crash
    assert _verify(plane)["valid"] is True
    assert len(acknowledged.principals) > CYCLES


@pytest.fixture
def revision_lock(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A PostgreSQL connection with which a test can hold the authorization revision row."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as connection:
        yield connection


def _run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
    return run


def _wait_for(client: httpx.Client, run_id: str, state: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (run := _run(client, run_id))["state"] != state:
        assert time.monotonic() < deadline, f"run {run_id} stayed {run['state']}, not {state}"
        time.sleep(0.1)
    return run


def _propose(client: httpx.Client, bundle_files: dict[str, str], index: int) -> str:
    files = {**bundle_files, "policy.csv": bundle_files["policy.csv"] + f"# crash {index}\n"}
    response = client.post("/api/v1/policies", json={"files": files})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run"]["id"]
    return run_id


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_run_whose_server_is_killed_mid_execution_is_failed_not_rerun(
    control_plane: ControlPlane, revision_lock: psycopg.Connection[Any]
) -> None:
    plane = control_plane
    with ExitStack() as servers:
        server = servers.enter_context(plane.serve())
        for cycle in range(CYCLES):
            with httpx.Client(base_url=server.url, headers=plane.headers, timeout=30) as client:
                policies = client.get("/api/v1/policies").json()
                active_before, files = policies["active"], policies["files"]
                # Given a policy change whose activation waits on a row this test holds, so
                # that the server is certainly inside the run's execution, its claim alive
                revision_lock.execute("SELECT value FROM revisions WHERE name = 'authz' FOR UPDATE")
                run_id = _propose(client, files, cycle)
                _wait_for(client, run_id, "running")
                time.sleep(0.5)
                assert _run(client, run_id)["state"] == "running"
            # When the server is killed -9 there, and started again on the same store
            _kill(server)
            revision_lock.rollback()
            server = servers.enter_context(plane.serve())
            with httpx.Client(base_url=server.url, headers=plane.headers, timeout=30) as client:
                # Then its worker fails the run as lost, and never executes it again
                run = _wait_for(client, run_id, "failed")
                states = [t["to_state"] for t in run["transitions"]]
                assert states == ["pending", "running", "failed"]
                assert run["transitions"][-1]["reason"] == "worker lost"
                # And the activation the dead process had begun left nothing behind
                policies = client.get("/api/v1/policies").json()
                assert policies["active"]["version"] == active_before["version"]
                statuses = [row["status"] for row in policies["history"]]
                assert statuses.count("active") == 1
                # And a new change on the restarted server runs through
                after = _propose(client, files, 100 + cycle)
                assert _wait_for(client, after, "succeeded")["outputs"]["activated"]
                assert client.get("/api/v1/audit/verify").json()["valid"] is True
    assert _verify(plane)["valid"] is True

"""``kill -9`` of a real ``govplane serve`` process, then a restart on the same store.

The server dies without any chance to clean up: mid-request, mid-transaction, with decisions
queued for group commit, privacy budget being reserved and committed, approvals being decided
and a run claimed. After each restart, what the server acknowledged is there with its audit
record, nothing is half-written (no change without its record, no record without its change),
a dataset's spent and reserved privacy budget are the sums of its ledger entries and never more
than its budget, an approval is approved exactly when its stored decisions make its quorum and
its run executes at most once, ``govplane audit verify`` passes, and a run whose worker died is
failed, never executed again.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import select

from control_plane.approvals.quorum import Vote, tally
from control_plane.launcher import GOVPLANE, ServerProcess, init_data_dir, serve
from control_plane.store import Database
from control_plane.store.models import Model, ModelVersion
from policies import DEFAULT_BUNDLE_DIR
from tests.approvals.helpers import CLEARANCE, DOMAIN, PASSED_EVALUATION

CYCLES = 2
WRITERS = 4
PRINCIPALS_PER_CYCLE = 20
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

    def client(self, server: ServerProcess) -> httpx.Client:
        """An API client of ``server``, authenticated as the bootstrap admin."""
        return httpx.Client(base_url=server.url, headers=self.headers, timeout=30)


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
    """What the dying server answered as done: keys of the writes it acknowledged, by kind."""

    writes: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, key: str) -> None:
        with self.lock:
            self.writes[kind].add(key)

    def __getitem__(self, kind: str) -> set[str]:
        with self.lock:
            return set(self.writes[kind])

    def wait_for(self, count: int, *kinds: str) -> None:
        """Return once ``count`` writes of ``kinds`` are acknowledged in all."""
        deadline = time.monotonic() + 60
        while sum(len(self[kind]) for kind in kinds) < count:
            assert time.monotonic() < deadline, f"fewer than {count} {kinds} acknowledged"
            time.sleep(0.01)


Writer = Callable[[str], None]
"""A load against the server at a URL, returning once the server stops answering."""


def _kill_under_load(
    plane: ControlPlane,
    servers: ExitStack,
    server: ServerProcess,
    writers: Sequence[Writer],
    until: Callable[[], None],
) -> ServerProcess:
    """Start ``writers`` on ``server``, kill it -9 once ``until`` returns, let the writers see it
    die, and start a new server on the same store."""
    threads = [threading.Thread(target=writer, args=(server.url,)) for writer in writers]
    for thread in threads:
        thread.start()
    until()
    _kill(server)
    for thread in threads:
        thread.join(30)
    restarted: ServerProcess = servers.enter_context(plane.serve())
    return restarted


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
            if created.status_code == 201:
                done.add("principal", created.json()["name"])
            if decided.status_code == 200:
                done.add("decision", request_id)


def test_audited_writes_survive_kill_9_whole_or_not_at_all(control_plane: ControlPlane) -> None:
    plane = control_plane
    acknowledged = Acknowledged()
    with ExitStack() as servers:
        server = servers.enter_context(plane.serve())
        for cycle in range(CYCLES):
            # Given a server under a load of audited writes and group-committed decisions
            writers = [
                partial(
                    _write_until_dead,
                    headers=plane.headers,
                    prefix=f"c{cycle}w{n}",
                    done=acknowledged,
                )
                for n in range(WRITERS)
            ]
            # When it is killed -9 in the middle of it, and started again on the same store
            created = partial(
                acknowledged.wait_for, PRINCIPALS_PER_CYCLE * (cycle + 1), "principal"
            )
            server = _kill_under_load(plane, servers, server, writers, created)
            with plane.client(server) as client:
                verified = client.get("/api/v1/audit/verify").json()
                creations = _records(client, action="principal.create")
                stored = _principals(client)
                decided = {r["request_id"] for r in _records(client, action="policy.decide")}
            recorded = [r["resource"].removeprefix("principal:") for r in creations]
            names = {p["name"] for p in stored}
            # Then the trail verifies
            assert verified["valid"] is True, verified
            # And every acknowledged principal is stored, with exactly one record of its creation
            assert acknowledged["principal"], "the server acknowledged no write before it died"
            assert acknowledged["principal"] <= names
            assert len(recorded) == len(set(recorded))
            # And nothing is half-written: no principal without its record, no record without it
            assert set(recorded) == names
            # And every acknowledged decision is on the trail
            assert acknowledged["decision"] <= decided
    # And the command line verifies the trail offline from the store, after every crash
    assert _verify(plane)["valid"] is True
    assert len(acknowledged["principal"]) > CYCLES


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
            with plane.client(server) as client:
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
            with plane.client(server) as client:
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


ANSWERS_PER_CYCLE = 16
RESERVED = {"epsilon": 1.0, "delta": 1e-8}
SPENT = {"epsilon": 0.5, "delta": 5e-9, "accountant": "rdp"}
BUDGET = {"epsilon": 10.0, "delta": 1e-5}
"""Spent at about 0.4 epsilon a run, the budget runs out in the second cycle: the load ends in
refusals."""


@pytest.fixture
def plane_without_worker(control_plane: ControlPlane) -> ControlPlane:
    """The control plane served without a run worker: submitted runs stay pending, so that they
    can hold reservations."""
    return replace(control_plane, env={**control_plane.env, "GOVPLANE_RUN_WORKER": "false"})


def _training_runs(client: httpx.Client, count: int) -> list[str]:
    """Pending training runs on the dataset ``claims``."""
    run_ids = []
    for _ in range(count):
        submitted = client.post(
            "/api/v1/runs",
            json={"kind": "train", "target": "model:claims-risk", "inputs": ["dataset:claims"]},
        )
        assert submitted.status_code == 202, submitted.text
        run_ids.append(submitted.json()["id"])
    return run_ids


def _spend_until_dead(
    url: str, headers: dict[str, str], dataset_id: str, run_ids: list[str], done: Acknowledged
) -> None:
    """Reserve for each run, then commit its spend (or release every fourth), until the server
    stops answering or the runs are used up."""
    reservations = f"/api/v1/privacy/budgets/{dataset_id}/reservations"
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for index, run_id in enumerate(run_ids):
            try:
                reserved = client.post(reservations, json={"run_id": run_id, **RESERVED})
                if reserved.status_code == 409:
                    done.add("refused", run_id)
                if reserved.status_code != 201:
                    continue
                done.add("reserved", run_id)
                if index % 4 == 3:
                    settled = client.post(f"{reservations}/{run_id}/release")
                else:
                    settled = client.post(f"{reservations}/{run_id}/commit", json=SPENT)
            except httpx.TransportError:
                return
            if settled.status_code == 200:
                done.add(settled.json()["state"], run_id)


def test_budget_commits_survive_kill_9_whole_or_not_at_all(
    plane_without_worker: ControlPlane,
) -> None:
    plane = plane_without_worker
    acknowledged = Acknowledged()
    with ExitStack() as servers:
        server = servers.enter_context(plane.serve())
        with plane.client(server) as client:
            created = client.post(
                "/api/v1/datasets",
                json={
                    "name": "claims",
                    "domain": "retail",
                    "classification": "internal",
                    "privacy_budget": BUDGET,
                },
            )
            assert created.status_code == 201, created.text
            registered = client.post(
                "/api/v1/models",
                json={
                    "name": "claims-risk",
                    "domain": "retail",
                    "risk_tier": "low",
                    "intended_use": "claims triage",
                },
            )
            assert registered.status_code == 201, registered.text
        dataset_id = created.json()["id"]
        for cycle in range(CYCLES):
            # Given writers reserving and settling privacy budget on one dataset for their runs
            with plane.client(server) as client:
                writers = [
                    partial(
                        _spend_until_dead,
                        headers=plane.headers,
                        dataset_id=dataset_id,
                        run_ids=_training_runs(client, ANSWERS_PER_CYCLE // WRITERS + 4),
                        done=acknowledged,
                    )
                    for n in range(WRITERS)
                ]
            # When the server is killed -9 in the middle of it, and started again on the store
            answered = partial(
                acknowledged.wait_for, ANSWERS_PER_CYCLE * (cycle + 1), "reserved", "refused"
            )
            server = _kill_under_load(plane, servers, server, writers, answered)
            with plane.client(server) as client:
                verified = client.get("/api/v1/audit/verify").json()
                budget = client.get(f"/api/v1/privacy/budgets/{dataset_id}").json()
                records = _records(client, resource=f"privacy_budget:{dataset_id}")
            entries = {entry["run_id"]: entry for entry in budget["entries"]}
            in_state = {
                state: {run for run, entry in entries.items() if entry["state"] == state}
                for state in ("reserved", "committed", "released")
            }
            recorded = {
                action: [r["run_id"] for r in records if r["action"] == f"privacy.{action}"]
                for action in ("reserve", "commit", "release")
            }
            # Then the trail verifies
            assert verified["valid"] is True, verified
            # And every acknowledged reservation, commit and release is stored as answered
            assert acknowledged["reserved"], "the server acknowledged no reservation"
            assert acknowledged["reserved"] <= set(entries)
            assert acknowledged["committed"] <= in_state["committed"]
            assert acknowledged["released"] <= in_state["released"]
            assert not acknowledged["refused"] & set(entries)
            # And nothing is half-written: each ledger entry and settlement has exactly one
            # record, and each record its ledger change
            assert sorted(recorded["reserve"]) == sorted(entries)
            assert sorted(recorded["commit"]) == sorted(in_state["committed"])
            assert sorted(recorded["release"]) == sorted(in_state["released"])
            # And the budget's sums are those of its entries, and never exceed it
            for amount in ("epsilon", "delta"):
                sums = budget[amount]
                spent = sum(entries[run][f"{amount}_spent"] for run in in_state["committed"])
                reserved = sum(entries[run][f"{amount}_reserved"] for run in in_state["reserved"])
                assert sums["spent"] == pytest.approx(spent)
                assert sums["reserved"] == pytest.approx(reserved)
                assert sums["spent"] + sums["reserved"] <= sums["budget"] * (1 + 1e-9)
    # And the budget ran out on the way: refusals were part of the load
    assert acknowledged["refused"]
    assert budget["epsilon"]["left"] < RESERVED["epsilon"]
    assert _verify(plane)["valid"] is True


PROMOTIONS_PER_CYCLE = 6
DECISIONS_PER_CYCLE = 6
APPROVERS = {
    "val-1": "model_validator",
    "val-2": "model_validator",
    "risk-1": "risk_officer",
    "risk-2": "risk_officer",
}
"""Production promotions of high-risk models need one of each role (approvals.yaml)."""


def _approver(client: httpx.Client, name: str, role: str) -> dict[str, str]:
    """A principal holding ``role`` in the domain; headers of its requests."""
    created = client.post(
        "/api/v1/principals",
        json={
            "name": name,
            "kind": "user",
            "roles": [{"role": role, "domain": DOMAIN}],
            "attributes": CLEARANCE,
        },
    )
    assert created.status_code == 201, created.text
    issued = client.post(f"/api/v1/principals/{created.json()['id']}/tokens")
    assert issued.status_code == 201, issued.text
    return {"Authorization": f"Bearer {issued.json()['token']}"}


def _promotions(client: httpx.Client, database_url: str, prefix: str) -> dict[str, str]:
    """Promotions to production of high-risk models, submitted by the admin and waiting for
    their approval; approval id -> run id."""
    models = [f"{prefix}-{index}" for index in range(PROMOTIONS_PER_CYCLE)]
    for model in models:
        registered = client.post(
            "/api/v1/models",
            json={"name": model, "domain": DOMAIN, "risk_tier": "high", "intended_use": "scoring"},
        )
        assert registered.status_code == 201, registered.text
    # Each version carries the passed evaluation and model card an evaluation run records
    db = Database(database_url)
    try:
        with db.session(write=True) as session:
            for model_id in session.scalars(select(Model.id).where(Model.name.in_(models))):
                evidence = {"evaluation": PASSED_EVALUATION}
                session.add(ModelVersion(model_id=model_id, version=1, evidence=evidence))
    finally:
        db.engine.dispose()
    run_ids = set()
    for model in models:
        submitted = client.post(
            "/api/v1/runs",
            json={
                "kind": "promote",
                "target": f"model:{model}",
                "params": {"target_stage": "production", "version": 1},
            },
        )
        assert submitted.status_code == 202, submitted.text
        run_ids.add(submitted.json()["id"])
    for run_id in run_ids:
        _wait_for(client, run_id, "awaiting_approval")
    approvals = client.get("/api/v1/approvals", params={"limit": 200}).json()["items"]
    return {a["id"]: a["run_id"] for a in approvals if a["run_id"] in run_ids}


def _approve_until_dead(
    url: str, headers: dict[str, str], approver: str, approval_ids: list[str], done: Acknowledged
) -> None:
    """Approve each approval, in an order of the approver's own, until the server stops
    answering or the approvals are used up."""
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for approval_id in random.Random(approver).sample(approval_ids, len(approval_ids)):
            try:
                decided = client.post(
                    f"/api/v1/approvals/{approval_id}/decisions", json={"decision": "approve"}
                )
            except httpx.TransportError:
                return
            if decided.status_code in (200, 201):
                done.add("approval", f"{approval_id} {approver}")


def test_approval_decisions_survive_kill_9_whole_or_not_at_all(
    control_plane: ControlPlane, database_url: str
) -> None:
    plane = control_plane
    acknowledged = Acknowledged()
    promotions: dict[str, str] = {}
    with ExitStack() as servers:
        server = servers.enter_context(plane.serve())
        with plane.client(server) as client:
            approvers = {name: _approver(client, name, role) for name, role in APPROVERS.items()}
        for cycle in range(CYCLES):
            # Given promotions waiting for a model validator and a risk officer, and two of
            # each approving them concurrently
            with plane.client(server) as client:
                waiting = _promotions(client, database_url, f"c{cycle}")
            promotions.update(waiting)
            writers = [
                partial(
                    _approve_until_dead,
                    headers=headers,
                    approver=name,
                    approval_ids=list(waiting),
                    done=acknowledged,
                )
                for name, headers in approvers.items()
            ]
            # When the server is killed -9 in the middle of it, and started again on the store
            decided = partial(
                acknowledged.wait_for,
                len(acknowledged["approval"]) + DECISIONS_PER_CYCLE,
                "approval",
            )
            server = _kill_under_load(plane, servers, server, writers, decided)
            with plane.client(server) as client:
                verified = client.get("/api/v1/audit/verify").json()
                approvals = {a: client.get(f"/api/v1/approvals/{a}").json() for a in promotions}
                records = [
                    r
                    for r in _records(client, action="approval.decide")
                    if r["decision"] != "refused"
                ]
                # The versions have no registered artifact: once approved, the promotion's
                # execution is refused and the run fails, whether or not its worker survived
                runs = {
                    approval_id: _wait_for(client, run_id, "failed")
                    if approvals[approval_id]["status"] == "approved"
                    else _run(client, run_id)
                    for approval_id, run_id in promotions.items()
                }
                executions = {
                    run_id: _records(client, action="model.promote", run_id=run_id)
                    for run_id in promotions.values()
                }
            # Then the trail verifies
            assert verified["valid"] is True, verified
            # And every acknowledged decision is stored, each approver's at most once
            stored = {
                f"{approval_id} {decision['approver']}"
                for approval_id, approval in approvals.items()
                for decision in approval["decisions"]
            }
            assert acknowledged["approval"], "the server acknowledged no decision"
            assert acknowledged["approval"] <= stored
            assert sum(len(a["decisions"]) for a in approvals.values()) == len(stored)
            # And nothing is half-written: each stored decision has exactly one record
            recorded = sorted(
                f"{r['resource'].removeprefix('approval:')} {r['actor']}" for r in records
            )
            assert recorded == sorted(stored)
            for approval_id, approval in approvals.items():
                # And an approval is approved exactly when its decisions make its quorum
                votes = [
                    Vote(d["approver"], d["decision"], d["roles"]) for d in approval["decisions"]
                ]
                assert approval["status"] == tally(approval["requirement"], votes), approval
                # And a waiting run resumed only with its approval, and executed at most once
                states = [t["to_state"] for t in runs[approval_id]["transitions"]]
                resumed = states[states.index("awaiting_approval") + 1 :]
                if approval["status"] == "approved":
                    assert resumed == ["running", "failed"], states
                else:
                    assert resumed == [], states
                assert len(executions[approval["run_id"]]) <= 1
    assert _verify(plane)["valid"] is True

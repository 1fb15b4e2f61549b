"""Random sequences of approve, reject, revoke and expire by principals with random roles.

Whatever the sequence, an approval never completes with fewer distinct approvers than required
or with a required role missing, the submitter and the model's trainers never count, it ends in
exactly one terminal state that never changes, and its run executes at most once (exactly once
when approved). The expected answer of each call is stated here from the rules, apart from the
code under test, and the API must give exactly it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from control_plane.runs import RunKind
from control_plane.store import utcnow
from tests.approvals.helpers import (
    CLEARANCE,
    DOMAIN,
    add_version,
    approval,
    decide,
    promote,
    register_model,
    run_state,
)
from tests.conftest import RecordingExecutor, as_caller, drain, principal_token

ROLES = ("model_validator", "risk_officer", "data_scientist", "auditor")
APPROVING = {"model_validator", "risk_officer"}  # the roles policy.csv lets approve
REQUIREMENTS = {  # approvals.yaml of the default bundle: (approvers, roles)
    ("staging", "medium"): (1, {"model_validator"}),
    ("production", "medium"): (1, {"model_validator"}),
    ("production", "high"): (2, {"model_validator", "risk_officer"}),
}
TERMINAL = {"approved", "rejected", "revoked", "expired"}
_names = itertools.count()


@dataclass
class Person:
    name: str
    token: str
    roles: frozenset[str]
    excluded: bool = False


@dataclass
class Expected:
    approvers: int
    roles: set[str]
    status: str = "pending"
    votes: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)


class ApprovalMachine(RuleBasedStateMachine):
    client: ClassVar[TestClient]
    executors: ClassVar[dict[RunKind, RecordingExecutor]]
    people = Bundle("people")

    def _person(self, roles: frozenset[str], excluded: bool = False) -> Person:
        name = f"p{next(_names)}"
        token = principal_token(
            self.client, name, [(role, DOMAIN) for role in sorted(roles)], CLEARANCE
        )
        return Person(name, token, roles, excluded)

    @initialize(target=people, scope=st.sampled_from(sorted(REQUIREMENTS)))
    def promotion(self, scope: tuple[str, str]) -> Any:
        stage, tier = scope
        model = f"m{next(_names)}"
        register_model(self.client, model, tier)
        # The trainer and the submitter hold every approving role: only separation of duties
        # keeps them from counting
        trainer = self._person(frozenset({"data_scientist", *APPROVING}), excluded=True)
        trained = self.client.post(
            "/api/v1/runs",
            json={"kind": "train", "target": f"model:{model}", "inputs": ["dataset:shared"]},
            headers=as_caller(self.client, trainer.token),
        )
        assert trained.status_code == 202, trained.text
        drain(self.client)
        add_version(self.client, model, trained.json()["id"])
        self.trainer = trainer
        self.submitter = self._person(frozenset({"ml_engineer", *APPROVING}), excluded=True)
        self.promotion = promote(self.client, model, stage, self.submitter.token, "")
        approvers, roles = REQUIREMENTS[scope]
        self.expected = Expected(approvers, set(roles))
        return multiple(trainer, self.submitter)

    @rule(target=people, roles=st.frozensets(st.sampled_from(ROLES), max_size=3))
    def join(self, roles: frozenset[str]) -> Person:
        return self._person(roles)

    @rule(
        target=people,
        roles=st.sampled_from(
            [frozenset({"model_validator"}), frozenset({"risk_officer"}), frozenset(APPROVING)]
        ),
    )
    def join_approver(self, roles: frozenset[str]) -> Person:
        """Someone who may approve (one who holds both roles tests that a quorum is of people)."""
        return self._person(roles)

    @rule(person=people, decision=st.sampled_from(["approve", "reject"]))
    def decide(self, person: Person, decision: str) -> None:
        response = decide(self.client, self.promotion.approval_id, person.token, decision)
        expected = self.expected
        if not person.roles & APPROVING:
            want = 403
        elif person.name in expected.votes:
            want = 200 if expected.votes[person.name][0] == decision else 409
        elif expected.status != "pending":
            want = 409
        elif person.excluded:
            want = 403
        else:
            want = 201
            expected.votes[person.name] = (decision, person.roles)
            expected.status = self._outcome()
        assert response.status_code == want, (want, response.text)

    def _outcome(self) -> str:
        expected = self.expected
        for decision, roles in expected.votes.values():
            if decision == "reject" and roles & expected.roles:
                return "rejected"
        approving = [roles for decision, roles in expected.votes.values() if decision == "approve"]
        covered = set().union(*approving) >= expected.roles if approving else not expected.roles
        return "approved" if len(approving) >= expected.approvers and covered else "pending"

    @rule(by_submitter=st.booleans())
    def revoke(self, by_submitter: bool) -> None:
        token = self.submitter.token if by_submitter else None
        response = self.client.post(
            f"/api/v1/approvals/{self.promotion.approval_id}/revoke",
            json={},
            headers=as_caller(self.client, token) if token else {},
        )
        if self.expected.status == "pending":
            assert response.status_code == 200, response.text
            self.expected.status = "revoked"
        else:
            assert response.status_code == 409, response.text

    @rule()
    def time_runs_out(self) -> None:
        services = self.client.app.state.services  # type: ignore[attr-defined]
        closed = services.approvals.expire_due(
            now=utcnow() + timedelta(days=30), approval_id=self.promotion.approval_id
        )
        assert closed == (1 if self.expected.status == "pending" else 0)
        if self.expected.status == "pending":
            self.expected.status = "expired"

    @invariant()
    def holds(self) -> None:
        if not hasattr(self, "promotion"):
            return
        current = approval(self.client, self.promotion.approval_id)
        assert current["status"] == self.expected.status
        counted = {d["approver"]: d for d in current["decisions"]}
        assert len(counted) == len(current["decisions"])  # one decision per principal
        assert self.submitter.name not in counted
        assert self.trainer.name not in counted
        if current["status"] == "approved":
            approving = [d for d in current["decisions"] if d["decision"] == "approve"]
            assert len(approving) >= self.expected.approvers
            assert set().union(*(set(d["roles"]) for d in approving)) >= self.expected.roles
        state = run_state(self.client, self.promotion.run_id)
        if current["status"] in TERMINAL - {"approved"}:
            assert state == "rejected"
        elif current["status"] == "approved":
            assert state in ("running", "succeeded")
        else:
            assert state == "awaiting_approval"

    def teardown(self) -> None:
        if not hasattr(self, "promotion"):
            return
        drain(self.client)
        executed = self.executors[RunKind.PROMOTE].executed.count(self.promotion.run_id)
        assert executed == (1 if self.expected.status == "approved" else 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_approvals_hold_under_any_sequence(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    created = client.post(
        "/api/v1/datasets",
        json={"name": "shared", "domain": DOMAIN, "classification": "internal"},
    )
    assert created.status_code == 201, created.text
    ApprovalMachine.client = client
    ApprovalMachine.executors = executors
    run_state_machine_as_test(
        ApprovalMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )

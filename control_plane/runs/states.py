"""Run kinds and the run state machine."""

from __future__ import annotations

from enum import StrEnum

from control_plane.errors import ConflictError


class RunKind(StrEnum):
    INGEST = "ingest"
    TRAIN = "train"
    EVALUATE = "evaluate"
    PROMOTE = "promote"
    DEPLOY = "deploy"
    FEDERATED_TRAIN = "federated_train"
    POLICY_CHANGE = "policy_change"
    EXPORT = "export"


class RunState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.RUNNING}),
    RunState.RUNNING: frozenset({RunState.AWAITING_APPROVAL, RunState.SUCCEEDED, RunState.FAILED}),
    # Approved: back to running for the remaining gates and execution; else rejected.
    RunState.AWAITING_APPROVAL: frozenset({RunState.RUNNING, RunState.REJECTED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.REJECTED: frozenset(),
}


def check_transition(current: RunState, target: RunState) -> None:
    """Refuse a transition the state machine does not allow.

    Raises:
        ConflictError: ``current -> target`` is not an edge of the state machine.
    """
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (terminal state)"
        raise ConflictError(f"a {current} run cannot become {target}; allowed: {allowed}")

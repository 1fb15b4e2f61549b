"""The run state machine allows exactly its edges."""

from __future__ import annotations

import pytest

from control_plane.errors import ConflictError
from control_plane.runs import RunState, check_transition
from control_plane.runs.states import TRANSITIONS

EDGES = {
    (RunState.PENDING, RunState.RUNNING),
    (RunState.RUNNING, RunState.AWAITING_APPROVAL),
    (RunState.RUNNING, RunState.SUCCEEDED),
    (RunState.RUNNING, RunState.FAILED),
    (RunState.AWAITING_APPROVAL, RunState.RUNNING),
    (RunState.AWAITING_APPROVAL, RunState.REJECTED),
}


@pytest.mark.parametrize("current", list(RunState))
@pytest.mark.parametrize("target", list(RunState))
def test_only_the_designed_edges_are_allowed(current: RunState, target: RunState) -> None:
    if (current, target) in EDGES:
        check_transition(current, target)
    else:
        with pytest.raises(ConflictError, match=f"cannot become {target}"):
            check_transition(current, target)


def test_terminal_states_have_no_way_out() -> None:
    for state in (RunState.SUCCEEDED, RunState.FAILED, RunState.REJECTED):
        assert TRANSITIONS[state] == frozenset()

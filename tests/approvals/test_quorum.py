"""The quorum rule on its own, over many random requirements and votes.

The stateful test drives the whole workflow through the API, which limits it to a few dozen
sequences; the rule itself is a pure function, so here it meets thousands.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from control_plane.approvals.quorum import Outcome, Vote, tally

ROLES = ("model_validator", "risk_officer", "auditor")
requirements = st.fixed_dictionaries(
    {
        "approvers": st.integers(min_value=0, max_value=3),
        "roles": st.lists(st.sampled_from(ROLES[:2]), unique=True, max_size=2),
    }
)
votes = st.lists(
    st.builds(
        Vote,
        approver=st.sampled_from(["ann", "bob", "cy", "dee"]),
        decision=st.sampled_from(["approve", "reject"]),
        roles=st.frozensets(st.sampled_from(ROLES), max_size=3),
    ),
    max_size=6,
)


@given(requirements, votes)
def test_an_approval_completes_exactly_when_the_quorum_and_roles_are_met(
    requirement: dict[str, object], cast: list[Vote]
) -> None:
    required = set(requirement["roles"])  # type: ignore[call-overload]
    rejected = any(
        v.decision == "reject" and (not required or required & set(v.roles)) for v in cast
    )
    approving = {v.approver: set(v.roles) for v in cast if v.decision == "approve"}
    held = set().union(*approving.values())
    met = len(approving) >= requirement["approvers"] and required <= held  # type: ignore[operator]
    outcome = tally(requirement, cast)
    if rejected:
        assert outcome == Outcome.REJECTED
    else:
        assert outcome == (Outcome.APPROVED if met else Outcome.PENDING)
    if outcome == Outcome.APPROVED:
        assert len(approving) >= requirement["approvers"]  # type: ignore[operator]
        assert required <= held

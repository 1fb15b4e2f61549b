"""When an approval is complete: the quorum rule over the decisions taken so far.

Pure functions of the requirement (``approvals.yaml``, as the approval gate recorded it) and the
decisions, so the rule can be checked apart from the store.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class Outcome(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Vote:
    """One principal's decision and the roles it held in the approval's domain when it decided."""

    approver: str
    decision: Literal["approve", "reject"]
    roles: Collection[str]


def tally(requirement: Mapping[str, Any], votes: Iterable[Vote]) -> Outcome:
    """The outcome of ``votes`` under ``requirement``.

    Rejected when one of the required roles' holders rejects (any rejection when no role is
    required); approved once ``approvers`` distinct principals approved and every required role
    is held by at least one of them; pending otherwise.
    """
    required = frozenset(requirement.get("roles") or ())
    approving: dict[str, frozenset[str]] = {}
    for vote in votes:
        if vote.decision == "reject":
            if not required or required & set(vote.roles):
                return Outcome.REJECTED
        else:
            approving[vote.approver] = frozenset(vote.roles)
    if len(approving) < int(requirement.get("approvers", 0)):
        return Outcome.PENDING
    held = frozenset().union(*approving.values()) if approving else frozenset[str]()
    return Outcome.APPROVED if required <= held else Outcome.PENDING

"""``approvals.yaml``: who must approve promotions (per stage and risk tier) and policy changes.

::

    stages:
      production:
        high:
          approvers: 2                      # distinct approvers
          roles: [model_validator, risk_officer]   # each must be held by one of them
          separation_of_duties: true        # the submitter and the trainers cannot approve
          expires_after_hours: 48           # the request lapses after this long
        low:
          approvers: 0                      # no approval needed
    policy_change:
      approvers: 1
      roles: [risk_officer]

A stage may leave risk tiers out; a run that asks for a missing combination fails closed. Roles
must be roles that ``policy.csv`` defines.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, StrictBool, StrictInt, model_validator

from policies.documents import Document
from policies.vocabulary import RiskTier

_STAGE: Final = re.compile(r"[a-z][a-z0-9_]*")


def _stage_name(stage: str) -> str:
    if not _STAGE.fullmatch(stage):
        raise ValueError(f"{stage!r} is not a stage name (lower case letters, digits, _)")
    return stage


StageName = Annotated[str, AfterValidator(_stage_name)]


class ApprovalRequirement(Document):
    """How many distinct approvers, holding which roles, within how long."""

    approvers: Annotated[StrictInt, Field(ge=0)]
    roles: tuple[str, ...] = ()
    separation_of_duties: StrictBool = True
    expires_after_hours: Annotated[StrictInt, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ApprovalRequirement:
        if self.approvers == 0 and self.roles:
            raise ValueError("roles are listed but no approver is required")
        if len(set(self.roles)) != len(self.roles):
            raise ValueError("a role is listed twice")
        return self

    def evidence(self) -> dict[str, Any]:
        """The requirement as JSON: what an approval request must satisfy."""
        return {
            "approvers": self.approvers,
            "roles": list(self.roles),
            "separation_of_duties": self.separation_of_duties,
            "expires_after_hours": self.expires_after_hours,
        }


class ApprovalsSection(Document):
    """The parsed ``approvals.yaml``."""

    stages: dict[StageName, dict[RiskTier, ApprovalRequirement]]
    policy_change: ApprovalRequirement

    def requirement(self, stage: str, risk_tier: str) -> ApprovalRequirement | None:
        """The requirement for promoting to ``stage`` at ``risk_tier``; None if undefined."""
        tiers = self.stages.get(stage, {})
        return next((req for tier, req in tiers.items() if tier == risk_tier), None)

    @property
    def roles(self) -> frozenset[str]:
        """Every role some requirement names."""
        requirements = [self.policy_change]
        requirements += [req for tiers in self.stages.values() for req in tiers.values()]
        return frozenset(role for requirement in requirements for role in requirement.roles)

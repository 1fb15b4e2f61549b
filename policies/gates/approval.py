"""The ``approval`` gate: a run waits until the people ``approvals.yaml`` requires approve it.

A promotion (or any run with a ``target_stage``) is looked up by its target stage and risk tier;
a ``policy_change`` run by the ``policy_change`` entry. The gate does not collect approvals: it
returns NEEDS_APPROVAL with the requirement as evidence (approvers, roles, separation of duties,
expiry) for the control plane's approval workflow, or PASS when no approver is required. A run
without a stage or risk tier, or one the file does not cover, fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.gates.base import GateContext, GateResult, GateStatus
from policies.sections.approvals import ApprovalRequirement


class ApprovalGate:
    """Turns ``approvals.yaml`` into the approval requirement of one run."""

    name = "approval"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ApprovalGate:
        """The gate; it takes no parameters, its requirements live in ``approvals.yaml``.

        Raises:
            ValueError: parameters were given.
        """
        if params:
            raise ValueError(
                "the approval gate takes no params; its requirements live in approvals.yaml"
            )
        return cls()

    def evaluate(self, context: GateContext) -> GateResult:
        approvals = context.bundle.approvals
        if context.run_kind == "policy_change":
            return self._verdict(approvals.policy_change, "approvals.yaml policy_change", {})
        stage = context.attributes.get("target_stage")
        tier = context.attributes.get("risk_tier")
        if not isinstance(stage, str) or not isinstance(tier, str):
            missing = " and ".join(
                name
                for name, value in (("target_stage", stage), ("risk_tier", tier))
                if not isinstance(value, str)
            )
            return self._fail(f"the run has no {missing}; the approval gate fails closed")
        requirement = approvals.requirement(stage, tier)
        if requirement is None:
            return self._fail(
                f"approvals.yaml defines no approval for stage {stage!r} at risk tier {tier!r}; "
                "the approval gate fails closed"
            )
        return self._verdict(
            requirement,
            f"approvals.yaml stages.{stage}.{tier}",
            {"target_stage": stage, "risk_tier": tier},
        )

    def _verdict(
        self, requirement: ApprovalRequirement, rule: str, scope: Mapping[str, str]
    ) -> GateResult:
        evidence = {**requirement.evidence(), "rule": rule, **scope}
        metrics = {"approvers_required": float(requirement.approvers)}
        if requirement.approvers == 0:
            return GateResult(
                self.name, GateStatus.PASS, metrics, evidence, (f"{rule} requires no approver",)
            )
        roles = f" holding {', '.join(requirement.roles)}" if requirement.roles else ""
        separation = (
            "; the submitter and the model's trainers cannot approve"
            if requirement.separation_of_duties
            else ""
        )
        reason = f"{rule} requires {requirement.approvers} distinct approver(s){roles}{separation}"
        return GateResult(self.name, GateStatus.NEEDS_APPROVAL, metrics, evidence, (reason,))

    def _fail(self, reason: str) -> GateResult:
        return GateResult(self.name, GateStatus.FAIL, {}, {}, (reason,))

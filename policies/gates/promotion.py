"""The ``promotion_evidence`` gate: a version is promoted only on the evidence the bundle names.

It reads facts the control plane puts in a promote run's attributes when the run is submitted
(``version_evaluation``: the latest evaluation's status, ``version_model_card``: whether that
evaluation produced a model card, ``version_privacy_mode``: how the version was trained), so
approvers are never asked to approve a version without its evidence. A missing fact fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.documents import Document
from policies.gates.base import GateContext, GateResult, GateStatus
from policies.vocabulary import ExecutionMode


class PromotionEvidenceConfig(Document):
    """The gate's parameters in ``gates.yaml``."""

    privacy_modes: tuple[ExecutionMode, ...] | None = None
    """The training privacy modes a promoted version may have; any when unset."""


class PromotionEvidenceGate:
    """Requires a passed evaluation, a model card and, when named, a training privacy mode."""

    name = "promotion_evidence"

    def __init__(self, config: PromotionEvidenceConfig) -> None:
        self.config = config

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PromotionEvidenceGate:
        """The gate configured by its ``gates.yaml`` parameters (validated)."""
        return cls(PromotionEvidenceConfig.model_validate(dict(params)))

    def evaluate(self, context: GateContext) -> GateResult:
        facts = context.attributes
        evidence: dict[str, Any] = {
            "version": facts.get("version"),
            "evaluation": facts.get("version_evaluation"),
            "model_card": bool(facts.get("version_model_card")),
            "privacy_mode": facts.get("version_privacy_mode"),
        }
        missing = []
        if evidence["evaluation"] != "passed":
            missing.append(f"a passed evaluation (latest: {evidence['evaluation'] or 'none'})")
        if not evidence["model_card"]:
            missing.append("a model card")
        allowed = self.config.privacy_modes
        if allowed is not None:
            evidence["allowed_privacy_modes"] = list(allowed)
            if evidence["privacy_mode"] not in allowed:
                missing.append(
                    f"training in privacy mode {' or '.join(allowed)} "
                    f"(recorded: {evidence['privacy_mode'] or 'none'})"
                )
        if missing:
            reason = f"version {evidence['version']} lacks {'; '.join(missing)}"
            return GateResult(self.name, GateStatus.FAIL, {}, evidence, (reason,))
        return GateResult(
            self.name,
            GateStatus.PASS,
            {},
            evidence,
            (f"version {evidence['version']} has a passed evaluation and a model card",),
        )

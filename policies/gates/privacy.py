"""The ``privacy_mode`` gate: the run's execution mode must suit the classification of its data.

The run asks for a mode in its ``privacy_mode`` parameter (the gate's ``default_mode`` when it
does not) and, for ``dp``, an ``epsilon`` (and optionally a ``delta``). ``privacy.yaml`` says
which modes each classification allows and caps epsilon per run. A run whose data has no known
classification fails: the gate cannot tell what protection it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from policies.documents import Document
from policies.gates.base import GateContext, GateResult, GateStatus
from policies.sections.privacy import ClassificationRule, DpLimits
from policies.vocabulary import CLASSIFICATIONS, EXECUTION_MODES, ExecutionMode


class PrivacyModeConfig(Document):
    """The gate's parameters in ``gates.yaml``."""

    default_mode: ExecutionMode = "plain"
    """The mode of a run that does not ask for one."""


class PrivacyModeGate:
    """Checks a run's execution mode, and its DP epsilon, against ``privacy.yaml``."""

    name = "privacy_mode"

    def __init__(self, config: PrivacyModeConfig) -> None:
        self.config = config

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PrivacyModeGate:
        """The gate configured by its ``gates.yaml`` parameters (validated)."""
        return cls(PrivacyModeConfig.model_validate(dict(params)))

    def evaluate(self, context: GateContext) -> GateResult:
        classification = context.attributes.get("classification")
        if classification not in CLASSIFICATIONS:
            what = "no data classification" if classification is None else "an unknown one"
            return self._result(
                GateStatus.FAIL,
                {"classification": str(classification) if classification is not None else None},
                f"the run's data has {what}; privacy_mode fails closed "
                f"(known classifications: {', '.join(CLASSIFICATIONS)})",
            )
        rule = context.bundle.privacy.classifications[classification]
        mode = context.params.get("privacy_mode", self.config.default_mode)
        evidence: dict[str, Any] = {
            "rule": f"privacy.yaml classifications.{classification}",
            "classification": classification,
            "allowed_modes": list(rule.modes),
            "pseudonymize": list(rule.pseudonymize),
            "mask": list(rule.mask),
        }
        if mode not in EXECUTION_MODES:
            return self._result(
                GateStatus.FAIL,
                evidence,
                f"the run asks for an unknown privacy_mode {mode!r} "
                f"(known: {', '.join(EXECUTION_MODES)})",
            )
        evidence["requested_mode"] = mode
        if mode not in rule.modes:
            return self._result(GateStatus.FAIL, evidence, _refusal(classification, rule, mode))
        if mode == "dp" and rule.dp is not None:
            evidence["dp"] = rule.dp.model_dump()
            return self._check_dp(rule.dp, context.params, evidence, classification)
        return self._result(
            GateStatus.PASS, evidence, f"privacy_mode {mode} is allowed for {classification} data"
        )

    def _check_dp(
        self,
        limits: DpLimits,
        params: Mapping[str, Any],
        evidence: dict[str, Any],
        classification: str,
    ) -> GateResult:
        epsilon = params.get("epsilon")
        delta = params.get("delta", limits.delta)
        if not _is_number(epsilon) or epsilon <= 0:
            return self._result(
                GateStatus.FAIL, evidence, "a dp run must ask for a positive number epsilon"
            )
        if not _is_number(delta) or delta <= 0:
            return self._result(GateStatus.FAIL, evidence, "delta must be a positive number")
        metrics = {
            "epsilon": float(epsilon),
            "max_epsilon_per_run": limits.max_epsilon_per_run,
            "delta": float(delta),
        }
        reasons = []
        if epsilon > limits.max_epsilon_per_run:
            reasons.append(
                f"epsilon {epsilon} exceeds the per-run cap {limits.max_epsilon_per_run} "
                f"for {classification} data (rule privacy.yaml classifications."
                f"{classification}.dp)"
            )
        if delta > limits.delta:
            reasons.append(f"delta {delta} exceeds {limits.delta} for {classification} data")
        if reasons:
            return self._result(GateStatus.FAIL, evidence, *reasons, metrics=metrics)
        return self._result(
            GateStatus.PASS,
            evidence,
            f"dp with epsilon {epsilon} is within the per-run cap {limits.max_epsilon_per_run} "
            f"for {classification} data",
            metrics=metrics,
        )

    def _result(
        self,
        status: GateStatus,
        evidence: Mapping[str, Any],
        *reasons: str,
        metrics: Mapping[str, float] | None = None,
    ) -> GateResult:
        return GateResult(self.name, status, metrics or {}, evidence, reasons)


def _refusal(classification: str, rule: ClassificationRule, mode: str) -> str:
    named = f"rule privacy.yaml classifications.{classification}"
    if rule.required_mode is not None:
        return (
            f"{classification} data requires privacy_mode {rule.required_mode} ({named}); "
            f"the run asks for {mode}"
        )
    return (
        f"{classification} data allows privacy_mode {', '.join(rule.modes)} ({named}); "
        f"the run asks for {mode}"
    )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)

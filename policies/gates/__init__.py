"""Gates: checks a governed run must pass, chosen by name from the policy bundle."""

from __future__ import annotations

from policies.gates.approval import ApprovalGate
from policies.gates.base import Gate, GateContext, GateResult, GateSpec, GateStatus
from policies.gates.drift import DriftConfig, DriftGate
from policies.gates.evaluation import EvaluationError, ModelEvaluation, ModelRiskGate
from policies.gates.explainability import ExplainabilityConfig, ExplainabilityGate
from policies.gates.fairness import FairnessConfig, FairnessGate, disparities
from policies.gates.model_risk import (
    build_model_risk_gate,
    evaluate_model,
    known_model_risk_gates,
)
from policies.gates.plan import plan_gates
from policies.gates.privacy import PrivacyModeConfig, PrivacyModeGate
from policies.gates.registry import build_gate, known_gates

__all__ = [
    "ApprovalGate",
    "DriftConfig",
    "DriftGate",
    "EvaluationError",
    "ExplainabilityConfig",
    "ExplainabilityGate",
    "FairnessConfig",
    "FairnessGate",
    "Gate",
    "GateContext",
    "GateResult",
    "GateSpec",
    "GateStatus",
    "ModelEvaluation",
    "ModelRiskGate",
    "PrivacyModeConfig",
    "PrivacyModeGate",
    "build_gate",
    "build_model_risk_gate",
    "disparities",
    "evaluate_model",
    "known_gates",
    "known_model_risk_gates",
    "plan_gates",
]

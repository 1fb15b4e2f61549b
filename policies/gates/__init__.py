"""Gates: checks a governed run must pass, chosen by name from the policy bundle."""

from __future__ import annotations

from policies.gates.approval import ApprovalGate
from policies.gates.base import Gate, GateContext, GateResult, GateSpec, GateStatus
from policies.gates.plan import plan_gates
from policies.gates.privacy import PrivacyModeConfig, PrivacyModeGate
from policies.gates.registry import build_gate, known_gates

__all__ = [
    "ApprovalGate",
    "Gate",
    "GateContext",
    "GateResult",
    "GateSpec",
    "GateStatus",
    "PrivacyModeConfig",
    "PrivacyModeGate",
    "build_gate",
    "known_gates",
    "plan_gates",
]

"""Policy as code: bundles, the authorization engine, gates and policy cases.

A policy bundle (:class:`PolicyBundle`) says who may do what (casbin RBAC with domains plus ABAC
conditions, decided by :class:`PolicyEngine`), which gates each governed run needs
(:func:`plan_gates`, :func:`build_gate`), and the approval, privacy and maturity rules those
gates and the control plane apply.
"""

from __future__ import annotations

from policies.bundle import DEFAULT_BUNDLE_DIR, PolicyBundle, load_bundle
from policies.cases import CaseFailure, CaseFile, PolicyCase, load_cases, run_cases
from policies.decisions import DEFAULT_DENY, AuthzRequest, Decision, RoleAssignment
from policies.engine import PolicyEngine
from policies.errors import BundleError
from policies.gates import (
    Gate,
    GateContext,
    GateResult,
    GateSpec,
    GateStatus,
    build_gate,
    known_gates,
    plan_gates,
)
from policies.reference import CasbinReference, casbin_enforcer

__all__ = [
    "DEFAULT_BUNDLE_DIR",
    "DEFAULT_DENY",
    "AuthzRequest",
    "BundleError",
    "CasbinReference",
    "CaseFailure",
    "CaseFile",
    "Decision",
    "Gate",
    "GateContext",
    "GateResult",
    "GateSpec",
    "GateStatus",
    "PolicyBundle",
    "PolicyCase",
    "PolicyEngine",
    "RoleAssignment",
    "build_gate",
    "casbin_enforcer",
    "known_gates",
    "load_bundle",
    "load_cases",
    "plan_gates",
    "run_cases",
]

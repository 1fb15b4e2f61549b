"""The closed vocabularies policy speaks: run kinds, data classifications, risk tiers, modes.

Bundles are validated against these, so a typo such as ``hihg`` is refused at load time instead
of silently never matching.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

RunKind = Literal[
    "ingest",
    "train",
    "evaluate",
    "promote",
    "deploy",
    "federated_train",
    "policy_change",
    "export",
]
RUN_KINDS: tuple[str, ...] = get_args(RunKind)


def is_run_kind(value: object) -> TypeGuard[RunKind]:
    """Whether ``value`` is a run kind."""
    return value in RUN_KINDS


Classification = Literal["public", "internal", "confidential", "restricted"]
CLASSIFICATIONS: tuple[str, ...] = get_args(Classification)
"""Data classifications, from least to most sensitive (the order ``level()`` compares)."""

RiskTier = Literal["low", "medium", "high"]
RISK_TIERS: tuple[str, ...] = get_args(RiskTier)

ExecutionMode = Literal["plain", "dp", "federated", "he"]
EXECUTION_MODES: tuple[str, ...] = get_args(ExecutionMode)
"""How a run may touch data: in the clear, with differential privacy, federated, or encrypted."""

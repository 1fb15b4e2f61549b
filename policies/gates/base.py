"""The gate protocol: what a gate is given, and what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from policies.bundle import PolicyBundle


class GateStatus(StrEnum):
    """A gate's verdict: the run may go on, must stop, or waits for people to approve it."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict with its measurements, its JSON evidence and the reasons for it.

    ``artifacts`` are documents too large or too volatile for the evidence (an HTML report),
    by file name; the evidence names them and the run stores them beside it.
    """

    gate: str
    status: GateStatus
    metrics: Mapping[str, float]
    evidence: Mapping[str, Any]
    reasons: tuple[str, ...]
    artifacts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateContext:
    """What a gate evaluates: the run's kind, attributes and parameters, and the bundle in force.

    ``attributes`` describe what the run touches (``risk_tier``, ``classification``,
    ``target_stage``, ...); ``params`` are what the submitter asked for (``privacy_mode``,
    ``epsilon``, ...).
    """

    run_kind: str
    attributes: Mapping[str, Any]
    params: Mapping[str, Any]
    bundle: PolicyBundle


@dataclass(frozen=True)
class GateSpec:
    """A planned gate: its registered name and the parameters the bundle gives it."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


class Gate(Protocol):
    """A check a governed run must pass, chosen by name from the registry."""

    @property
    def name(self) -> str:
        """The name bundles use for the gate."""
        ...

    def evaluate(self, context: GateContext) -> GateResult:
        """The verdict on one run."""
        ...

"""Privacy accounting of the subsampled Gaussian mechanism with opacus's accountants.

A DP-SGD run is described by its step history: ``(noise_multiplier, sample_rate, steps)``
segments, as opacus records them. The epsilon it spent for a delta is computed here from that
history alone, independently of the optimizer that took the steps, with opacus's RDP (Mironov
2017, Mironov et al. 2019) or PRV (Gopi et al. 2021) accountant. Poisson sampling is assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

Mechanism = Literal["rdp", "prv"]
MECHANISMS: Final[tuple[Mechanism, ...]] = ("rdp", "prv")


@dataclass(frozen=True)
class StepSegment:
    """``steps`` consecutive DP-SGD steps with one noise multiplier and Poisson sample rate."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not self.noise_multiplier > 0:
            raise ValueError(f"noise multiplier must be positive, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


def _accountant(mechanism: Mechanism) -> RDPAccountant | PRVAccountant:
    if mechanism == "rdp":
        return RDPAccountant()
    if mechanism == "prv":
        return PRVAccountant()
    raise ValueError(f"unknown accountant {mechanism!r} (known: {', '.join(MECHANISMS)})")


def epsilon_spent(history: Sequence[StepSegment], delta: float, mechanism: Mechanism) -> float:
    """The epsilon a step history spends at ``delta``, by composing every segment.

    Args:
        history: the segments, in order (composition does not depend on the order).
        delta: the target delta, in (0, 1).
        mechanism: ``rdp`` or ``prv``.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not history:
        return 0.0
    accountant = _accountant(mechanism)
    accountant.history = [(s.noise_multiplier, s.sample_rate, s.steps) for s in history]
    return float(accountant.get_epsilon(delta=delta))


def noise_for_epsilon(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, mechanism: Mechanism
) -> float:
    """The smallest noise multiplier (to opacus's search tolerance) that keeps ``steps`` steps
    at ``sample_rate`` within ``target_epsilon`` at ``delta``."""
    if not target_epsilon > 0:
        raise ValueError(f"target epsilon must be positive, got {target_epsilon}")
    StepSegment(1.0, sample_rate, steps)  # validates the rate and the steps
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=mechanism,
        )
    )

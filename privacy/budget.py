"""An (epsilon, delta) privacy budget, counted in exact integer units.

Budgets compose across runs by basic sequential composition (Dwork and Roth, Theorem 3.16):
runs that spent (eps_i, delta_i) on one dataset spent at most (sum eps_i, sum delta_i) together,
whatever their accountants. Sums are kept in integers (nano-epsilons, femto-deltas) so that any
order of reservations and releases leaves the same totals; spends round up and budgets round
down, so rounding never allows more than the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

EPSILON_UNITS: Final = 10**9
"""Units per epsilon (a unit is a nano-epsilon)."""
DELTA_UNITS: Final = 10**15
"""Units per delta (a unit is a femto-delta)."""


def epsilon_units(epsilon: float, *, round_up: bool) -> int:
    """``epsilon`` in nano-epsilons, rounded up (a spend) or down (a budget)."""
    return _units(epsilon, EPSILON_UNITS, round_up)


def delta_units(delta: float, *, round_up: bool) -> int:
    """``delta`` in femto-deltas, rounded up (a spend) or down (a budget)."""
    return _units(delta, DELTA_UNITS, round_up)


def epsilon_of(units: int) -> float:
    """The epsilon ``units`` nano-epsilons make."""
    return units / EPSILON_UNITS


def delta_of(units: int) -> float:
    """The delta ``units`` femto-deltas make."""
    return units / DELTA_UNITS


def _units(value: float, per_one: int, round_up: bool) -> int:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a privacy parameter must be finite and non-negative, got {value}")
    scaled = value * per_one
    # Absorb the float error of the division before rounding (1e-6 of one unit).
    return math.ceil(scaled - 1e-6) if round_up else math.floor(scaled + 1e-6)


@dataclass(frozen=True)
class PrivacyBudget:
    """A total (epsilon, delta) a dataset may spend over all runs, and the cap of one run."""

    epsilon: float
    delta: float
    max_epsilon_per_run: float

    def __post_init__(self) -> None:
        if not (self.epsilon >= 0 and 0 <= self.delta < 1 and self.max_epsilon_per_run > 0):
            raise ValueError(f"invalid privacy budget {self}")

    def stricter(self, epsilon: float | None, delta: float | None) -> PrivacyBudget:
        """This budget, lowered to a dataset's own ``epsilon`` and ``delta`` where they are."""
        return PrivacyBudget(
            epsilon=self.epsilon if epsilon is None else min(self.epsilon, epsilon),
            delta=self.delta if delta is None else min(self.delta, delta),
            max_epsilon_per_run=self.max_epsilon_per_run,
        )

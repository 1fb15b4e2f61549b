"""The accounting helpers agree with opacus's accountants stepped as an optimizer steps them."""

from __future__ import annotations

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from privacy.accounting import Mechanism, StepSegment, epsilon_spent, noise_for_epsilon

SETTINGS = [
    # (sample rate, noise multiplier, steps, delta)
    (256 / 32561, 1.1, 1273, 1e-5),
    (0.01, 0.8, 500, 1e-6),
    (0.1, 2.0, 50, 1e-5),
]


def _stepped(mechanism: Mechanism, segments: list[StepSegment]) -> RDPAccountant | PRVAccountant:
    accountant = RDPAccountant() if mechanism == "rdp" else PRVAccountant()
    for segment in segments:
        for _ in range(segment.steps):
            accountant.step(
                noise_multiplier=segment.noise_multiplier, sample_rate=segment.sample_rate
            )
    return accountant


@pytest.mark.parametrize("mechanism", ["rdp", "prv"])
@pytest.mark.parametrize(("sample_rate", "noise", "steps", "delta"), SETTINGS)
def test_epsilon_equals_opacus_on_the_same_steps(
    mechanism: Mechanism, sample_rate: float, noise: float, steps: int, delta: float
) -> None:
    # Given a step history, and opacus's accountant stepped once per step
    history = [StepSegment(noise, sample_rate, steps)]
    reference = _stepped(mechanism, history).get_epsilon(delta=delta)
    # When the epsilon is recomputed from the history alone
    epsilon = epsilon_spent(history, delta, mechanism)
    # Then they agree within 1e-6
    assert epsilon == pytest.approx(reference, abs=1e-6)
    assert epsilon > 0


@pytest.mark.parametrize("mechanism", ["rdp", "prv"])
def test_segments_with_different_noise_compose(mechanism: Mechanism) -> None:
    # Given a run that changed its noise half way
    history = [StepSegment(1.0, 0.01, 300), StepSegment(1.5, 0.02, 200)]
    # Then the composed epsilon is opacus's and exceeds each segment's alone
    reference = _stepped(mechanism, history).get_epsilon(delta=1e-5)
    epsilon = epsilon_spent(history, 1e-5, mechanism)
    assert epsilon == pytest.approx(reference, abs=1e-6)
    assert epsilon > max(epsilon_spent([segment], 1e-5, mechanism) for segment in history)


@pytest.mark.parametrize("mechanism", ["rdp", "prv"])
def test_the_derived_noise_meets_the_target(mechanism: Mechanism) -> None:
    # When the noise for a target epsilon of 2 is derived
    noise = noise_for_epsilon(2.0, 1e-5, 0.01, 1000, mechanism)
    # Then it spends at most the target, and not much less (opacus's search tolerance)
    spent = epsilon_spent([StepSegment(noise, 0.01, 1000)], 1e-5, mechanism)
    assert 2.0 - 0.02 <= spent <= 2.0


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        StepSegment(1.0, 1.5, 10)
    with pytest.raises(ValueError, match="noise multiplier"):
        StepSegment(0.0, 0.1, 10)
    with pytest.raises(ValueError, match="delta"):
        epsilon_spent([StepSegment(1.0, 0.1, 10)], 0.0, "rdp")
    with pytest.raises(ValueError, match="unknown accountant"):
        epsilon_spent([StepSegment(1.0, 0.1, 10)], 1e-5, "gdp")  # type: ignore[arg-type]

"""DP-SGD's draws: Poisson samples at the planned rate, Gaussians of the planned deviation,
from torch's generator and from the kernel's CSPRNG alike (bounds of 6 standard errors)."""

from __future__ import annotations

import pytest
import torch

from privacy.dp_sgd import poisson_sample
from privacy.randomness import Randomness, SecureRandomness, TorchRandomness, randomness

GENERATORS = [TorchRandomness(), SecureRandomness()]
IDS = ["torch", "csprng"]


def test_production_gets_the_secure_generator() -> None:
    assert isinstance(randomness(production=True), SecureRandomness)
    assert randomness(production=True).secure is True
    assert randomness(production=False).secure is False


@pytest.mark.parametrize("rng", GENERATORS, ids=IDS)
def test_uniforms_are_uniform_on_the_unit_interval(rng: Randomness) -> None:
    draws = rng.uniform(200_000)
    assert draws.dtype == torch.float64
    assert draws.min().item() >= 0
    assert draws.max().item() < 1
    assert abs(draws.mean().item() - 0.5) < 6 * (1 / 12 / len(draws)) ** 0.5
    assert abs(draws.var().item() - 1 / 12) < 6 * (1 / 180 / len(draws)) ** 0.5


@pytest.mark.parametrize("rng", GENERATORS, ids=IDS)
def test_noise_is_gaussian_with_the_given_deviation(rng: Randomness) -> None:
    # Given a reference tensor of 200,000 float32 values
    like = torch.empty(400, 500)
    # When noise of deviation 3 is drawn in its shape
    noise = rng.normal(3.0, like)
    # Then it has that shape and dtype, mean 0, deviation 3 and a Gaussian's kurtosis of 3
    assert (noise.shape, noise.dtype) == (like.shape, torch.float32)
    count = noise.numel()
    standard = noise.double().flatten() / 3
    assert abs(standard.mean().item()) < 6 / count**0.5
    assert abs(standard.std().item() - 1) < 6 / (2 * count) ** 0.5
    assert abs(standard.pow(4).mean().item() - 3) < 6 * (96 / count) ** 0.5


@pytest.mark.parametrize("rng", GENERATORS, ids=IDS)
def test_poisson_samples_take_each_record_at_the_rate(rng: Randomness) -> None:
    # Given 10,000 records sampled at rate 0.05 for 200 steps
    records, rate, steps = 10_000, 0.05, 200
    samples = [poisson_sample(records, rate, rng) for _ in range(steps)]
    # Then each sample holds distinct, valid records
    assert all(len(s.unique()) == len(s) and (s < records).all() for s in samples)
    # And the batch sizes are binomial(10,000, 0.05): mean 500, variance 475
    sizes = torch.tensor([len(s) for s in samples], dtype=torch.float64)
    assert abs(sizes.mean().item() - records * rate) < 6 * (records * rate * 0.95 / steps) ** 0.5
    assert 0.5 < sizes.var().item() / (records * rate * 0.95) < 1.5
    # And every record is taken about rate * steps = 10 times, none systematically left out
    taken = torch.bincount(torch.cat(samples), minlength=records).double()
    assert abs(taken.mean().item() - rate * steps) < 0.1
    assert 0.8 < taken.var().item() / (rate * steps * 0.95) < 1.2

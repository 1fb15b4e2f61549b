"""DP-SGD on Adult: the epsilon it reports is opacus's on the same steps; samplers are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn
from torch.utils.data import (
    DataLoader,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from control_plane.sample_data import adult_features, read_adult
from privacy.accounting import Mechanism
from privacy.dp_sgd import (
    DpSgdPlan,
    SamplingError,
    SecureRngUnavailableError,
    grad_sample_mode,
    train_dp_sgd,
)

ROWS = 8192


@pytest.fixture(scope="module")
def adult() -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = adult_features(read_adult())
    return torch.from_numpy(features[:ROWS]), torch.from_numpy(labels[:ROWS])


def _mlp(inputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, 2))


def test_a_target_epsilon_trains_an_mlp_and_reports_opacus_epsilon(
    adult: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # Given an MLP on Adult and a plan with a target epsilon
    features, labels = adult
    torch.manual_seed(0)
    model = _mlp(features.shape[1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    plan = DpSgdPlan(
        max_grad_norm=1.0,
        delta=1e-5,
        epochs=2,
        batch_size=256,
        target_epsilon=3.0,
    )
    # When it trains
    evidence = train_dp_sgd(
        model, optimizer, nn.CrossEntropyLoss(), TensorDataset(features, labels), plan
    )
    # Then the epsilon is opacus's accountant's on the same (sample rate, noise, steps, delta)
    reference = RDPAccountant()
    reference.history = [(evidence.noise_multiplier, evidence.sample_rate, evidence.steps)]
    assert evidence.epsilon == pytest.approx(reference.get_epsilon(delta=1e-5), abs=1e-6)
    assert evidence.epsilon == pytest.approx(evidence.engine_epsilon, abs=1e-6)
    assert evidence.epsilon <= 3.0
    # And it ran Poisson-sampled with ghost clipping, the steps it planned
    assert evidence.steps == 2 * 32
    assert evidence.sample_rate == 1 / 32
    assert (evidence.grad_sample_mode, evidence.poisson_sampling) == ("ghost", True)
    assert evidence.secure_rng is False
    # And the model learned more than the majority class
    with torch.no_grad():
        accuracy = (model(features).argmax(1) == labels).float().mean().item()
    assert accuracy > 1 - labels.float().mean().item() + 0.02


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_a_policy_noise_multiplier_is_used_as_given(
    adult: tuple[torch.Tensor, torch.Tensor], accountant: Mechanism
) -> None:
    # Given a plan with the policy's noise multiplier and clipping norm, from a DataLoader
    features, labels = adult
    model = _mlp(features.shape[1])
    plan = DpSgdPlan(
        max_grad_norm=0.5,
        delta=1e-6,
        epochs=1,
        batch_size=512,
        noise_multiplier=1.3,
        accountant=accountant,
    )
    # When it trains
    evidence = train_dp_sgd(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        nn.CrossEntropyLoss(),
        DataLoader(TensorDataset(features, labels), batch_size=512, shuffle=True),
        plan,
    )
    # Then the noise is the plan's and the epsilon is opacus's on the same steps
    reference = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    reference.history = [(1.3, 1 / 16, 16)]
    assert (evidence.noise_multiplier, evidence.max_grad_norm) == (1.3, 0.5)
    assert evidence.epsilon == pytest.approx(reference.get_epsilon(delta=1e-6), abs=1e-6)


@pytest.mark.parametrize(
    "sampler",
    [
        WeightedRandomSampler(np.ones(ROWS), ROWS),
        SubsetRandomSampler(range(ROWS // 2)),
    ],
    ids=["weighted", "subset"],
)
def test_samplers_that_break_poisson_sampling_are_refused(
    adult: tuple[torch.Tensor, torch.Tensor], sampler: torch.utils.data.Sampler[int]
) -> None:
    # Given a loader that samples by weight, or only a subset
    features, labels = adult
    model = _mlp(features.shape[1])
    loader = DataLoader(TensorDataset(features, labels), batch_size=256, sampler=sampler)
    plan = DpSgdPlan(max_grad_norm=1.0, delta=1e-5, epochs=1, batch_size=256, noise_multiplier=1.0)
    # Then DP-SGD refuses it: the accounting would not hold
    with pytest.raises(SamplingError, match="breaks Poisson sampling"):
        train_dp_sgd(
            model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), loader, plan
        )


def test_production_mode_refuses_to_train_without_a_secure_generator(
    adult: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # torchcsprng is not installed here, so production mode must refuse rather than fall back
    features, labels = adult
    model = _mlp(features.shape[1])
    plan = DpSgdPlan(
        max_grad_norm=1.0,
        delta=1e-5,
        epochs=1,
        batch_size=256,
        noise_multiplier=1.0,
        production=True,
    )
    with pytest.raises(SecureRngUnavailableError, match="torchcsprng"):
        train_dp_sgd(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            nn.CrossEntropyLoss(),
            TensorDataset(features, labels),
            plan,
        )


def test_ghost_clipping_where_every_layer_allows_it_else_functorch() -> None:
    assert grad_sample_mode(_mlp(4)) == "ghost"
    assert grad_sample_mode(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))) == "functorch"


def test_a_plan_needs_exactly_one_source_of_noise() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DpSgdPlan(max_grad_norm=1.0, delta=1e-5, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="exactly one"):
        DpSgdPlan(
            max_grad_norm=1.0,
            delta=1e-5,
            epochs=1,
            batch_size=8,
            noise_multiplier=1.0,
            target_epsilon=1.0,
        )

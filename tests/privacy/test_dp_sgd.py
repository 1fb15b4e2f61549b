"""DP-SGD on Adult: the epsilon it reports is opacus's on the same steps, its clipped gradients
are opacus's, its noise has the planned deviation; samplers are checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.optimizers import DPOptimizer
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
    grad_sample_mode,
    per_sample_clipping,
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
    assert (evidence.grad_sample_mode, evidence.poisson_sampling) == ("ghost-bookkeeping", True)
    assert (evidence.secure_rng, evidence.rng) == (False, "torch default generator (not secure)")
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


def test_production_mode_trains_with_the_kernel_csprng(
    adult: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # Given a production plan
    features, labels = adult
    torch.manual_seed(0)
    model = _mlp(features.shape[1])
    with torch.no_grad():
        initial_loss = nn.CrossEntropyLoss()(model(features), labels)
    plan = DpSgdPlan(
        max_grad_norm=1.0,
        delta=1e-5,
        epochs=1,
        batch_size=256,
        noise_multiplier=1.0,
        production=True,
    )
    # When it trains
    evidence = train_dp_sgd(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        nn.CrossEntropyLoss(),
        TensorDataset(features, labels),
        plan,
    )
    # Then sampling and noise came from the secure generator, and the evidence says which
    assert evidence.secure_rng is True
    assert evidence.rng.startswith("os.urandom")
    # And the epsilon is still opacus's on the same steps, and the model learned
    reference = RDPAccountant()
    reference.history = [(1.0, 1 / 32, 32)]
    assert evidence.epsilon == pytest.approx(reference.get_epsilon(delta=1e-5), abs=1e-6)
    with torch.no_grad():
        assert nn.CrossEntropyLoss()(model(features), labels) < initial_loss - 0.05


class _Tokens(nn.Module):
    """A linear layer applied to every token of a sequence, then pooled: 3-D linear inputs."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.embed = nn.Linear(inputs, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = features.reshape(len(features), 4, -1)
        return self.head(torch.relu(self.embed(tokens)).mean(1))


@pytest.mark.parametrize(
    ("make", "mode"),
    [
        (lambda inputs: _mlp(inputs), "ghost-bookkeeping"),
        (lambda inputs: _Tokens(inputs // 4), "ghost-bookkeeping"),
        (
            lambda inputs: nn.Sequential(nn.Linear(inputs, 16), nn.LayerNorm(16), nn.Linear(16, 2)),
            "functorch",
        ),
    ],
    ids=["mlp", "tokens", "layernorm"],
)
def test_the_clipped_gradient_sum_is_opacus_on_the_same_batch(
    adult: tuple[torch.Tensor, torch.Tensor], make: Any, mode: str
) -> None:
    # Given one batch and two copies of a model, in double precision so that 1e-6 is far
    # above the rounding of summing 200 records
    features, labels = adult[0][:200].double(), adult[1][:200]
    torch.manual_seed(0)
    ours, theirs = make(features.shape[1]).double(), make(features.shape[1]).double()
    theirs.load_state_dict(ours.state_dict())
    criterion = nn.CrossEntropyLoss()
    # When govplane clips and sums the per-sample gradients
    clipping = per_sample_clipping(ours)
    clipped = clipping.clipped_sum(criterion, features, labels, 0.1)
    clipping.close()
    # And opacus's optimizer clips the same batch without noise
    module = GradSampleModule(theirs)
    optimizer = DPOptimizer(
        torch.optim.SGD(module.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=0.1,
        expected_batch_size=len(features),
    )
    criterion(module(features), labels).backward()
    optimizer.pre_step()
    # Then the sums agree within 1e-6, in the mode the model allows
    assert clipping.mode == mode
    reference = [p.grad * len(features) for p in module.parameters()]
    for got, want in zip(clipped, reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # And clipping bit: the plain summed gradient is another one
    plain = torch.autograd.grad(criterion(ours(features), labels), list(ours.parameters()))
    assert (
        max((g * len(features) - c).abs().max().item() for g, c in zip(plain, clipped, strict=True))
        > 0.1
    )


class _NoLoss(nn.Module):
    """A loss whose gradient is zero: each step's update is its noise alone."""

    reduction = "mean"

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return outputs.sum() * 0


@pytest.mark.parametrize("production", [False, True], ids=["torch", "csprng"])
def test_the_noise_has_the_planned_deviation(
    adult: tuple[torch.Tensor, torch.Tensor], production: bool
) -> None:
    # Given a loss with zero gradient, 4 Poisson steps a noise deviation sigma * C = 1 over an
    # expected batch of 256, and a learning rate of 128: each parameter moves by the sum of
    # 4 draws of N(0, 1) / 256 times 128, so by N(0, 1)
    features, labels = adult[0][:1024], adult[1][:1024]
    model = _mlp(features.shape[1])
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    plan = DpSgdPlan(
        max_grad_norm=0.5,
        delta=1e-5,
        epochs=1,
        batch_size=256,
        noise_multiplier=2.0,
        production=production,
    )
    # When it trains
    evidence = train_dp_sgd(
        model,
        torch.optim.SGD(model.parameters(), lr=128.0),
        _NoLoss(),
        TensorDataset(features, labels),
        plan,
    )
    # Then the moves of its 1,634 parameters are standard normal (6 standard errors)
    moves = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    assert (evidence.steps, len(moves)) == (4, 1634)
    assert abs(moves.mean().item()) < 6 / len(moves) ** 0.5
    assert abs(moves.std().item() - 1) < 6 / (2 * len(moves)) ** 0.5


def test_bookkeeping_when_every_trainable_layer_is_linear_else_functorch() -> None:
    assert grad_sample_mode(_mlp(4)) == "ghost-bookkeeping"
    assert grad_sample_mode(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))) == "functorch"
    assert grad_sample_mode(nn.Sequential(nn.Embedding(4, 4), nn.Linear(4, 4))) == "functorch"


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

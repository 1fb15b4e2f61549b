"""DP-SGD training with opacus: Poisson sampling, per-sample clipping, Gaussian noise.

The plan fixes the clipping norm, delta, epochs and expected batch size, and either the noise
multiplier (from the policy) or a target epsilon the noise is derived from. Training wraps the
caller's model, optimizer and loss with opacus's ``PrivacyEngine``; the spent epsilon is then
recomputed from the steps actually taken, by :func:`privacy.accounting.epsilon_spent`, and
returned as evidence next to what the engine's own accountant says.
"""

from __future__ import annotations

import importlib.util
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from opacus import PrivacyEngine
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import (
    GradSampleModuleFastGradientClipping,
)
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from privacy.accounting import Mechanism, StepSegment, epsilon_spent, noise_for_epsilon

GradSampleMode = Literal["ghost", "functorch"]


class SamplingError(ValueError):
    """The data loader samples in a way the privacy accounting does not cover."""


class SecureRngUnavailableError(RuntimeError):
    """Production mode was asked for but no cryptographically secure generator is installed."""


@dataclass(frozen=True)
class DpSgdPlan:
    """How a DP-SGD run trains: clipping, noise (given or derived), delta, epochs, batch size.

    Attributes:
        max_grad_norm: per-sample gradient clipping bound C.
        delta: the delta the run is accounted at.
        epochs: passes over the data (in expectation: batches are Poisson samples).
        batch_size: the expected batch size; the sample rate is its share of the data.
        noise_multiplier: the noise scale sigma; None derives it from ``target_epsilon``.
        target_epsilon: the epsilon the run may spend when the noise is derived.
        accountant: ``rdp`` or ``prv``.
        production: use a cryptographically secure generator for noise and sampling.
    """

    max_grad_norm: float
    delta: float
    epochs: int
    batch_size: int
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    accountant: Mechanism = "rdp"
    production: bool = False

    def __post_init__(self) -> None:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier or target_epsilon")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ValueError(f"noise multiplier must be positive, got {self.noise_multiplier}")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ValueError(f"target epsilon must be positive, got {self.target_epsilon}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max grad norm must be positive, got {self.max_grad_norm}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be at least 1")
        if self.accountant not in ("rdp", "prv"):
            raise ValueError(f"unknown accountant {self.accountant!r} (known: rdp, prv)")

    def schedule(self, records: int) -> tuple[float, int]:
        """The Poisson sample rate and the number of steps of this plan over ``records``."""
        if records < 1:
            raise ValueError("DP-SGD needs at least one record")
        batches = math.ceil(records / self.batch_size)
        return 1 / batches, self.epochs * batches


@dataclass(frozen=True)
class DpSgdEvidence:
    """What a DP-SGD run did and spent, recomputed from its steps, and how long its steps took
    (``train_seconds``: the training loop, without setup and accounting)."""

    epsilon: float
    engine_epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    epochs: int
    grad_sample_mode: GradSampleMode
    poisson_sampling: bool
    secure_rng: bool
    train_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-serializable evidence."""
        return asdict(self)


def grad_sample_mode(model: nn.Module) -> GradSampleMode:
    """``ghost`` clipping when every layer with parameters has a ghost norm sampler, else
    ``functorch`` per-sample gradients (vectorized, for any layer)."""
    samplers = GradSampleModuleFastGradientClipping.NORM_SAMPLERS
    layers = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(False))]
    return "ghost" if all(type(layer) in samplers for layer in layers) else "functorch"


def check_poisson_compatible(loader: DataLoader[Any]) -> None:
    """Refuse loaders whose sampling the accounting would misrepresent.

    The accountants assume each step samples every record independently with the same rate.
    A loader that samples by weights, a subset, a shard or custom batches breaks that; only a
    plain random or sequential order over the whole dataset is replaced by Poisson sampling.

    Raises:
        SamplingError: naming the sampler.
    """
    sampler = loader.batch_sampler
    if type(sampler) is not BatchSampler:
        raise SamplingError(
            f"batch sampler {type(sampler).__name__} breaks Poisson sampling; "
            "give the dataset or a DataLoader with a plain batch_size"
        )
    inner = sampler.sampler
    if type(inner) not in (RandomSampler, SequentialSampler):
        raise SamplingError(
            f"sampler {type(inner).__name__} breaks Poisson sampling (records would not be "
            "sampled independently at one rate); the privacy accounting would not hold"
        )
    if isinstance(inner, RandomSampler) and (inner.replacement or inner._num_samples):
        raise SamplingError("a RandomSampler with replacement or num_samples breaks Poisson")


class TensorRows(TensorDataset):
    """A :class:`TensorDataset` that fetches a whole batch with one index per tensor."""

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, ...]]:
        return [tuple(tensor[indices] for tensor in self.tensors)] if indices else []


def _fetched_batch(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return batch[0]


def batch_loader(data: Dataset[Any], batch_size: int, shuffle: bool = False) -> DataLoader[Any]:
    """A loader of ``data``; tensors are fetched a batch at a time instead of row by row."""
    if isinstance(data, TensorDataset):
        rows = TensorRows(*data.tensors)
        return DataLoader(rows, batch_size, shuffle=shuffle, collate_fn=_fetched_batch)
    return DataLoader(data, batch_size, shuffle=shuffle)


def train_dp_sgd(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    data: Dataset[Any] | DataLoader[Any],
    plan: DpSgdPlan,
) -> DpSgdEvidence:
    """Train ``model`` in place with DP-SGD under ``plan``; return the evidence.

    Args:
        model: the model; its parameters are updated in place.
        optimizer: an optimizer over ``model``'s parameters.
        criterion: the loss, with mean reduction.
        data: a map-style dataset of (features, label), or a DataLoader over one (its
            dataset is sampled anew, Poisson, at the plan's expected batch size).
        plan: clipping, noise, delta, epochs, expected batch size, accountant.

    Raises:
        SamplingError: the loader's sampler breaks Poisson sampling.
        SecureRngUnavailableError: production mode without ``torchcsprng``.
    """
    if isinstance(data, DataLoader):
        check_poisson_compatible(data)
        data = data.dataset
    loader = batch_loader(data, plan.batch_size)
    if getattr(criterion, "reduction", "mean") != "mean":
        raise ValueError("the loss must average over the batch (reduction='mean')")
    if plan.production and importlib.util.find_spec("torchcsprng") is None:
        raise SecureRngUnavailableError(
            "production DP-SGD needs a cryptographically secure generator (torchcsprng) for "
            "noise and sampling; it is not installed, so the run is refused"
        )
    sample_rate, steps = plan.schedule(len(loader.dataset))  # type: ignore[arg-type]
    noise = plan.noise_multiplier
    if noise is None:
        assert plan.target_epsilon is not None
        noise = noise_for_epsilon(
            plan.target_epsilon, plan.delta, sample_rate, steps, plan.accountant
        )
    mode = grad_sample_mode(model)
    with warnings.catch_warnings():
        # Development mode says so in the evidence (secure_rng: false) instead.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=plan.production)
        private = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            criterion=criterion,
            noise_multiplier=noise,
            max_grad_norm=plan.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=mode,
        )
    if mode == "ghost":
        private_model, private_optimizer, private_criterion, private_loader = private
    else:
        private_model, private_optimizer, private_loader = private
        private_criterion = criterion
    taken = 0
    started = time.perf_counter()
    private_model.train()
    with warnings.catch_warnings():
        # Ghost clipping's hooks fire on module outputs when inputs need no gradient, as here.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(plan.epochs):
            for features, labels in private_loader:
                private_optimizer.zero_grad()
                loss = private_criterion(private_model(features), labels)
                loss.backward()
                private_optimizer.step()
                taken += 1
    train_seconds = time.perf_counter() - started
    history = [StepSegment(noise, sample_rate, taken)]
    return DpSgdEvidence(
        epsilon=epsilon_spent(history, plan.delta, plan.accountant),
        engine_epsilon=float(engine.get_epsilon(plan.delta)),
        delta=plan.delta,
        accountant=plan.accountant,
        noise_multiplier=noise,
        max_grad_norm=plan.max_grad_norm,
        sample_rate=sample_rate,
        steps=taken,
        epochs=plan.epochs,
        grad_sample_mode=mode,
        poisson_sampling=True,
        secure_rng=plan.production,
        train_seconds=train_seconds,
    )

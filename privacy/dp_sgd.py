"""DP-SGD training: Poisson sampling, per-sample clipping, Gaussian noise, opacus's accounting.

The plan fixes the clipping norm, delta, epochs and expected batch size, and either the noise
multiplier (from the policy) or a target epsilon the noise is derived from. Each step samples
every record independently at the plan's rate, clips each record's gradient to
``max_grad_norm``, sums, adds Gaussian noise of deviation ``noise_multiplier * max_grad_norm``
and divides by the expected batch size, as opacus's ``DPOptimizer`` does; the caller's optimizer
then steps. Per-sample clipping is computed one of two ways (the evidence names which):

- ``ghost-bookkeeping`` when every layer with trainable parameters is an ``nn.Linear``: one
  backward pass to the layers' outputs gives each layer's output gradients; with the inputs
  captured on the way forward they give every record's gradient norm without materializing it
  (the ghost norm), and the clipped sum as one matmul per layer (book-keeping, Bu et al. 2022);
- ``functorch`` otherwise: opacus's ``GradSampleModule`` computes per-sample gradients for any
  layer.

opacus's accountant (RDP or PRV) is stepped along the way; the spent epsilon is then recomputed
from the steps actually taken by :func:`privacy.accounting.epsilon_spent`, and both are returned
as evidence.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import torch
from opacus.accountants import create_accountant
from opacus.grad_sample import GradSampleModule
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
)

from privacy.accounting import Mechanism, StepSegment, epsilon_spent, noise_for_epsilon
from privacy.randomness import Randomness, randomness

GradSampleMode = Literal["ghost-bookkeeping", "functorch"]


class SamplingError(ValueError):
    """The data loader samples in a way the privacy accounting does not cover."""


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
        production: draw sampling and noise from a cryptographically secure generator
            (:class:`privacy.randomness.SecureRandomness`).
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
    rng: str
    train_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-serializable evidence."""
        return asdict(self)


class PerSampleClipping(Protocol):
    """Computes the sum of a batch's per-sample gradients, each clipped to a norm."""

    mode: GradSampleMode
    parameters: list[nn.Parameter]

    def clipped_sum(
        self, criterion: nn.Module, features: torch.Tensor, labels: torch.Tensor, max_norm: float
    ) -> list[torch.Tensor]:
        """The clipped per-sample gradients of ``criterion`` (mean over the batch), summed,
        one tensor per parameter in :attr:`parameters`."""
        ...

    def close(self) -> None:
        """Remove what was attached to the model."""
        ...


def _clip_factors(squared_norms: torch.Tensor, max_norm: float) -> torch.Tensor:
    # opacus's factor (DPOptimizer.clip_and_accumulate), so clipped sums match it
    return (max_norm / (squared_norms.sqrt() + 1e-6)).clamp(max=1.0)


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad]


class BookkeepingClipping:
    """Ghost clipping in one backward pass, for models whose trainable layers are all linear.

    For a linear layer with inputs ``a`` (batch, tokens, in) and output gradients ``g``
    (batch, tokens, out), record i's weight gradient is ``g_i^T a_i``: its squared norm is
    ``<a_i a_i^T, g_i g_i^T>`` (``|a_i|^2 |g_i|^2`` for one token), and the clipped sum is
    ``(c * g)^T a`` over all records and tokens.
    """

    mode: GradSampleMode = "ghost-bookkeeping"

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._layers = [m for m in model.modules() if type(m) is nn.Linear and _trainable(m)]
        self.parameters = [p for layer in self._layers for p in _trainable(layer)]
        self._calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
        self._hooks = [layer.register_forward_hook(self._capture) for layer in self._layers]

    def _capture(self, layer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        self._calls.append((layer, inputs[0].detach(), output))

    def clipped_sum(
        self, criterion: nn.Module, features: torch.Tensor, labels: torch.Tensor, max_norm: float
    ) -> list[torch.Tensor]:
        self._calls.clear()
        size = len(features)
        loss = criterion(self._model(features), labels)
        output_grads = torch.autograd.grad(
            loss, [output for _, _, output in self._calls], materialize_grads=True
        )
        seen: dict[nn.Module, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for (layer, inputs, _), grad in zip(self._calls, output_grads, strict=True):
            inputs_seen, grads_seen = seen.setdefault(layer, ([], []))
            inputs_seen.append(inputs.reshape(size, -1, inputs.shape[-1]))
            # the loss averages over the batch: scale back to each record's own gradient
            grads_seen.append(grad.reshape(size, -1, grad.shape[-1]) * size)
        layers = {layer: (torch.cat(a, 1), torch.cat(g, 1)) for layer, (a, g) in seen.items()}
        squared = torch.zeros(size, dtype=loss.dtype)
        for layer, (a, g) in layers.items():
            if layer.weight.requires_grad:
                squared += _weight_norms_squared(a, g)
            if layer.bias is not None and layer.bias.requires_grad:
                squared += g.sum(1).square().sum(1)
        factors = _clip_factors(squared, max_norm)
        sums: list[torch.Tensor] = []
        for layer in self._layers:
            if layer not in layers:  # not called on this batch: no gradient
                sums.extend(torch.zeros_like(p) for p in _trainable(layer))
                continue
            a, g = layers[layer]
            scaled = g * factors[:, None, None]
            if layer.weight.requires_grad:
                sums.append(scaled.flatten(0, 1).T @ a.flatten(0, 1))
            if layer.bias is not None and layer.bias.requires_grad:
                sums.append(scaled.sum((0, 1)))
        return sums

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._calls.clear()


def _weight_norms_squared(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if a.shape[1] == 1:
        return a.square().sum((1, 2)) * g.square().sum((1, 2))
    return (torch.bmm(a, a.mT) * torch.bmm(g, g.mT)).sum((1, 2))


class PerSampleGradientClipping:
    """Per-sample gradients from opacus's ``GradSampleModule`` (functorch), for any layer."""

    mode: GradSampleMode = "functorch"

    def __init__(self, model: nn.Module) -> None:
        self._module = GradSampleModule(
            model, batch_first=True, loss_reduction="mean", force_functorch=True
        )
        self.parameters = [p for p in model.parameters() if p.requires_grad]

    def clipped_sum(
        self, criterion: nn.Module, features: torch.Tensor, labels: torch.Tensor, max_norm: float
    ) -> list[torch.Tensor]:
        self._module.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # opacus's hooks fire on module outputs when inputs need no gradient, as here
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            criterion(self._module(features), labels).backward()
        samples = [_grad_sample(p, len(features)) for p in self.parameters]
        squared = torch.stack([g.reshape(len(g), -1).square().sum(1) for g in samples]).sum(0)
        factors = _clip_factors(squared, max_norm)
        return [torch.einsum("i,i...", factors.to(g.dtype), g) for g in samples]

    def close(self) -> None:
        self._module._close()


def _grad_sample(parameter: nn.Parameter, size: int) -> torch.Tensor:
    sample: torch.Tensor | None = getattr(parameter, "grad_sample", None)
    if sample is None:  # the parameter took no part in this batch's loss
        return torch.zeros(size, *parameter.shape, dtype=parameter.dtype)
    return sample


def grad_sample_mode(model: nn.Module) -> GradSampleMode:
    """``ghost-bookkeeping`` when every layer with trainable parameters is an ``nn.Linear``,
    else ``functorch`` per-sample gradients (vectorized, for any layer)."""
    layers = [m for m in model.modules() if _trainable(m)]
    return "ghost-bookkeeping" if all(type(m) is nn.Linear for m in layers) else "functorch"


def per_sample_clipping(model: nn.Module) -> PerSampleClipping:
    """The per-sample clipping of :func:`grad_sample_mode`, attached to ``model``."""
    if grad_sample_mode(model) == "ghost-bookkeeping":
        return BookkeepingClipping(model)
    return PerSampleGradientClipping(model)


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


def poisson_sample(records: int, sample_rate: float, rng: Randomness) -> torch.Tensor:
    """The indices of the records one Poisson-sampled step takes, each independently."""
    return torch.nonzero(rng.uniform(records) < sample_rate).squeeze(1)


def _rows(data: Dataset[Any], indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if isinstance(data, TensorDataset):
        return tuple(tensor[indices] for tensor in data.tensors)
    return tuple(default_collate([data[i] for i in indices.tolist()]))


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
        plan: clipping, noise, delta, epochs, expected batch size, accountant, generator.

    Raises:
        SamplingError: the loader's sampler breaks Poisson sampling.
    """
    if isinstance(data, DataLoader):
        check_poisson_compatible(data)
        data = data.dataset
    if getattr(criterion, "reduction", "mean") != "mean":
        raise ValueError("the loss must average over the batch (reduction='mean')")
    records = len(data)  # type: ignore[arg-type]
    sample_rate, steps = plan.schedule(records)
    noise = plan.noise_multiplier
    if noise is None:
        assert plan.target_epsilon is not None
        noise = noise_for_epsilon(
            plan.target_epsilon, plan.delta, sample_rate, steps, plan.accountant
        )
    # opacus's divisor for a mean loss under Poisson sampling
    expected_batch = max(1, int(records * sample_rate))
    std = noise * plan.max_grad_norm
    rng = randomness(plan.production)
    accountant = create_accountant(plan.accountant)
    clipping = per_sample_clipping(model)
    started = time.perf_counter()
    model.train()
    try:
        for _ in range(steps):
            indices = poisson_sample(records, sample_rate, rng)
            if len(indices):
                features, labels = _rows(data, indices)
                sums = clipping.clipped_sum(criterion, features, labels, plan.max_grad_norm)
            else:  # an empty sample still takes a step: noise only
                sums = [torch.zeros_like(p) for p in clipping.parameters]
            for parameter, clipped in zip(clipping.parameters, sums, strict=True):
                parameter.grad = (clipped + rng.normal(std, clipped)) / expected_batch
            optimizer.step()
            accountant.step(noise_multiplier=noise, sample_rate=sample_rate)
    finally:
        clipping.close()
    train_seconds = time.perf_counter() - started
    return DpSgdEvidence(
        epsilon=epsilon_spent(
            [StepSegment(noise, sample_rate, steps)], plan.delta, plan.accountant
        ),
        engine_epsilon=float(accountant.get_epsilon(plan.delta)),
        delta=plan.delta,
        accountant=plan.accountant,
        noise_multiplier=noise,
        max_grad_norm=plan.max_grad_norm,
        sample_rate=sample_rate,
        steps=steps,
        epochs=plan.epochs,
        grad_sample_mode=clipping.mode,
        poisson_sampling=True,
        secure_rng=rng.secure,
        rng=rng.name,
        train_seconds=train_seconds,
    )

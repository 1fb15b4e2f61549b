"""The random draws of DP-SGD: Poisson sampling masks and Gaussian noise.

Development runs draw from torch's default generator (reproducible with ``torch.manual_seed``,
not secure). Production runs draw every bit from the kernel's cryptographically secure
generator (``os.urandom``): uniforms of 53 random bits, and Gaussians from them by Box-Muller.
Like opacus's secure mode (``opacus.optimizers.optimizer._generate_noise``), each secure
Gaussian is the sum of four draws of half its deviation, which resists the floating-point
attacks on sampled Gaussians (Holohan and Braghin, 2021, section 5.1).
"""

from __future__ import annotations

import math
import os
from typing import Protocol

import numpy as np
import torch

_MANTISSA_BITS = 53


class Randomness(Protocol):
    """Where a run's sampling and noise come from."""

    @property
    def name(self) -> str:
        """The generator, as the evidence names it."""
        ...

    @property
    def secure(self) -> bool:
        """Whether it is cryptographically secure."""
        ...

    def uniform(self, count: int) -> torch.Tensor:
        """``count`` float64 uniforms in [0, 1)."""
        ...

    def normal(self, std: float, like: torch.Tensor) -> torch.Tensor:
        """Gaussian noise of deviation ``std`` in the shape and dtype of ``like``."""
        ...


class TorchRandomness:
    """torch's default generator: fast and seedable, for development runs only."""

    name = "torch default generator (not secure)"
    secure = False

    def uniform(self, count: int) -> torch.Tensor:
        return torch.rand(count, dtype=torch.float64)

    def normal(self, std: float, like: torch.Tensor) -> torch.Tensor:
        return torch.normal(0.0, std, like.shape, dtype=like.dtype)


class SecureRandomness:
    """The kernel's CSPRNG through ``os.urandom``, for production runs."""

    name = "os.urandom (kernel CSPRNG), Box-Muller, sum of 4 draws"
    secure = True

    def uniform(self, count: int) -> torch.Tensor:
        words = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> (64 - _MANTISSA_BITS)
        return torch.from_numpy(words.astype(np.float64) * 2.0**-_MANTISSA_BITS)

    def normal(self, std: float, like: torch.Tensor) -> torch.Tensor:
        count = like.numel()
        draws = self._standard_normals(4 * count).reshape(4, count).sum(0) * (std / 2)
        return draws.reshape(like.shape).to(like.dtype)

    def _standard_normals(self, count: int) -> torch.Tensor:
        pairs = (count + 1) // 2
        uniforms = self.uniform(2 * pairs).reshape(2, pairs)
        radius = torch.sqrt(-2.0 * torch.log1p(-uniforms[0]))  # 1 - u is in (0, 1]
        angle = 2.0 * math.pi * uniforms[1]
        return torch.cat((radius * torch.cos(angle), radius * torch.sin(angle)))[:count]


def randomness(production: bool) -> Randomness:
    """The secure generator for production runs, torch's otherwise."""
    return SecureRandomness() if production else TorchRandomness()

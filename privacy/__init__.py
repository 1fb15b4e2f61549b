"""Differential privacy, homomorphic encryption, PII handling and federated training.

PII detection and masking are exported here. The other modules are imported directly (``from
privacy.dp_sgd import train_dp_sgd``): most of them load torch, opacus or TenSEAL, which the
control plane must not pay for at import time.

- ``privacy.pii``, ``privacy.masking``: PII detection; pseudonyms, generalization, masking.
- ``privacy.budget``: (epsilon, delta) budgets in exact integer units, basic composition.
- ``privacy.accounting``: the epsilon of a DP-SGD step history (opacus's RDP and PRV).
- ``privacy.dp_sgd``: DP-SGD training (opacus's per-sample gradients and accountants), and
  its evidence; ``privacy.randomness``: its sampling and noise, secure in production.
- ``privacy.he``: CKKS scoring and aggregation on ciphertexts (TenSEAL).
"""

from __future__ import annotations

from privacy.masking import (
    PSEUDONYM_PREFIX,
    MissingKeyError,
    Pseudonymizer,
    generalize_band,
    mask,
    truncate,
)
from privacy.pii import Detection, PiiKind, detect_pii

__all__ = [
    "PSEUDONYM_PREFIX",
    "Detection",
    "MissingKeyError",
    "PiiKind",
    "Pseudonymizer",
    "detect_pii",
    "generalize_band",
    "mask",
    "truncate",
]

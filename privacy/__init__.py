"""Differential privacy, homomorphic encryption, PII handling and federated training."""

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

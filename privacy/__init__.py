"""Differential privacy, homomorphic encryption, PII handling and federated training.

Modules are imported directly (``from privacy.dp_sgd import train_dp_sgd``): most of them load
torch, opacus or TenSEAL, which the control plane must not pay for at import time.

- ``privacy.budget``: (epsilon, delta) budgets in exact integer units, basic composition.
- ``privacy.accounting``: the epsilon of a DP-SGD step history (opacus's RDP and PRV).
- ``privacy.dp_sgd``: DP-SGD training with opacus, and its evidence.
- ``privacy.he``: CKKS scoring and aggregation on ciphertexts (TenSEAL).
"""

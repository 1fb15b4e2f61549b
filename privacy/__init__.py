"""Differential privacy, homomorphic encryption, PII handling and federated training."""

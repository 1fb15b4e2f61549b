"""Model registries: log trained models with their provenance, read them back by registry URI."""

from __future__ import annotations

from connectors.registry.base import (
    ArtifactIntegrityError,
    LoadedModel,
    ModelFlavor,
    ModelRegistry,
    ModelUri,
    NotSupportedError,
    Provenance,
    RegisteredVersion,
    RegistryError,
    artifact_digest,
)
from connectors.registry.mlflow import MlflowRegistry, MlflowRegistryConfig
from connectors.registry.release import Release, SignedRelease

__all__ = [
    "ArtifactIntegrityError",
    "LoadedModel",
    "MlflowRegistry",
    "MlflowRegistryConfig",
    "ModelFlavor",
    "ModelRegistry",
    "ModelUri",
    "NotSupportedError",
    "Provenance",
    "RegisteredVersion",
    "RegistryError",
    "Release",
    "SignedRelease",
    "artifact_digest",
]

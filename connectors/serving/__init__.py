"""Serving: deploy model versions at endpoints (local MLflow scoring servers, KServe, Seldon)."""

from __future__ import annotations

from connectors.serving.base import (
    DeploymentSpec,
    Endpoint,
    EndpointStatus,
    NotSupportedError,
    Serving,
    ServingError,
)
from connectors.serving.kubernetes import (
    KubernetesServing,
    KubernetesServingConfig,
    ManifestError,
    inference_service,
    seldon_deployment,
    validate_manifest,
)
from connectors.serving.local import LocalScoringServers, LocalServingConfig

__all__ = [
    "DeploymentSpec",
    "Endpoint",
    "EndpointStatus",
    "KubernetesServing",
    "KubernetesServingConfig",
    "LocalScoringServers",
    "LocalServingConfig",
    "ManifestError",
    "NotSupportedError",
    "Serving",
    "ServingError",
    "inference_service",
    "seldon_deployment",
    "validate_manifest",
]

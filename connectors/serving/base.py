"""The serving protocol: deploy a model version at an endpoint, check it, predict, undeploy."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import pandas as pd


class ServingError(RuntimeError):
    """The serving backend refused or failed an operation."""


class NotSupportedError(ServingError):
    """The serving backend lacks this capability."""


class EndpointStatus(StrEnum):
    """Where a deployment is."""

    READY = "ready"
    APPLIED = "applied"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class DeploymentSpec:
    """What to serve and how.

    Attributes:
        name: the deployment's name (a DNS label: it names Kubernetes objects too).
        model: the registered model's name.
        version: the model version served.
        model_dir: the verified artifact files on local disk (the local backend serves them).
        storage_uri: where the cluster fetches the artifact from (KServe, Seldon).
        canary_percent: the share of traffic the new version receives (100: all of it).
    """

    name: str
    model: str
    version: int
    model_dir: Path | None = None
    storage_uri: str | None = None
    canary_percent: int = 100


@dataclass(frozen=True)
class Endpoint:
    """A deployment as its backend reports it."""

    name: str
    url: str | None
    status: EndpointStatus
    details: dict[str, Any]


class Serving(Protocol):
    """Serves model versions; one backend per serving product, chosen by ``kind``."""

    @property
    def kind(self) -> str: ...

    def deploy(self, spec: DeploymentSpec) -> Endpoint:
        """Serve ``spec``'s model version (replacing what the deployment served before)."""
        ...

    def status(self, name: str) -> Endpoint:
        """The deployment's current state."""
        ...

    def predict(self, name: str, frame: pd.DataFrame) -> list[Any]:
        """The deployment's predictions for the rows of ``frame``."""
        ...

    def undeploy(self, name: str) -> None:
        """Stop serving the deployment."""
        ...

"""Federated training with Flower: govplane's ServerApp and ClientApp, and their deployment.

The apps (``privacy.federated.server_app``, ``privacy.federated.client_app``) are loaded by
Flower's own processes and are not imported here: they load Flower.

- ``plan``: the run's plan, as the control plane writes it and the apps read it.
- ``model``: site statistics, the agreed features, local training, the packaged pipeline.
- ``deployment``: the SuperLink and SuperNode processes, and run submission with ``flwr``.
"""

from __future__ import annotations

from privacy.federated.deployment import (
    Deployment,
    DeploymentError,
    FlowerControl,
    Ports,
    Security,
    SiteNode,
    wait_for_outcome,
)
from privacy.federated.model import FeatureSpec, SiteStatistics, to_pipeline
from privacy.federated.plan import DifferentialPrivacy, FederatedPlan, SiteData

__all__ = [
    "Deployment",
    "DeploymentError",
    "DifferentialPrivacy",
    "FeatureSpec",
    "FederatedPlan",
    "FlowerControl",
    "Ports",
    "Security",
    "SiteData",
    "SiteNode",
    "SiteStatistics",
    "to_pipeline",
    "wait_for_outcome",
]

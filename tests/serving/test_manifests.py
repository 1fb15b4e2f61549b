"""KServe and Seldon manifests: built, validated against their CRD schemas, and applied with the
official kubernetes client to a fake Kubernetes API server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.serving import (
    DeploymentSpec,
    EndpointStatus,
    KubernetesServing,
    KubernetesServingConfig,
    ManifestError,
    inference_service,
    seldon_deployment,
    validate_manifest,
)
from control_plane.runs import RunState
from tests.serving.conftest import Governed
from tests.serving.fake_kubernetes import FakeKubernetes

STORE = "s3://models/credit/2"
SPEC = DeploymentSpec("credit-prod", "credit", 2, storage_uri=STORE, canary_percent=100)
CANARY = DeploymentSpec("credit-prod", "credit", 3, storage_uri="s3://models/3", canary_percent=20)


def test_an_inference_service_serves_the_mlflow_artifact() -> None:
    manifest = inference_service(SPEC, "models")
    assert manifest["metadata"]["namespace"] == "models"
    model = manifest["spec"]["predictor"]["model"]
    assert model == {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": "v2",
        "storageUri": STORE,
    }
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]
    assert inference_service(CANARY, "models")["spec"]["predictor"]["canaryTrafficPercent"] == 20


def test_a_seldon_canary_splits_traffic_with_the_version_served_before() -> None:
    single = seldon_deployment(SPEC, "models", None)
    assert [p["traffic"] for p in single["spec"]["predictors"]] == [100]
    split = seldon_deployment(CANARY, "models", STORE)["spec"]["predictors"]
    assert [(p["name"], p["traffic"], p["graph"]["modelUri"]) for p in split] == [
        ("main", 80, STORE),
        ("canary", 20, "s3://models/3"),
    ]
    with pytest.raises(ManifestError, match="needs the version served before"):
        seldon_deployment(CANARY, "models", None)


def _mutated(manifest: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return manifest


@pytest.mark.parametrize(
    ("kind", "path", "value", "message"),
    [
        ("kserve", ["metadata", "name"], "Credit_Prod", "metadata/name"),
        ("kserve", ["apiVersion"], "serving.kserve.io/v1alpha1", "apiVersion"),
        ("kserve", ["spec", "predictor", "canaryTrafficPercent"], 150, "canaryTrafficPercent"),
        ("kserve", ["spec", "predictor", "model", "modelFormat"], {}, "'name' is a required"),
        ("seldon", ["spec", "predictors"], [], "spec/predictors"),
        ("seldon", ["spec", "predictors", 0, "traffic"], 60, "traffic adds up to 60"),
        ("seldon", ["spec", "predictors", 0, "graph", "implementation"], "PICKLE", "PICKLE"),
    ],
)
def test_invalid_manifests_are_refused_with_the_path(
    kind: str, path: list[Any], value: Any, message: str
) -> None:
    manifest = (
        inference_service(SPEC, "ns") if kind == "kserve" else seldon_deployment(SPEC, "ns", None)
    )
    with pytest.raises(ManifestError, match=message):
        validate_manifest(kind, _mutated(manifest, path, value))


def test_a_spec_without_storage_or_with_a_bad_canary_is_refused() -> None:
    with pytest.raises(ManifestError, match="storage URI"):
        inference_service(DeploymentSpec("x", "credit", 1), "ns")
    with pytest.raises(ManifestError, match="canary_percent"):
        inference_service(
            DeploymentSpec("x", "credit", 1, storage_uri=STORE, canary_percent=0), "ns"
        )


def test_the_kubernetes_client_applies_replaces_and_deletes(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    # Given a KServe backend on the fake cluster
    config = KubernetesServingConfig(
        kind="kserve", namespace="models", kubeconfig=cluster.kubeconfig(tmp_path / "kube")
    )
    serving = KubernetesServing(config)
    key = ("serving.kserve.io", "v1beta1", "models", "inferenceservices", "credit-prod")
    # When a version is deployed, then a canary of the next one
    first = serving.deploy(SPEC)
    serving.deploy(CANARY)
    # Then the cluster created the object, then replaced it with the canary split
    assert first.status == EndpointStatus.APPLIED
    stored = cluster.objects[key]
    assert stored["metadata"]["generation"] == 2
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert stored["metadata"]["labels"]["govplane.io/version"] == "3"
    assert [m for m, _ in cluster.requests] == ["GET", "POST", "GET", "PUT"]
    assert set(cluster.authorizations) == {"Bearer test-token"}
    # And undeploying deletes it
    serving.undeploy("credit-prod")
    assert key not in cluster.objects
    assert serving.status("credit-prod").status == EndpointStatus.STOPPED


def test_a_governed_seldon_deploy_applies_the_promoted_artifact(
    governed: Governed, cluster: FakeKubernetes
) -> None:
    # Given a version promoted to production
    governed.model("credit", "medium")
    version = governed.register("credit")
    governed.promote_to_production("credit", version)
    # When it is deployed to Seldon
    run = governed.run(
        "deploy", "model:credit", version=version, target="seldon", deployment="credit-seldon"
    )
    # Then the cluster received a SeldonDeployment serving the store's artifact location
    assert run["state"] == RunState.SUCCEEDED, run
    ((key, stored),) = cluster.objects.items()
    assert key[:4] == ("machinelearning.seldon.io", "v1", "default", "seldondeployments")
    uri = governed.registry_uri("credit", version)
    location = governed.registry.artifact_location(uri)
    assert stored["spec"]["predictors"][0]["graph"]["modelUri"] == location
    shown = governed.client.get("/api/v1/deployments/credit-seldon").json()
    assert (shown["target"], shown["status"]) == ("seldon", "applied")

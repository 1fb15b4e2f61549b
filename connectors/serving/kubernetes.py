"""KServe ``InferenceService`` and Seldon ``SeldonDeployment`` deployments on Kubernetes.

Manifests are built from a :class:`DeploymentSpec`, validated against the structural schema of
their CRD (``schemas/``, vendored: nothing is fetched at run time) and applied with the official
``kubernetes`` client: created, or replaced when the deployment exists. A canary share below 100
splits traffic between the new version and the one served before: KServe keeps the previous
revision itself (``canaryTrafficPercent``); Seldon gets two predictors with their ``traffic``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from connectors.serving.base import (
    DeploymentSpec,
    Endpoint,
    EndpointStatus,
    NotSupportedError,
    ServingError,
)


class ManifestError(ServingError):
    """A manifest does not match its CRD's schema."""


@dataclass(frozen=True)
class _Crd:
    group: str
    version: str
    plural: str
    schema: str


_CRDS = {
    "kserve": _Crd("serving.kserve.io", "v1beta1", "inferenceservices", "inferenceservice.json"),
    "seldon": _Crd("machinelearning.seldon.io", "v1", "seldondeployments", "seldondeployment.json"),
}


class KubernetesServingConfig(BaseModel):
    """Which serving product on which cluster.

    Attributes:
        kind: ``kserve`` or ``seldon``.
        namespace: where deployments are applied.
        kubeconfig: the cluster's kubeconfig file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["kserve", "seldon"]
    namespace: str
    kubeconfig: Path


def _labels(spec: DeploymentSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "govplane",
        "govplane.io/model": spec.model[:63],
        "govplane.io/version": str(spec.version),
    }


def _check_spec(spec: DeploymentSpec) -> None:
    if not 1 <= spec.canary_percent <= 100:
        raise ManifestError(f"canary_percent must be 1 to 100, not {spec.canary_percent}")
    if spec.storage_uri is None:
        raise ManifestError("a cluster deployment needs the artifact's storage URI")


def inference_service(spec: DeploymentSpec, namespace: str) -> dict[str, Any]:
    """The KServe ``InferenceService`` serving ``spec`` with the MLflow runtime (V2 protocol)."""
    _check_spec(spec)
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": "mlflow"},
            "protocolVersion": "v2",
            "storageUri": spec.storage_uri,
        }
    }
    if spec.canary_percent < 100:
        predictor["canaryTrafficPercent"] = spec.canary_percent
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": _labels(spec)},
        "spec": {"predictor": predictor},
    }
    validate_manifest("kserve", manifest)
    return manifest


def seldon_deployment(
    spec: DeploymentSpec, namespace: str, previous_storage_uri: str | None
) -> dict[str, Any]:
    """The Seldon ``SeldonDeployment`` serving ``spec`` with its MLflow server.

    With a canary share below 100, the version served before (``previous_storage_uri``) keeps
    the rest of the traffic in a second predictor.

    Raises:
        ManifestError: a canary without a previous version, or an invalid manifest.
    """
    _check_spec(spec)

    def predictor(name: str, uri: str | None, traffic: int) -> dict[str, Any]:
        return {
            "name": name,
            "replicas": 1,
            "traffic": traffic,
            "graph": {
                "name": "model",
                "implementation": "MLFLOW_SERVER",
                "modelUri": uri,
                "type": "MODEL",
                "children": [],
            },
        }

    predictors = [predictor("main", spec.storage_uri, spec.canary_percent)]
    if spec.canary_percent < 100:
        if previous_storage_uri is None:
            raise ManifestError("a Seldon canary needs the version served before it")
        predictors = [
            predictor("main", previous_storage_uri, 100 - spec.canary_percent),
            predictor("canary", spec.storage_uri, spec.canary_percent),
        ]
    manifest = {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": _labels(spec)},
        "spec": {"name": spec.name, "predictors": predictors},
    }
    validate_manifest("seldon", manifest)
    return manifest


@cache
def _validator(kind: str) -> Any:
    from jsonschema import Draft202012Validator

    text = resources.files("connectors.serving").joinpath("schemas", _CRDS[kind].schema)
    return Draft202012Validator(json.loads(text.read_text()))


def validate_manifest(kind: str, manifest: dict[str, Any]) -> None:
    """Check a manifest against its CRD's structural schema (and Seldon's traffic total).

    Raises:
        ManifestError: every violation, with its path.
    """
    errors = sorted(_validator(kind).iter_errors(manifest), key=lambda e: list(e.absolute_path))
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    if kind == "seldon" and not problems:
        total = sum(p.get("traffic", 0) for p in manifest["spec"]["predictors"])
        if total != 100:
            problems.append(f"spec/predictors: traffic adds up to {total}, not 100")
    if problems:
        raise ManifestError(f"invalid {kind} manifest: {'; '.join(problems)}")


class KubernetesServing:
    """A :class:`connectors.serving.Serving` that applies KServe or Seldon custom resources."""

    def __init__(self, config: KubernetesServingConfig) -> None:
        self._config = config
        self._crd = _CRDS[config.kind]
        self._api: Any = None

    @property
    def kind(self) -> str:
        return self._config.kind

    @property
    def api(self) -> Any:
        """The ``CustomObjectsApi`` of the configured cluster (created on first use)."""
        if self._api is None:
            from kubernetes import client, config

            api_client = config.new_client_from_config(config_file=str(self._config.kubeconfig))
            self._api = client.CustomObjectsApi(api_client)
        return self._api

    def deploy(self, spec: DeploymentSpec) -> Endpoint:
        """Create or replace the deployment's custom resource.

        Raises:
            ManifestError: the manifest is invalid (nothing is applied).
            ServingError: the cluster refused it.
        """
        from kubernetes.client.exceptions import ApiException

        existing = self._get(spec.name)
        if self._config.kind == "kserve":
            manifest = inference_service(spec, self._config.namespace)
        else:
            manifest = seldon_deployment(spec, self._config.namespace, _served_uri(existing))
        where = (self._crd.group, self._crd.version, self._config.namespace, self._crd.plural)
        try:
            if existing is None:
                applied = self.api.create_namespaced_custom_object(*where, manifest)
            else:
                manifest["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                applied = self.api.replace_namespaced_custom_object(*where, spec.name, manifest)
        except ApiException as error:
            raise ServingError(
                f"the cluster refused {spec.name}: {error.status} {error.reason}"
            ) from None
        return _endpoint(spec.name, applied, manifest)

    def status(self, name: str) -> Endpoint:
        found = self._get(name)
        if found is None:
            return Endpoint(name, None, EndpointStatus.STOPPED, {})
        return _endpoint(name, found, None)

    def predict(self, name: str, frame: pd.DataFrame) -> list[Any]:
        raise NotSupportedError(
            f"{self._config.kind} deployments answer predictions at their cluster endpoint"
        )

    def undeploy(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_namespaced_custom_object(
                self._crd.group, self._crd.version, self._config.namespace, self._crd.plural, name
            )
        except ApiException as error:
            if error.status != 404:
                raise ServingError(
                    f"the cluster refused to delete {name}: {error.status}"
                ) from None

    def _get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found: dict[str, Any] = self.api.get_namespaced_custom_object(
                self._crd.group, self._crd.version, self._config.namespace, self._crd.plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise ServingError(f"the cluster refused to read {name}: {error.status}") from None
        return found


def _served_uri(existing: dict[str, Any] | None) -> str | None:
    """The model URI a SeldonDeployment's main predictor serves."""
    if existing is None:
        return None
    predictors = existing.get("spec", {}).get("predictors") or [{}]
    uri = predictors[-1].get("graph", {}).get("modelUri")
    return str(uri) if uri else None


def _endpoint(name: str, applied: dict[str, Any], manifest: dict[str, Any] | None) -> Endpoint:
    status = applied.get("status") or {}
    url = status.get("url") or (status.get("address") or {}).get("url")
    ready = any(
        c.get("type") in ("Ready", "Available") and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    details: dict[str, Any] = {"uid": applied.get("metadata", {}).get("uid")}
    if manifest is not None:
        details["manifest"] = manifest
    return Endpoint(name, url, EndpointStatus.READY if ready else EndpointStatus.APPLIED, details)

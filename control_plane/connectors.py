"""The connectors the settings choose: model registry, training orchestrator, serving backends."""

from __future__ import annotations

from audit import CheckpointSigner
from connectors.registry import MlflowRegistry, MlflowRegistryConfig, ModelRegistry
from connectors.serving import KubernetesServing, KubernetesServingConfig, Serving
from connectors.training import LocalRunner, LocalRunnerConfig, Orchestrator
from control_plane.settings import Settings


def registry_config(settings: Settings) -> MlflowRegistryConfig:
    """The MLflow registry: a tracking server if configured, else the embedded store."""
    key = settings.artifact_signing_key_path
    return MlflowRegistryConfig(
        tracking_uri=settings.mlflow_tracking,
        registry_uri=settings.mlflow_registry_uri,
        artifact_location=settings.mlflow_artifact_location,
        experiment=settings.mlflow_experiment,
        release_public_key=(CheckpointSigner.load(key).public_key_pem() if key.exists() else None),
    )


def model_registry(settings: Settings) -> ModelRegistry:
    """The model registry the settings name."""
    return MlflowRegistry(registry_config(settings))


def ensure_model_registry(settings: Settings) -> None:
    """Create the embedded MLflow store (SQLite tracking store, artifact folder) if it is used."""
    if settings.mlflow_tracking_uri is not None:
        return
    (settings.mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    MlflowRegistry(registry_config(settings)).ensure_store()


def orchestrator(settings: Settings) -> Orchestrator:
    """Kubeflow Pipelines when a KFP endpoint is configured, else the local runner."""
    if settings.kfp_host is None:
        return LocalRunner(LocalRunnerConfig(timeout_seconds=settings.training_timeout_seconds))
    from connectors.training.kfp import KfpConfig, KfpOrchestrator

    # Settings refuse a KFP host without these two.
    assert settings.kfp_image is not None
    assert settings.kfp_govplane_url is not None
    return KfpOrchestrator(
        KfpConfig(
            host=settings.kfp_host,
            namespace=settings.kfp_namespace,
            experiment=settings.kfp_experiment,
            image=settings.kfp_image,
            govplane_url=settings.kfp_govplane_url,
            token_secret=settings.kfp_token_secret,
            existing_token=settings.kfp_token,
        )
    )


def serving_backends(settings: Settings, local: Serving) -> dict[str, Serving]:
    """The serving targets: ``local`` always; ``kserve`` and ``seldon`` with a kubeconfig."""
    backends: dict[str, Serving] = {"local": local}
    if settings.kubeconfig_file is not None:
        for kind in ("kserve", "seldon"):
            backends[kind] = KubernetesServing(
                KubernetesServingConfig(
                    kind=kind,
                    namespace=settings.serving_namespace,
                    kubeconfig=settings.kubeconfig_file,
                )
            )
    return backends

"""Which registry and orchestrator the settings choose."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.training import LocalRunner
from connectors.training.kfp import KfpOrchestrator
from control_plane.connectors import orchestrator, registry_config
from control_plane.settings import Settings


def test_the_embedded_registry_lives_in_the_data_directory(tmp_path: Path) -> None:
    config = registry_config(Settings(data_dir=tmp_path))
    assert config.tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert config.artifact_location == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert config.registry_uri is None


def test_a_tracking_server_keeps_its_own_artifacts(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mlflow_tracking_uri="https://mlflow.example",
        mlflow_registry_uri="postgresql://registry.example/mlflow",
        mlflow_experiment="credit",
    )
    config = registry_config(settings)
    assert (config.tracking_uri, config.registry_uri) == (
        "https://mlflow.example",
        "postgresql://registry.example/mlflow",
    )
    assert config.artifact_location is None
    assert config.experiment == "credit"


def test_training_runs_locally_unless_a_kfp_endpoint_is_set(tmp_path: Path) -> None:
    assert isinstance(orchestrator(Settings(data_dir=tmp_path)), LocalRunner)
    settings = Settings(
        data_dir=tmp_path,
        kfp_host="https://kfp.example",
        kfp_image="registry.example/govplane:0.1.0",
        kfp_govplane_url="https://govplane.example",
    )
    assert isinstance(orchestrator(settings), KfpOrchestrator)


def test_a_kfp_endpoint_without_image_or_report_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GOVPLANE_KFP_IMAGE"):
        Settings(data_dir=tmp_path, kfp_host="https://kfp.example")


def test_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVPLANE_MLFLOW_TRACKING_URI", "https://mlflow.example")
    monkeypatch.setenv("GOVPLANE_KFP_HOST", "https://kfp.example")
    monkeypatch.setenv("GOVPLANE_KFP_IMAGE", "registry.example/govplane:0.1.0")
    monkeypatch.setenv("GOVPLANE_KFP_GOVPLANE_URL", "https://govplane.example")
    monkeypatch.setenv("GOVPLANE_KFP_TOKEN", "kfp-secret")
    settings = Settings(data_dir=tmp_path)
    assert settings.mlflow_tracking == "https://mlflow.example"
    assert settings.kfp_token is not None
    assert settings.kfp_token.get_secret_value() == "kfp-secret"
    assert "kfp-secret" not in repr(settings)

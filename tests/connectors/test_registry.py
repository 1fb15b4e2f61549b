"""The MLflow registry: round trips on a real local store, provenance, digests, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from connectors.registry import (
    ArtifactIntegrityError,
    MlflowRegistry,
    MlflowRegistryConfig,
    ModelFlavor,
    ModelUri,
    NotSupportedError,
    Provenance,
    RegistryError,
    artifact_digest,
)

NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
PROVENANCE = Provenance(
    run_id="0" * 31 + "1",
    dataset_id="adult",
    dataset_snapshot="4242",
    privacy_mode="dp",
    epsilon=2.5,
    delta=1e-5,
)


def _features(adult: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    x = np.column_stack([adult[c].to_numpy().astype(float) for c in NUMERIC])
    y = np.array([label == ">50K" for label in adult["income"].to_pylist()])
    return x, y


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def test_sklearn_model_round_trips_with_its_provenance(
    registry: MlflowRegistry, mlflow_config: MlflowRegistryConfig, adult: pa.Table
) -> None:
    # Given a logistic regression fitted on Adult
    x, y = _features(adult)
    model = LogisticRegression(max_iter=500).fit(x, y)
    # When it is registered and read back by its registry URI and digest
    registered = registry.register("adult-income", model, ModelFlavor.SKLEARN, PROVENANCE)
    loaded = registry.load(registered.uri, registered.artifact_digest)
    # Then the model predicts exactly as before, and its provenance comes back
    np.testing.assert_array_equal(loaded.model.predict_proba(x), model.predict_proba(x))
    assert loaded.version == registered
    assert registered.uri.name == "adult-income"
    assert loaded.version.provenance == PROVENANCE
    # And MLflow itself holds the provenance as run tags and params, and the version's tags
    client = MlflowClient(tracking_uri=mlflow_config.tracking_uri)
    run = client.get_run(registered.registry_run_id)
    assert run.data.tags["govplane.run_id"] == PROVENANCE.run_id
    assert run.data.params["dataset_snapshot"] == "4242"
    assert run.data.params["privacy_mode"] == "dp"
    assert float(run.data.params["epsilon"]) == 2.5
    version = client.get_model_version("adult-income", str(registered.uri.version))
    assert version.tags["govplane.artifact_digest"] == registered.artifact_digest
    assert version.run_id == registered.registry_run_id


def test_versions_of_one_model_count_up(registry: MlflowRegistry, adult: pa.Table) -> None:
    x, y = _features(adult)
    first = registry.register(
        "counted", LogisticRegression().fit(x, y), ModelFlavor.SKLEARN, PROVENANCE
    )
    second = registry.register(
        "counted", LogisticRegression(C=0.5).fit(x, y), ModelFlavor.SKLEARN, PROVENANCE
    )
    assert (first.uri.version, second.uri.version) == (1, 2)
    assert first.artifact_digest != second.artifact_digest


def test_torch_model_round_trips_as_an_exported_program(registry: MlflowRegistry) -> None:
    # Given a small MLP and an input example
    model = _mlp()
    example = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    # When it is registered and loaded back
    registered = registry.register(
        "adult-mlp", model, ModelFlavor.PYTORCH, PROVENANCE, input_example=example
    )
    loaded = registry.load(registered.uri, registered.artifact_digest)
    # Then it computes the same outputs
    with torch.no_grad():
        expected = model(torch.from_numpy(example))
        actual = loaded.model(torch.from_numpy(example))
    torch.testing.assert_close(actual, expected)
    assert loaded.version.flavor is ModelFlavor.PYTORCH


def test_torch_model_without_an_input_example_is_refused(registry: MlflowRegistry) -> None:
    with pytest.raises(NotSupportedError, match="input example"):
        registry.register("adult-mlp", _mlp(), ModelFlavor.PYTORCH, PROVENANCE)


def test_a_tampered_artifact_is_refused_before_it_is_deserialized(
    registry: MlflowRegistry, adult: pa.Table
) -> None:
    # Given a registered model whose artifact file is changed afterwards in the store
    x, y = _features(adult)
    registered = registry.register(
        "tampered", LogisticRegression().fit(x, y), ModelFlavor.SKLEARN, PROVENANCE
    )
    stored = Path(
        registry.client.get_run(registered.registry_run_id).info.artifact_uri.removeprefix(
            "file://"
        )
    )
    model_file = stored / "model" / "model.skops"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    # When it is loaded with the digest recorded at registration, it is refused
    with pytest.raises(ArtifactIntegrityError, match="artifact digest"):
        registry.load(registered.uri, registered.artifact_digest)


def test_a_wrong_expected_digest_is_refused(registry: MlflowRegistry, adult: pa.Table) -> None:
    x, y = _features(adult)
    registered = registry.register(
        "digests", LogisticRegression().fit(x, y), ModelFlavor.SKLEARN, PROVENANCE
    )
    with pytest.raises(ArtifactIntegrityError):
        registry.load(registered.uri, "sha256:" + "0" * 64)


def test_an_unknown_version_is_a_registry_error(registry: MlflowRegistry) -> None:
    with pytest.raises(RegistryError, match="models:/nobody/7"):
        registry.load(ModelUri("nobody", 7), "sha256:" + "0" * 64)


@pytest.mark.parametrize(
    "uri",
    [
        "/srv/models/model.pkl",
        "file:///srv/models/model.pkl",
        "runs:/abc/model",
        "models:/name/0",
        "models:/../etc/1",
        "models:/name/latest",
        "s3://bucket/model",
    ],
)
def test_only_registry_uris_reference_models(uri: str) -> None:
    with pytest.raises(ValueError, match="models:/NAME/VERSION"):
        ModelUri.parse(uri)


def test_registry_uri_round_trips() -> None:
    assert str(ModelUri.parse("models:/adult-income/12")) == "models:/adult-income/12"


def test_digest_is_sha256_over_sorted_sha256sum_lines(tmp_path: Path) -> None:
    # Given files written in an order that is not their sorted order
    (tmp_path / "b.bin").write_bytes(b"second")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "z.txt").write_bytes(b"first")
    # When the digest is computed, it equals the one built by hand from sha256sum lines
    lines = "".join(
        f"{hashlib.sha256(content).hexdigest()}  {name}\n"
        for name, content in sorted({"a/z.txt": b"first", "b.bin": b"second"}.items())
    )
    assert artifact_digest(tmp_path) == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    # And renaming a file changes it
    before = artifact_digest(tmp_path)
    (tmp_path / "b.bin").rename(tmp_path / "c.bin")
    assert artifact_digest(tmp_path) != before


def test_digest_refuses_links_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(ArtifactIntegrityError, match="no model artifact"):
        artifact_digest(tmp_path)
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(ArtifactIntegrityError, match="link"):
        artifact_digest(tmp_path)


def test_provenance_tags_round_trip_and_require_the_run() -> None:
    assert Provenance.from_tags(PROVENANCE.as_tags()) == PROVENANCE
    plain = Provenance("1" * 32, "adult", "1", "plain")
    assert "govplane.epsilon" not in plain.as_tags()
    assert Provenance.from_tags(plain.as_tags()) == plain
    with pytest.raises(RegistryError, match=r"govplane\.run_id"):
        Provenance.from_tags({"govplane.dataset_id": "adult"})

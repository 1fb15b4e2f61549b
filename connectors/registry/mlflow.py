"""The MLflow backend of the model registry (a local SQLite store, or a tracking server).

MLflow is imported only when a registry is used: it adds seconds to the API's start-up.
Models are written in formats that load without unpickling arbitrary objects: scikit-learn as
skops, PyTorch as an exported program (``pt2``). Loading reads those files directly, after the
artifact digest matched the one govplane recorded, so MLflow's pickle loaders are never used.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.registry.base import (
    ArtifactIntegrityError,
    LoadedModel,
    ModelFlavor,
    ModelUri,
    NotSupportedError,
    Provenance,
    RegisteredVersion,
    RegistryError,
    artifact_digest,
)
from connectors.registry.release import SignedRelease

_ARTIFACT_PATH = "model"
_DIGEST_TAG = "govplane.artifact_digest"
_FLAVOR_TAG = "govplane.flavor"
_STAGE_TAG = "govplane.stage"
_RELEASE_RUN_TAG = "govplane.release_run_id"
_EVIDENCE_TAG = "govplane.evidence"
#: Modules whose types a scikit-learn model may contain when it is loaded back.
_TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.")


class MlflowRegistryConfig(BaseModel):
    """Where the MLflow registry is.

    Attributes:
        tracking_uri: the tracking store (``sqlite:///...`` embedded, ``https://...`` server).
        registry_uri: the model registry store; default: the tracking store.
        artifact_location: where a new experiment keeps its artifacts; default: MLflow's.
        experiment: the experiment govplane's training runs are logged under.
        release_public_key: PEM of the Ed25519 key that signs releases; without it no stage
            alias is ever set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["mlflow"] = "mlflow"
    tracking_uri: str = Field(min_length=1)
    registry_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = Field(default="govplane", min_length=1, max_length=256)
    release_public_key: str | None = None


class MlflowRegistry:
    """A :class:`connectors.registry.ModelRegistry` on MLflow's tracking and registry stores."""

    kind = "mlflow"

    def __init__(self, config: MlflowRegistryConfig) -> None:
        self._config = config
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The ``mlflow.MlflowClient`` (created on first use; it never touches global state)."""
        if self._client is None:
            # A governance control plane reports nothing to MLflow's telemetry service unless
            # its operator opts in by setting the variable.
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self._config.tracking_uri, registry_uri=self._config.registry_uri
            )
        return self._client

    def ensure_store(self) -> str:
        """Create the store's schema and govplane's experiment if missing; the experiment id."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        with _quiet("mlflow.store.db.utils", "alembic"):  # schema creation logs at INFO
            existing = self.client.get_experiment_by_name(self._config.experiment)
        if existing is not None:
            return str(existing.experiment_id)
        try:
            return str(
                self.client.create_experiment(
                    self._config.experiment, artifact_location=self._config.artifact_location
                )
            )
        except MlflowException as error:  # another process created it first
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            return str(self.client.get_experiment_by_name(self._config.experiment).experiment_id)

    def register(
        self,
        name: str,
        model: Any,
        flavor: ModelFlavor,
        provenance: Provenance,
        input_example: Any = None,
    ) -> RegisteredVersion:
        """Log ``model`` in a run tagged with its provenance and register a new version.

        Args:
            name: the registered model's name (govplane's model name).
            model: a fitted scikit-learn estimator or a ``torch.nn.Module``.
            flavor: how to serialize it.
            provenance: run, dataset snapshot and privacy facts, kept as tags and params.
            input_example: a sample input (a numpy array); required for PyTorch, whose
                exported program is traced on it.

        Raises:
            ValueError: ``name`` cannot appear in a registry URI.
            NotSupportedError: the flavor cannot serialize this model.
            mlflow.exceptions.MlflowException: MLflow refused the run or the version.
        """
        ModelUri.parse(f"models:/{name}/1")  # the name must be usable in a registry URI
        tags = provenance.as_tags()
        run = self.client.create_run(
            self.ensure_store(), tags={**tags, "mlflow.runName": f"govplane-{provenance.run_id}"}
        )
        run_id = run.info.run_id
        try:
            with tempfile.TemporaryDirectory(prefix="govplane-model-") as scratch:
                folder = Path(scratch) / _ARTIFACT_PATH
                _save(model, flavor, folder, input_example)
                digest = artifact_digest(folder)
                self.client.log_artifacts(run_id, str(folder), _ARTIFACT_PATH)
            self._log_params(run_id, tags)
            self.client.set_terminated(run_id, "FINISHED")
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self._ensure_registered_model(name)
        version = self.client.create_model_version(
            name,
            source=f"runs:/{run_id}/{_ARTIFACT_PATH}",
            run_id=run_id,
            tags={**tags, _DIGEST_TAG: digest, _FLAVOR_TAG: flavor.value},
        )
        return RegisteredVersion(
            uri=ModelUri(name, int(version.version)),
            flavor=flavor,
            artifact_digest=digest,
            provenance=provenance,
            registry_run_id=run_id,
        )

    def describe(self, uri: ModelUri) -> RegisteredVersion:
        """The registered version ``uri`` names, from its tags.

        Raises:
            RegistryError: no such version, or it was not registered by govplane.
        """
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version(uri.name, str(uri.version))
        except MlflowException as error:
            raise RegistryError(f"{uri}: {error.message}") from None
        tags = dict(version.tags)
        if _DIGEST_TAG not in tags or _FLAVOR_TAG not in tags:
            raise RegistryError(f"{uri} was not registered by govplane (no digest or flavor tag)")
        return RegisteredVersion(
            uri=uri,
            flavor=ModelFlavor(tags[_FLAVOR_TAG]),
            artifact_digest=tags[_DIGEST_TAG],
            provenance=Provenance.from_tags(tags),
            registry_run_id=str(version.run_id),
        )

    def load(self, uri: ModelUri, expected_digest: str) -> LoadedModel:
        """Download a version's artifacts, check their digest, then deserialize them.

        Raises:
            ArtifactIntegrityError: the files do not hash to ``expected_digest``.
            RegistryError: no such version.
        """
        registered = self.describe(uri)
        with tempfile.TemporaryDirectory(prefix="govplane-model-") as scratch:
            local = self.download(uri, Path(scratch))
            actual = artifact_digest(local)
            if actual != expected_digest:
                raise ArtifactIntegrityError(
                    f"{uri}: artifact digest {actual} is not the recorded {expected_digest}"
                )
            model = _load(local, registered.flavor)
        return LoadedModel(registered, model)

    def download(self, uri: ModelUri, destination: Path) -> Path:
        """Copy a version's artifact files under ``destination``; the folder they are in.

        Raises:
            RegistryError: no such version.
        """
        registered = self.describe(uri)
        destination.mkdir(parents=True, exist_ok=True)
        return Path(
            self.client.download_artifacts(
                registered.registry_run_id, _ARTIFACT_PATH, str(destination)
            )
        )

    def artifact_location(self, uri: ModelUri) -> str:
        """Where the store keeps a version's artifact folder (what a cluster fetches)."""
        location: str = self.client.get_model_version_download_uri(uri.name, str(uri.version))
        return location

    def current_digest(self, uri: ModelUri) -> str:
        """The digest of a version's artifact files as the store holds them now.

        Raises:
            ArtifactIntegrityError: the files cannot be hashed (a link, no file).
            RegistryError: no such version.
        """
        with tempfile.TemporaryDirectory(prefix="govplane-model-") as scratch:
            return artifact_digest(self.download(uri, Path(scratch)))

    def release(self, signed: SignedRelease, evidence_link: str) -> int | None:
        """Point the stage alias at a released version and tag it; returns the version the
        alias left (tagged ``archived``), if another held it.

        This is the only way govplane sets a stage alias: the release must be signed by the
        configured release key, so no version reaches ``production`` without a completed
        promotion.

        Raises:
            RegistryError: no release key is configured, the signature does not verify, or the
                release names another version.
        """
        from mlflow.exceptions import MlflowException

        release = signed.release
        if self._config.release_public_key is None:
            raise RegistryError("no release public key is configured; stage aliases are refused")
        if not signed.verify(_public_key(self._config.release_public_key)):
            raise RegistryError(
                f"the release of {release.registry_uri} to {release.stage} is not signed by "
                "the release key: only a completed promotion sets a stage alias"
            )
        uri = ModelUri.parse(release.registry_uri)
        if self.describe(uri).artifact_digest != release.artifact_digest:
            raise ArtifactIntegrityError(f"{uri}: the release names another artifact digest")
        try:
            previous = int(self.client.get_model_version_by_alias(uri.name, release.stage).version)
        except MlflowException:
            previous = None
        self.client.set_registered_model_alias(uri.name, release.stage, str(uri.version))
        tags = {
            _STAGE_TAG: release.stage,
            _RELEASE_RUN_TAG: release.run_id,
            _EVIDENCE_TAG: evidence_link,
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(uri.name, str(uri.version), key, value)
        if previous is None or previous == uri.version:
            return None
        self.client.set_model_version_tag(uri.name, str(previous), _STAGE_TAG, "archived")
        return previous

    def _log_params(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import Param

        params = [Param(key.removeprefix("govplane."), value) for key, value in tags.items()]
        self.client.log_batch(run_id, params=params)

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise


def _public_key(pem: str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise RegistryError("the release public key is not an Ed25519 key")
    return key


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Only warnings and errors from ``loggers`` while the block runs."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _save(model: Any, flavor: ModelFlavor, folder: Path, input_example: Any) -> None:
    if flavor is ModelFlavor.SKLEARN:
        import mlflow.sklearn
        import skops.io

        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        _refuse_untrusted(untrusted)
        mlflow.sklearn.save_model(
            model,
            str(folder),
            serialization_format="skops",
            skops_trusted_types=untrusted,
            pip_requirements=_pinned("scikit-learn", "skops"),
        )
        return
    if flavor is ModelFlavor.PYTORCH:
        import mlflow.pytorch

        if input_example is None:
            raise NotSupportedError("a PyTorch model needs an input example to be exported")
        mlflow.pytorch.save_model(
            model,
            str(folder),
            serialization_format="pt2",
            input_example=input_example,
            pip_requirements=_pinned("torch"),
        )
        return
    raise NotSupportedError(f"flavor {flavor} is not supported by the MLflow registry")


def _pinned(*distributions: str) -> list[str]:
    """Exact requirements of the running versions (MLflow would otherwise infer them slowly)."""
    from importlib.metadata import version

    from packaging.version import Version

    return [f"{name}=={Version(version(name)).public}" for name in distributions]


def _load(folder: Path, flavor: ModelFlavor) -> Any:
    from mlflow.models import Model

    conf = Model.load(str(folder)).flavors.get(flavor.value)
    if conf is None:
        raise RegistryError(f"the artifact has no {flavor} flavor")
    if flavor is ModelFlavor.SKLEARN:
        import skops.io

        if conf.get("serialization_format") != "skops":
            raise NotSupportedError("only skops-serialized scikit-learn models are loaded")
        path = _inside(folder, str(conf["pickled_model"]))
        untrusted = skops.io.get_untrusted_types(file=path)
        _refuse_untrusted(untrusted)
        return skops.io.load(path, trusted=untrusted)
    import torch

    path = _inside(folder, f"{conf['model_data']}/model.pt2")
    if not path.is_file():
        raise NotSupportedError("only exported (pt2) PyTorch models are loaded")
    return torch.export.load(path).module()


def _inside(folder: Path, relative: str) -> Path:
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ArtifactIntegrityError(f"model file {relative!r} points outside its artifact")
    return path


def _refuse_untrusted(types: list[str]) -> None:
    unknown = sorted(name for name in types if not name.startswith(_TRUSTED_MODULES))
    if unknown:
        raise NotSupportedError(f"model holds types outside scikit-learn and numpy: {unknown}")

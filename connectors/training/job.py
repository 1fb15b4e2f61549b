"""What a training job is: the pinned data it reads, what it trains, where the model goes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from connectors.registry import MlflowRegistryConfig, ModelUri

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$"
Name = Annotated[str, StringConstraints(pattern=_NAME)]
_Key = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
_Number = Annotated[float, Field(allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SnapshotSource(_Frozen):
    """One pinned snapshot of an Iceberg table.

    Attributes:
        dataset_id: govplane's id of the dataset the table holds.
        catalog_name: the catalog's name (a SQL catalog keeps tables per name).
        catalog: pyiceberg catalog properties (``type``, ``uri``, ``warehouse``, ...).
        table: the table identifier, ``namespace.name`` (a dataset's name, with ``-`` or ``@``).
        snapshot_id: the snapshot the job reads, whatever was written since.
    """

    dataset_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    catalog_name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    catalog: dict[str, str]
    table: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\.[A-Za-z0-9][A-Za-z0-9_@-]*$"),
    ]
    snapshot_id: int


class DpTraining(_Frozen):
    """How a ``dp`` job trains its 2-layer MLP with DP-SGD (Poisson sampling, opacus).

    Attributes:
        noise_multiplier: the noise scale sigma, fixed by the control plane's plan.
        max_epsilon: the epsilon reserved for the job; a job whose steps would spend more at
            ``delta`` is refused before it trains.
        delta: the delta the job is accounted at.
        max_grad_norm: the per-sample clipping bound.
        epochs: passes over the training rows; ``batch_size`` the expected batch size.
        accountant: ``rdp`` or ``prv``.
        hidden_units: width of the hidden layer; ``learning_rate`` of plain SGD.
        secure_rng: sample and add noise with the kernel's CSPRNG (production); otherwise
            with torch's generator, seeded by the job (reproducible, not secure).
    """

    noise_multiplier: float = Field(gt=0, le=1000)
    max_epsilon: float = Field(gt=0)
    delta: float = Field(gt=0, lt=1)
    max_grad_norm: float = Field(gt=0, le=1000)
    epochs: int = Field(ge=1, le=100)
    batch_size: int = Field(ge=1, le=100_000)
    accountant: Literal["rdp", "prv"] = "rdp"
    hidden_units: int = Field(default=64, ge=1, le=4096)
    learning_rate: float = Field(default=0.1, gt=0, le=10)
    secure_rng: bool = True


class TrainingJob(_Frozen):
    """A training job of a governed run, as an orchestrator carries it out.

    Attributes:
        run_id: the governed run (provenance of the model).
        model_name: the model's name in govplane's inventory and in the registry.
        source: the pinned data.
        label: the target column; ``positive_label`` its positive class.
        privacy_mode: the run's privacy mode: ``plain`` or ``dp`` (the trainer refuses others).
        dp: the DP-SGD plan; required in ``dp`` mode, refused in any other.
        test_fraction: share of rows held out for evaluation; ``seed`` fixes the split.
        registry: where the trained model is registered.
        domain: the governed run's domain; ``job_namespace`` and ``job_name`` its OpenLineage
            job, for the report back.
    """

    run_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    model_name: Name
    source: SnapshotSource
    label: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    positive_label: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    privacy_mode: Annotated[str, StringConstraints(min_length=1, max_length=32)] = "plain"
    dp: DpTraining | None = None
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    registry: MlflowRegistryConfig
    domain: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    job_namespace: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    job_name: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class TrainingOutcome(_Frozen):
    """What a finished training job reports back (also the body a pipeline posts to govplane,
    so every field is bounded and refuses what a JSON store could not keep: NUL, NaN).

    Attributes:
        model_uri: the registered version, ``models:/NAME/VERSION``.
        artifact_digest: ``sha256:`` over the model's artifact files.
        registry_run_id: the registry's run that logged the model.
        metrics: evaluation on the held-out rows (``accuracy``, ``roc_auc``).
        rows: rows trained on (``train``) and held out (``test``).
        features: the columns the model predicts from.
        privacy: the DP-SGD evidence of a ``dp`` job (``privacy.dp_sgd.DpSgdEvidence``).
    """

    model_uri: Annotated[str, StringConstraints(max_length=300)]
    artifact_digest: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
    registry_run_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,256}$")]
    metrics: Annotated[dict[_Key, _Number], Field(max_length=64)]
    rows: dict[Literal["train", "test"], Annotated[int, Field(ge=0, le=2**62)]]
    features: Annotated[list[_Key], Field(max_length=10_000)] = []
    privacy: Annotated[dict[_Key, bool | int | _Number | _Key], Field(max_length=64)] | None = None

    @field_validator("model_uri")
    @classmethod
    def _registry_uri(cls, uri: str) -> str:
        ModelUri.parse(uri)
        return uri

    def as_outputs(self) -> dict[str, Any]:
        """The outcome as JSON-serializable run outputs."""
        return self.model_dump(mode="json")

"""All configuration in one settings object, read from ``GOVPLANE_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DESTINATION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class Settings(BaseSettings):
    """Control-plane settings.

    Every field can be set from the environment with the ``GOVPLANE_`` prefix, for example
    ``GOVPLANE_DATABASE_URL=postgresql+psycopg://localhost/govplane``.
    """

    model_config = SettingsConfigDict(env_prefix="GOVPLANE_", extra="forbid", frozen=True)

    data_dir: Path = Field(
        default=Path(".govplane"), description="Embedded default data directory."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in the data directory."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body.")
    run_worker: bool = Field(default=True, description="Execute runs in this process.")
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    worker_id: str | None = Field(default=None, description="Name of this replica's worker.")
    run_lease_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="How long a worker's claim on a run lasts without a heartbeat.",
    )
    audit_signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 PEM key that signs audit checkpoints; default: in the data directory.",
    )
    audit_hmac_key_file: Path | None = Field(
        default=None,
        description="Key that redacts secrets in the audit trail; default: in the data directory.",
    )
    artifact_signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 PEM key that signs model releases on promotion; default: in the "
        "data directory.",
    )
    audit_checkpoint_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="Sign a new audit checkpoint once the latest is this old (0: on any growth).",
    )
    audit_checkpoint_records: int = Field(
        default=1000,
        ge=1,
        description="Sign a new audit checkpoint once this many records follow the latest.",
    )
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: tuple[str, ...] = ("RS256", "ES256")
    oidc_client_id: str | None = Field(
        default=None, description="The dashboard's OIDC client id (the ID tokens' audience)."
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="The dashboard's OIDC client secret; none for a public client."
    )
    oidc_authorization_url: str | None = Field(
        default=None, pattern=r"^https?://", description="The provider's authorization endpoint."
    )
    oidc_token_url: str | None = Field(
        default=None, pattern=r"^https?://", description="The provider's token endpoint."
    )
    lineage_destinations: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Where lineage events are forwarded: name -> transport config "
        '(``{"type": "http", "url": ...}``; types: http, kafka, file, console, datahub-rest, '
        "datahub-file).",
    )
    lake_catalog: dict[str, str] = Field(
        default_factory=dict,
        description="pyiceberg catalog properties of the lake (``type``, ``uri``, ``warehouse``, "
        "...); default: a SQL catalog on SQLite and a warehouse folder in the data directory.",
    )
    lake_namespace: str = Field(
        default="govplane", pattern=r"^[a-z][a-z0-9_]{0,63}$", description="The lake namespace."
    )
    pseudonymization_key_file: Path | None = Field(
        default=None,
        description="Key (hex) of the HMAC pseudonyms of ingest and reads; default: in the data "
        "directory. Never stored with the data.",
    )
    ingest_source_roots: tuple[Path, ...] | None = Field(
        default=None,
        description="Folders whose files an ingest run may read by path; default: the "
        "``sources`` folder in the data directory. Paths outside them are refused.",
    )
    lineage_delivery_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    webhook_urls: tuple[AnyHttpUrl, ...] = Field(
        default=(), description="Where approval notifications are POSTed (HMAC-signed)."
    )
    webhook_secret_file: Path | None = Field(
        default=None,
        description="Key (hex) that signs webhook notifications; default: in the data directory.",
    )
    webhook_delivery_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    lineage_max_nodes: int = Field(
        default=5000, ge=1, le=1_000_000, description="Most nodes a lineage query returns."
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs dashboard session cookies; default: a random key per "
        "process (sessions end when it restarts). Set the same value on every replica.",
    )
    session_hours: float = Field(
        default=8.0, gt=0, le=24 * 7, description="How long a dashboard login lasts."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking server or store; default: a SQLite store in the data "
        "directory.",
    )
    mlflow_registry_uri: str | None = Field(
        default=None, description="MLflow model registry store; default: the tracking store."
    )
    mlflow_experiment: str = Field(
        default="govplane", min_length=1, max_length=256, description="MLflow experiment."
    )
    training_timeout_seconds: float = Field(
        default=3600, gt=0, le=7 * 24 * 3600, description="Longest a local training job runs."
    )
    serving_start_timeout_seconds: float = Field(
        default=120, gt=0, le=3600, description="Longest a local scoring server may take to start."
    )
    kubeconfig_file: Path | None = Field(
        default=None,
        description="kubeconfig of the cluster KServe and Seldon deployments are applied to.",
    )
    serving_namespace: str = Field(
        default="default",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Kubernetes namespace of KServe and Seldon deployments.",
    )
    dp_secure_rng: bool = Field(
        default=True,
        description="DP-SGD samples and adds noise with the kernel's CSPRNG; off: torch's "
        "generator (reproducible, not secure; development only).",
    )
    kfp_host: str | None = Field(
        default=None, description="Kubeflow Pipelines API; when set, training runs there."
    )
    kfp_namespace: str = Field(default="kubeflow", min_length=1)
    kfp_experiment: str = Field(default="govplane", min_length=1)
    kfp_image: str | None = Field(
        default=None, description="Container image (govplane installed) of the pipeline steps."
    )
    kfp_govplane_url: str | None = Field(
        default=None, description="Where pipeline steps reach this API to report back."
    )
    kfp_token_secret: str = Field(
        default="govplane-report-token",
        min_length=1,
        description="Kubernetes secret (key ``token``) with the report step's API token.",
    )
    kfp_token: SecretStr | None = Field(
        default=None, description="Bearer token for the KFP API, if it needs one."
    )

    flower_host: str = Field(
        default="127.0.0.1",
        description="Where the Flower SuperLink listens (off loopback: TLS and node keys).",
    )
    flower_fleet_port: int = Field(
        default=9092, ge=1, le=65535, description="SuperNodes connect here."
    )
    flower_control_port: int = Field(
        default=9093,
        ge=1,
        le=65535,
        description="Federated runs are submitted here (``flwr run``).",
    )
    flower_serverappio_port: int = Field(
        default=9091, ge=1, le=65535, description="The SuperLink's ServerAppIo API (loopback)."
    )
    flower_ca_certificate: Path | None = Field(
        default=None, description="CA certificate of the SuperLink's TLS certificate."
    )
    flower_certificate: Path | None = Field(default=None, description="SuperLink TLS certificate.")
    flower_private_key: Path | None = Field(default=None, description="SuperLink TLS private key.")
    flower_node_keys_dir: Path | None = Field(
        default=None,
        description="Folder of SuperNode authentication keys, ``SITE`` and ``SITE.pub`` per site.",
    )
    federated_round_timeout_seconds: float = Field(
        default=120.0, gt=0, le=86400, description="How long a federated round waits for sites."
    )
    federated_run_timeout_seconds: float = Field(
        default=3600.0, gt=0, le=604800, description="How long a federated run may take."
    )

    @field_validator("lineage_destinations")
    @classmethod
    def _named(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, config in value.items():
            if not _DESTINATION.match(name):
                raise ValueError(f"destination name {name!r} must match {_DESTINATION.pattern}")
            if "type" not in config:
                raise ValueError(f"destination {name!r} has no transport type")
        return value

    @model_validator(mode="after")
    def _kfp_complete(self) -> Settings:
        if self.kfp_host and not (self.kfp_image and self.kfp_govplane_url):
            raise ValueError(
                "GOVPLANE_KFP_HOST needs GOVPLANE_KFP_IMAGE and GOVPLANE_KFP_GOVPLANE_URL"
            )
        return self

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The store's URL: the configured one, or the embedded SQLite file."""
        return self.database_url or f"sqlite:///{self.data_dir / 'govplane.db'}"

    @property
    def audit_signing_key_path(self) -> Path:
        """Where the audit checkpoint signing key is."""
        return self.audit_signing_key_file or self.data_dir / "audit-signing-key.pem"

    @property
    def artifact_signing_key_path(self) -> Path:
        """Where the model release signing key is."""
        return self.artifact_signing_key_file or self.data_dir / "artifact-signing-key.pem"

    @property
    def serving_dir(self) -> Path:
        """Where local deployments keep the artifacts they serve."""
        return self.data_dir / "serving"

    @property
    def audit_hmac_key_path(self) -> Path:
        """Where the audit redaction (HMAC) key is."""
        return self.audit_hmac_key_file or self.data_dir / "audit-hmac.key"

    @property
    def lake_dir(self) -> Path:
        """The embedded lake: its SQLite catalog and its warehouse folder."""
        return self.data_dir / "lake"

    @property
    def pseudonymization_key_path(self) -> Path:
        """Where the pseudonymization key is."""
        return self.pseudonymization_key_file or self.data_dir / "pseudonymization.key"

    @property
    def webhook_secret_path(self) -> Path:
        """Where the webhook signing secret is."""
        return self.webhook_secret_file or self.data_dir / "webhook-secret.key"

    @property
    def source_roots(self) -> tuple[Path, ...]:
        """The folders ingest may read files from, resolved."""
        roots = self.ingest_source_roots or (self.data_dir / "sources",)
        return tuple(root.expanduser().resolve() for root in roots)

    @property
    def uploads_dir(self) -> Path:
        """Where uploaded Arrow data waits for its ingest run."""
        return self.data_dir / "uploads"

    @property
    def mlflow_dir(self) -> Path:
        """The embedded MLflow store's folder (SQLite tracking store and artifacts)."""
        return self.data_dir / "mlflow"

    @property
    def mlflow_tracking(self) -> str:
        """The MLflow tracking URI: the configured one, or the embedded SQLite store."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str | None:
        """Where the embedded store keeps artifacts; a tracking server decides its own."""
        return None if self.mlflow_tracking_uri else (self.mlflow_dir / "artifacts").as_uri()

    @property
    def flower_dir(self) -> Path:
        """Flower's home (``FLWR_HOME``): its configuration, installed apps, logs, outcomes."""
        return self.data_dir / "flower"

    @property
    def oidc_enabled(self) -> bool:
        """Whether bearer JWTs are accepted (issuer, audience and JWKS URL are all set)."""
        return bool(self.oidc_issuer and self.oidc_audience and self.oidc_jwks_url)

    @property
    def oidc_login_enabled(self) -> bool:
        """Whether the dashboard offers OIDC login (bearer JWTs on, and the client is set)."""
        return bool(
            self.oidc_enabled
            and self.oidc_client_id
            and self.oidc_authorization_url
            and self.oidc_token_url
        )

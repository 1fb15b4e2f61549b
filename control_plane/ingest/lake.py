"""The lake of this control plane, and what ``govplane init`` prepares for ingest."""

from __future__ import annotations

import secrets

from connectors.lake import IcebergLake, Lake, embedded_properties
from control_plane.settings import Settings


def open_lake(settings: Settings) -> Lake:
    """The configured lake: ``GOVPLANE_LAKE_CATALOG``, else the embedded one."""
    if settings.lake_catalog:
        return IcebergLake.from_properties(settings.lake_catalog, settings.lake_namespace)
    return IcebergLake.embedded(settings.lake_dir, settings.lake_namespace)


def lake_catalog(settings: Settings) -> dict[str, str]:
    """The pyiceberg catalog properties of the configured lake (what a training job reads)."""
    return dict(settings.lake_catalog) or embedded_properties(settings.lake_dir)


def ensure_lake(settings: Settings) -> None:
    """Create the embedded lake, the source folder and the pseudonymization key if missing.

    An existing key is never replaced: pseudonyms already written depend on it.
    """
    open_lake(settings)
    for root in settings.source_roots:
        root.mkdir(parents=True, exist_ok=True)
    key = settings.pseudonymization_key_path
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.touch(mode=0o600, exist_ok=False)
        key.write_text(secrets.token_hex(32) + "\n")

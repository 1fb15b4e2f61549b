"""The lake: versioned tables (Iceberg via pyiceberg) that governed ingest writes."""

from __future__ import annotations

from connectors.lake.base import Lake, LakeError, Snapshot
from connectors.lake.iceberg import (
    CATALOG_NAME,
    DEFAULT_NAMESPACE,
    IcebergLake,
    embedded_properties,
)

__all__ = [
    "CATALOG_NAME",
    "DEFAULT_NAMESPACE",
    "IcebergLake",
    "Lake",
    "LakeError",
    "Snapshot",
    "embedded_properties",
]

"""The lake: versioned tables (Iceberg via pyiceberg) that governed ingest writes."""

from __future__ import annotations

from connectors.lake.base import Lake, LakeError, Snapshot
from connectors.lake.iceberg import DEFAULT_NAMESPACE, IcebergLake

__all__ = ["DEFAULT_NAMESPACE", "IcebergLake", "Lake", "LakeError", "Snapshot"]

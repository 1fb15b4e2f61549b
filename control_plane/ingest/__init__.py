"""Governed ingest: the lake, sources and uploads, column classification, filtered reads."""

from __future__ import annotations

from control_plane.ingest.lake import ensure_lake, lake_catalog, open_lake

__all__ = ["ensure_lake", "lake_catalog", "open_lake"]

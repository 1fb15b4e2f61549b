"""Lineage in the control plane: the stored graph, the run recorder and outbound delivery."""

from control_plane.lineage.delivery import LineageDeliverer
from control_plane.lineage.recorder import LineageRecorder, job_name, job_namespace
from control_plane.lineage.store import Ingested, LineageStore, StoredGraph

__all__ = [
    "Ingested",
    "LineageDeliverer",
    "LineageRecorder",
    "LineageStore",
    "StoredGraph",
    "job_name",
    "job_namespace",
]

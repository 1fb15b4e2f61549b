"""Lineage in the control plane: the stored graph, the run recorder and outbound delivery."""

from control_plane.lineage.delivery import LineageDeliverer
from control_plane.lineage.recorder import LineageRecorder, job_name, job_namespace
from control_plane.lineage.store import Ingested, LineageStore, Received, StoredGraph
from control_plane.lineage.writer import LineageWriter

__all__ = [
    "Ingested",
    "LineageDeliverer",
    "LineageRecorder",
    "LineageStore",
    "LineageWriter",
    "Received",
    "StoredGraph",
    "job_name",
    "job_namespace",
]

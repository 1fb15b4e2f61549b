"""Lineage node ids and the OpenLineage names that models and deployments take.

A node id names one vertex of the lineage graph: ``dataset:{namespace}:{name}``,
``job:{namespace}:{name}``, ``model:{name}:{version}`` or ``deployment:{name}``. Model versions
and deployments travel in OpenLineage events as datasets in two reserved namespaces, so any
OpenLineage consumer can carry them and govplane can recognise them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MODEL_NAMESPACE = "govplane://models"
DEPLOYMENT_NAMESPACE = "govplane://deployments"
DATASET_NAMESPACE = "govplane://datasets"
MAX_NODE_ID_BYTES = 2000


class NodeType(StrEnum):
    DATASET = "dataset"
    JOB = "job"
    MODEL = "model"
    DEPLOYMENT = "deployment"


@dataclass(frozen=True)
class NodeRef:
    """A lineage node: its id, its type and the OpenLineage namespace and name behind it."""

    id: str
    type: NodeType
    namespace: str
    name: str


def dataset_node(namespace: str, name: str) -> NodeRef:
    """The node of an OpenLineage dataset; model and deployment namespaces map to their types."""
    if namespace == MODEL_NAMESPACE:
        return NodeRef(f"model:{name}", NodeType.MODEL, namespace, name)
    if namespace == DEPLOYMENT_NAMESPACE:
        return NodeRef(f"deployment:{name}", NodeType.DEPLOYMENT, namespace, name)
    return NodeRef(f"dataset:{namespace}:{name}", NodeType.DATASET, namespace, name)


def job_node(namespace: str, name: str) -> NodeRef:
    """The node of an OpenLineage job."""
    return NodeRef(f"job:{namespace}:{name}", NodeType.JOB, namespace, name)


def model_dataset_name(model: str, version: int | str) -> str:
    """The OpenLineage dataset name of a model version (in :data:`MODEL_NAMESPACE`)."""
    return f"{model}:{version}"


def node_type(node_id: str) -> NodeType:
    """The type of a node id.

    Raises:
        ValueError: the id does not start with a known type and a colon.
    """
    prefix, sep, rest = node_id.partition(":")
    if not sep or not rest:
        raise ValueError(f"node id {node_id!r} is not of the form TYPE:...")
    try:
        return NodeType(prefix)
    except ValueError:
        known = ", ".join(t.value for t in NodeType)
        raise ValueError(f"unknown node type {prefix!r} in {node_id!r}; known: {known}") from None

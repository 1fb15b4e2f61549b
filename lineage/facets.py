"""govplane's own OpenLineage facets: the governance facts of a run and of a dataset.

Each is an openlineage-python facet class (``_producer`` and ``_schemaURL`` included), named in
events with the ``govplane_`` prefix the OpenLineage spec asks custom facets to carry. Their JSON
schemas ship in ``lineage/schemas``; ``_schemaURL`` points at them in the published repository.
"""

from __future__ import annotations

from typing import Any

import attr
from openlineage.client.generated.base import DatasetFacet, RunFacet

PRODUCER = "https://github.com/govplane/govplane/tree/v0.1.0/lineage"
SCHEMA_BASE = "https://github.com/govplane/govplane/tree/v0.1.0/lineage/schemas"


def schema_url(facet: str) -> str:
    """The ``_schemaURL`` of a govplane facet class."""
    return f"{SCHEMA_BASE}/{facet}.json#/$defs/{facet}"


@attr.define
class ClassificationDatasetFacet(DatasetFacet):
    """A governed dataset's classification, PII columns and business domain."""

    classification: str
    domain: str
    piiColumns: list[str] = attr.field(factory=list)  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return schema_url("ClassificationDatasetFacet")


@attr.define
class PrivacyRunFacet(RunFacet):
    """The strictest classification a run touches, how it ran and the privacy budget it spent."""

    classification: str | None = None
    privacyMode: str | None = None  # noqa: N815
    epsilonSpent: float | None = None  # noqa: N815
    deltaSpent: float | None = None  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return schema_url("PrivacyRunFacet")


@attr.define
class GateResultsRunFacet(RunFacet):
    """The gates the policy bundle required and what each decided, in order."""

    gates: list[dict[str, Any]] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("GateResultsRunFacet")


@attr.define
class ApprovalRunFacet(RunFacet):
    """The approval a run waited for and its outcome."""

    status: str
    requestedBy: str  # noqa: N815
    requirement: dict[str, Any] = attr.field(factory=dict)
    decisions: list[dict[str, Any]] = attr.field(factory=list)
    closedBy: str | None = None  # noqa: N815
    closeReason: str | None = None  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return schema_url("ApprovalRunFacet")


@attr.define
class PolicyRunFacet(RunFacet):
    """Which governed run this is and the policy bundle version that authorized and planned it."""

    bundleVersion: str  # noqa: N815
    runKind: str  # noqa: N815
    domain: str
    submittedBy: str  # noqa: N815
    state: str

    @staticmethod
    def _get_schema() -> str:
        return schema_url("PolicyRunFacet")

"""govplane's facets: each names a schema shipped in lineage/schemas that its output follows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openlineage.client.generated.base import BaseFacet
from openlineage.client.serde import Serde

from lineage.facets import (
    ApprovalRunFacet,
    ClassificationDatasetFacet,
    GateResultsRunFacet,
    PolicyRunFacet,
    PrivacyRunFacet,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "lineage" / "schemas"
FACETS: list[BaseFacet] = [
    ClassificationDatasetFacet(classification="internal", domain="retail", piiColumns=["sex"]),
    PrivacyRunFacet(classification="restricted", privacyMode="dp", epsilonSpent=0.5),
    GateResultsRunFacet(
        gates=[{"gate": "fairness", "status": "fail", "metrics": {"dpd": 0.2}, "reasons": ["x"]}]
    ),
    ApprovalRunFacet(status="approved", requestedBy="eric", requirement={"approvers": 2}),
    PolicyRunFacet(
        bundleVersion="sha256:ab",
        runKind="train",
        domain="retail",
        submittedBy="eric",
        state="succeeded",
    ),
]


def _own_schema(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    document = json.loads((SCHEMAS / f"{name}.json").read_text())
    definition = document["$defs"][name]
    # The facet's own members; the first allOf part is the OpenLineage base facet (remote).
    return document, definition["allOf"][1]


@pytest.mark.parametrize("facet", FACETS, ids=lambda f: type(f).__name__)
def test_a_facet_names_its_shipped_schema_and_follows_it(facet: BaseFacet) -> None:
    name = type(facet).__name__
    document, own = _own_schema(name)
    serialized = Serde.to_dict(facet)
    assert serialized["_schemaURL"] == f"{document['$id']}#/$defs/{name}"
    assert serialized["_producer"].startswith("https://")
    jsonschema.validate(serialized, own)


def test_the_schemas_catch_a_wrong_value() -> None:
    _, own = _own_schema("ClassificationDatasetFacet")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"classification": "secret", "domain": "retail"}, own)

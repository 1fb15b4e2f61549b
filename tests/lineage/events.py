"""OpenLineage RunEvents for tests, built with openlineage-python's own classes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.column_lineage_dataset import (
    ColumnLineageDatasetFacet,
    Fields,
    InputField,
)
from openlineage.client.serde import Serde

PRODUCER = "https://example.org/test-producer"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run_event(
    job: str,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    *,
    namespace: str = "etl",
    event_type: RunState = RunState.COMPLETE,
    time: datetime = T0,
    run_id: str | None = None,
    columns: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """A RunEvent of job ``namespace:job`` reading and writing datasets named in ``warehouse``.

    ``columns`` maps an output column to its (input dataset, input column) sources; it is put on
    every output as a columnLineage facet.
    """
    output_facets: dict[str, Any] = {}
    if columns:
        output_facets["columnLineage"] = ColumnLineageDatasetFacet(
            fields={
                column: Fields(
                    inputFields=[
                        InputField(namespace="warehouse", name=name, field=field)
                        for name, field in sources
                    ]
                )
                for column, sources in columns.items()
            }
        )
    event = RunEvent(
        eventType=event_type,
        eventTime=time.isoformat(),
        run=Run(runId=run_id or str(uuid.uuid4())),
        job=Job(namespace=namespace, name=job),
        inputs=[InputDataset(namespace="warehouse", name=name) for name in inputs],
        outputs=[
            OutputDataset(namespace="warehouse", name=name, facets=output_facets)
            for name in outputs
        ],
        producer=PRODUCER,
    )
    return Serde.to_dict(event)


def ds(name: str) -> str:
    """The node id of dataset ``name`` in the ``warehouse`` namespace."""
    return f"dataset:warehouse:{name}"

"""Outbound delivery: OpenLineage transports chosen by kind, and the retry schedule.

Events wait in a durable outbox (one entry per event and destination) until a transport
accepts them; a failed attempt is retried later with exponential backoff, never dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.base import (
    BaseFacet,
    DatasetFacet,
    InputDatasetFacet,
    JobFacet,
    OutputDatasetFacet,
    RunFacet,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.console import ConsoleTransport
from openlineage.client.transport.file import FileTransport
from openlineage.client.transport.http import HttpTransport
from openlineage.client.transport.kafka import KafkaTransport
from openlineage.client.transport.transport import Transport

_F = TypeVar("_F", bound=BaseFacet)


class UnknownTransportError(ValueError):
    """A destination names a transport kind govplane does not know."""


class DeliveryError(ConnectionError):
    """A destination did not confirm that it took an event."""


class ConfirmedKafkaTransport(KafkaTransport):
    """openlineage-python's Kafka transport, raising when the broker did not take the event.

    The stock transport only logs a failed delivery, which would let the outbox count a lost
    event as sent. Delivery is at least once: a send that times out is retried.
    """

    def emit(self, event: Any) -> None:
        if self.producer is None:
            self._setup_producer(self.kafka_config.config)
        assert self.producer is not None
        errors: list[str] = []
        self.producer.produce(
            topic=self.topic,
            key=self.message_key or self._get_message_key(event),
            value=Serde.to_json(event).encode("utf-8"),
            on_delivery=lambda error, _message: errors.append(str(error)) if error else None,
        )
        left = self.producer.flush()
        if errors or left:
            raise DeliveryError(f"kafka topic {self.topic}: {errors[0] if errors else 'timed out'}")


TransportBuilder = Callable[[Mapping[str, Any]], Transport]


def _openlineage(transport: type[Transport]) -> TransportBuilder:
    def build(config: Mapping[str, Any]) -> Transport:
        params = {k: v for k, v in config.items() if k != "type"}
        return transport(transport.config_class.from_dict(params))  # type: ignore[call-arg]

    return build


def _datahub(file: bool) -> TransportBuilder:
    def build(config: Mapping[str, Any]) -> Transport:
        # acryl-datahub is large: import it only when a DataHub destination is configured.
        from lineage.datahub import DataHubFileTransport, DataHubRestTransport

        transport = DataHubFileTransport if file else DataHubRestTransport
        return _openlineage(transport)(config)

    return build


_BUILDERS: dict[str, TransportBuilder] = {
    "console": _openlineage(ConsoleTransport),
    "datahub-file": _datahub(file=True),
    "datahub-rest": _datahub(file=False),
    "file": _openlineage(FileTransport),
    "http": _openlineage(HttpTransport),
    "kafka": _openlineage(ConfirmedKafkaTransport),
}


def transport_kinds() -> list[str]:
    """The transport kinds a destination may name."""
    return sorted(_BUILDERS)


def build_transport(config: Mapping[str, Any]) -> Transport:
    """The transport a destination's configuration asks for (its ``type`` picks the kind).

    Raises:
        UnknownTransportError: no ``type``, or one that is not a known kind.
    """
    kind = config.get("type")
    if kind not in _BUILDERS:
        raise UnknownTransportError(
            f"unknown lineage transport type {kind!r}; known: {', '.join(transport_kinds())}"
        )
    return _BUILDERS[kind](config)


def retry_delay(attempts: int, base: float = 1.0, cap: float = 300.0) -> timedelta:
    """How long to wait after ``attempts`` (>= 1) failed deliveries.

    Exponential (``base`` after the first failure, doubling after each next), capped at ``cap``,
    and jittered down to half so that many waiting entries do not retry in lockstep.
    """
    ceiling = min(cap, base * 2 ** min(max(attempts, 1) - 1, 30))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311


def event_from_dict(payload: Mapping[str, Any]) -> RunEvent:
    """The openlineage-python RunEvent of a stored (validated) event, facets kept verbatim."""
    job = payload["job"]
    return RunEvent(
        eventTime=payload["eventTime"],
        producer=payload["producer"],
        eventType=RunState(payload["eventType"]) if payload.get("eventType") else None,
        run=Run(
            runId=payload["run"]["runId"],
            facets=_facets(RunFacet, payload["run"].get("facets")),
        ),
        job=Job(
            namespace=job["namespace"],
            name=job["name"],
            facets=_facets(JobFacet, job.get("facets")),
        ),
        inputs=[
            InputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=_facets(DatasetFacet, d.get("facets")),
                inputFacets=_facets(InputDatasetFacet, d.get("inputFacets")),
            )
            for d in payload.get("inputs") or []
        ],
        outputs=[
            OutputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=_facets(DatasetFacet, d.get("facets")),
                outputFacets=_facets(OutputDatasetFacet, d.get("outputFacets")),
            )
            for d in payload.get("outputs") or []
        ],
    )


def _facets(kind: type[_F], facets: Mapping[str, Any] | None) -> dict[str, _F]:
    return {name: _facet(kind, value) for name, value in (facets or {}).items()}


def _facet(kind: type[_F], value: Mapping[str, Any]) -> _F:
    members = {k: v for k, v in value.items() if k not in ("_producer", "_schemaURL", "_deleted")}
    facet: Any = kind(producer=value["_producer"])
    if members:
        facet = facet.with_additional_properties(**members)
    facet._schemaURL = value["_schemaURL"]
    if "_deleted" in value:
        facet._deleted = value["_deleted"]
    return facet  # type: ignore[no-any-return]

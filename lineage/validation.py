"""Validate an inbound OpenLineage RunEvent against the OpenLineage 2 spec.

The checks are those of the spec's JSON schema for a RunEvent: the required members, the
``eventType`` enum, RFC 3339 ``eventTime`` with a zone, a UUID ``runId``, URI ``producer`` and
``schemaURL``, and facets that are objects carrying ``_producer`` and ``_schemaURL``. Unknown
members are kept (the spec allows them), bounded in size by the caller.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class InvalidEventError(ValueError):
    """The event does not follow the OpenLineage spec; ``errors`` says where and why."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        )


def parse_event_time(value: str) -> datetime:
    """An RFC 3339 date-time with a zone, as a UTC datetime (beyond microseconds is dropped).

    Raises:
        ValueError: not an RFC 3339 date-time with a zone offset.
    """
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not an RFC 3339 date-time with a zone (e.g. 2024-05-01T12:00:00Z)"
        )
    day, clock, fraction, zone = match.groups()
    fraction = (fraction or ".0")[:7]
    zone = "+00:00" if zone in ("Z", "z") else zone
    return datetime.fromisoformat(f"{day}T{clock}{fraction}{zone}").astimezone(UTC)


def _uri(value: str) -> str:
    if not urlparse(value).scheme:
        raise ValueError(f"{value!r} is not an absolute URI")
    return value


def _uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    return value


def _rfc3339(value: str) -> str:
    parse_event_time(value)
    return value


Uri = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_uri)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Namespace = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=False)


class Facet(_Open):
    """Any facet: an object with its producer and schema URL, plus its own members."""

    producer: Uri = Field(alias="_producer")
    schema_url: Uri = Field(alias="_schemaURL")


class DeletableFacet(Facet):
    """A dataset or job facet, which may be marked deleted."""

    deleted: bool | None = Field(default=None, alias="_deleted")


Facets = Annotated[dict[Annotated[str, StringConstraints(max_length=256)], Facet], Field()]
DeletableFacets = dict[Annotated[str, StringConstraints(max_length=256)], DeletableFacet]


class RunModel(_Open):
    runId: Annotated[str, AfterValidator(_uuid)]  # noqa: N815
    facets: Facets = {}


class JobModel(_Open):
    namespace: Namespace
    name: Name
    facets: DeletableFacets = {}


class DatasetModel(_Open):
    namespace: Namespace
    name: Name
    facets: DeletableFacets = {}


class InputModel(DatasetModel):
    inputFacets: Facets = {}  # noqa: N815


class OutputModel(DatasetModel):
    outputFacets: Facets = {}  # noqa: N815


class RunEventModel(_Open):
    """A RunEvent as the spec defines it (``run`` and ``job`` required, the rest optional)."""

    eventTime: Annotated[str, AfterValidator(_rfc3339)]  # noqa: N815
    producer: Uri
    schemaURL: Uri  # noqa: N815
    eventType: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] | None = None  # noqa: N815
    run: RunModel
    job: JobModel
    inputs: Annotated[list[InputModel], Field(max_length=1000)] = []
    outputs: Annotated[list[OutputModel], Field(max_length=1000)] = []


def validate_run_event(payload: Any) -> RunEventModel:
    """The event ``payload`` parsed, if it is a valid OpenLineage RunEvent.

    Raises:
        InvalidEventError: with each violation's location and message.
    """
    if not isinstance(payload, dict):
        raise InvalidEventError(
            [{"loc": [], "msg": "a RunEvent must be a JSON object", "type": "type_error"}]
        )
    if "dataset" in payload and "run" not in payload:
        raise InvalidEventError(
            [
                {
                    "loc": ["dataset"],
                    "msg": "DatasetEvents are not accepted; send RunEvents",
                    "type": "unsupported",
                }
            ]
        )
    try:
        return RunEventModel.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEventError(
            [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
        ) from None

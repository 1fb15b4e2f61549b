"""Validate an inbound OpenLineage RunEvent against the OpenLineage 2 spec.

The checks are those of the spec's JSON schema for a RunEvent: the required members, the
``eventType`` enum, RFC 3339 ``eventTime`` with a zone, a UUID ``runId``, URI ``producer`` and
``schemaURL``, and facets that are objects carrying ``_producer`` and ``_schemaURL``. Unknown
members are kept (the spec allows them), bounded in size by the caller.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
RFC3339 = (
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
"""The form of an RFC 3339 date-time with a zone (whether the date exists is checked apart)."""
_RFC3339 = re.compile(RFC3339)
_URI = r"^[A-Za-z][A-Za-z0-9+.-]*:"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_NO_NUL = r"^[^\x00]*$"


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


def _rfc3339(value: str) -> str:
    parse_event_time(value)
    return value


# The patterns are the checks, so that the JSON schema of a RunEvent says all they refuse. No
# string the store keeps in a column may hold NUL (PostgreSQL text cannot).
Uri = Annotated[str, StringConstraints(max_length=2048, pattern=_URI)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_NO_NUL)]
Namespace = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=_NO_NUL)]
FacetName = Annotated[str, StringConstraints(max_length=256)]


class _Open(BaseModel):
    # strict: a JSON value of the wrong type is refused, never coerced ("1" is not a boolean)
    model_config = ConfigDict(extra="allow", populate_by_name=False, strict=True)


class Facet(_Open):
    """Any facet: an object with its producer and schema URL, plus its own members."""

    producer: Uri = Field(alias="_producer")
    schema_url: Uri = Field(alias="_schemaURL")


class DeletableFacet(Facet):
    """A dataset or job facet, which may be marked deleted."""

    deleted: bool | None = Field(default=None, alias="_deleted")


Facets = dict[FacetName, Facet]
DeletableFacets = dict[FacetName, DeletableFacet]


class RunModel(_Open):
    runId: Annotated[str, StringConstraints(pattern=_UUID)]  # noqa: N815
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

    eventTime: Annotated[str, StringConstraints(pattern=RFC3339), AfterValidator(_rfc3339)]  # noqa: N815
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

"""Field types shared by the request schemas: names, domains, attributes, classifications."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$", max_length=128)
]
DatasetName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_@-]{0,127}$", max_length=128)
]
"""A dataset's name, which also names its lake table: a :data:`Name` without dots, which
Iceberg would read as namespace levels."""
Domain = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9][a-z0-9_-]{0,63})$")]
NO_NUL = r"^[^\x00]*$"
"""The pattern of free text: PostgreSQL text cannot hold NUL, so no accepted string has one."""
Text = Annotated[str, StringConstraints(max_length=4000, pattern=NO_NUL)]
Scalar = Annotated[str, StringConstraints(max_length=256, pattern=NO_NUL)] | int | float | bool
PathKey = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL)]
"""An id or name in a path, looked up as given (an unknown one is 404)."""
Attributes = Annotated[dict[Name, Scalar], Field(max_length=64)]
Classification = Literal["public", "internal", "confidential", "restricted"]
RiskTier = Literal["low", "medium", "high"]


class RequestModel(BaseModel):
    """A request body: unknown fields are refused (no mass assignment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseModel(BaseModel):
    """A response body, built from attributes of store rows."""

    model_config = ConfigDict(from_attributes=True)

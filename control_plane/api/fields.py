"""Field types shared by the request schemas: names, domains, attributes, classifications."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$", max_length=128)
]
Domain = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9][a-z0-9_-]{0,63})$")]
Text = Annotated[str, StringConstraints(max_length=4000)]
Scalar = Annotated[str, StringConstraints(max_length=256)] | int | float | bool
Attributes = Annotated[dict[Name, Scalar], Field(max_length=64)]
Classification = Literal["public", "internal", "confidential", "restricted"]
RiskTier = Literal["low", "medium", "high"]


class RequestModel(BaseModel):
    """A request body: unknown fields are refused (no mass assignment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseModel(BaseModel):
    """A response body, built from attributes of store rows."""

    model_config = ConfigDict(from_attributes=True)

"""Typed asset references (``dataset:NAME``, ``model:NAME``, ``policy:VERSION``), resolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.errors import InvalidInputError
from control_plane.store.models import Dataset, Model, PolicyBundleRow, Site

PLATFORM_DOMAIN = "*"


@dataclass(frozen=True)
class Asset:
    """A resolved asset: its policy object id, its domain and the attributes policy sees."""

    ref: str
    domain: str
    attributes: Mapping[str, Any]


def dataset_asset(row: Dataset) -> Asset:
    return Asset(
        f"dataset:{row.name}",
        row.domain,
        {"classification": row.classification, "owner": row.owner},
    )


def model_asset(row: Model) -> Asset:
    return Asset(f"model:{row.name}", row.domain, {"risk_tier": row.risk_tier, "owner": row.owner})


def site_asset(row: Site) -> Asset:
    return Asset(
        f"site:{row.name}", row.domain, {"residency": row.residency, "owner": row.operator}
    )


def resolve_asset(session: Session, ref: str) -> Asset:
    """The asset ``ref`` names; a request body gives it, so an unknown one is invalid input.

    Raises:
        InvalidInputError: the reference is not ``type:name`` with a known type, or no such
            asset exists.
    """
    kind, sep, name = ref.partition(":")
    if not sep or not name:
        raise InvalidInputError(f"asset reference {ref!r} is not of the form type:name")
    if kind == "dataset":
        dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
        if dataset is None:
            raise InvalidInputError(f"no dataset named {name!r}")
        return dataset_asset(dataset)
    if kind == "model":
        model = session.scalars(select(Model).where(Model.name == name)).first()
        if model is None:
            raise InvalidInputError(f"no model named {name!r}")
        return model_asset(model)
    if kind == "policy":
        if session.get(PolicyBundleRow, name) is None:
            raise InvalidInputError(f"no policy bundle {name!r}")
        return Asset(ref, PLATFORM_DOMAIN, {})
    raise InvalidInputError(
        f"unknown asset type {kind!r} in {ref!r}; known types: dataset, model, policy"
    )

"""Registering and reading inventory rows (datasets, models, sites) under the caller's policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.authorization import Guard
from control_plane.errors import ConflictError, NotFoundError
from control_plane.inventory.assets import Asset, dataset_asset, model_asset, site_asset
from control_plane.store.models import Dataset, Model, ModelVersion, Site

Row = TypeVar("Row", Dataset, Model, Site)

_ASSETS: dict[type[Dataset | Model | Site], Callable[..., Asset]] = {
    Dataset: dataset_asset,
    Model: model_asset,
    Site: site_asset,
}


def asset_of(row: Dataset | Model | Site) -> Asset:
    """The policy view of an inventory row."""
    return _ASSETS[type(row)](row)


def register(session: Session, guard: Guard, row: Row) -> Row:
    """Store a new row if the caller may create it; names are unique per kind."""
    asset = asset_of(row)
    guard.require("create", asset.ref, asset.domain, asset.attributes)
    kind = type(row)
    if session.scalars(select(kind.id).where(kind.name == row.name)).first():
        raise ConflictError(f"a {asset.ref.split(':')[0]} named {row.name!r} exists")
    session.add(row)
    session.flush()
    return row


def readable(session: Session, guard: Guard, row: Row | None, what: str) -> Row:
    """``row`` if it exists and the caller may read it (404 / 403 otherwise)."""
    if row is None:
        raise NotFoundError(f"no {what}")
    asset = asset_of(row)
    guard.require("read", asset.ref, asset.domain, asset.attributes)
    return row


def can_read(guard: Guard) -> Callable[[Dataset | Model | Site], bool]:
    """A filter keeping the rows the caller may read."""

    def allowed(row: Dataset | Model | Site) -> bool:
        asset = asset_of(row)
        return guard.decide("read", asset.ref, asset.domain, asset.attributes).allowed

    return allowed


def model_version(session: Session, model: Model, version: int) -> ModelVersion:
    """Version ``version`` of ``model`` (404 when it has none)."""
    row = session.scalars(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == version
        )
    ).first()
    if row is None:
        raise NotFoundError(f"model {model.name!r} has no version {version}")
    return row

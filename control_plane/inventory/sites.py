"""Federated sites: the datasets each holds, its local policy, its operator's decisions.

A site's local policy (:class:`SitePolicy`) is what its operator requires before the site's
data takes part in a federated run; :func:`site_verdict` applies it to one run. The operator's
decision on a run (approve or refuse) is stored and audited in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditEvent
from control_plane.audit_trail import AuditLog
from control_plane.authorization import Guard
from control_plane.errors import ConflictError, InvalidInputError
from control_plane.inventory.catalog import asset_of
from control_plane.runs.states import RunKind, RunState
from control_plane.store.models import Dataset, Run, Site, SiteDataset, SiteParticipation

Decision = Literal["approve", "refuse"]
Purpose = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")]


class SitePolicy(BaseModel):
    """A site's conditions for taking part in a federated run.

    Attributes:
        require_dp: the run must train with differential privacy.
        min_peers: at least this many other sites must take part with it.
        allowed_purposes: the purposes it trains for (None: any).
        require_approval: its operator must approve each run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_dp: bool = False
    min_peers: int = Field(default=0, ge=0, le=1000)
    allowed_purposes: list[Purpose] | None = Field(default=None, max_length=64)
    require_approval: bool = False


@dataclass(frozen=True)
class HeldDataset:
    """A dataset a site holds, as the site shows it."""

    id: str
    name: str
    classification: str


def held_datasets(session: Session, site_id: str) -> list[HeldDataset]:
    """The datasets ``site_id`` holds, by name."""
    rows = session.execute(
        select(Dataset.id, Dataset.name, Dataset.classification)
        .join(SiteDataset, SiteDataset.dataset_id == Dataset.id)
        .where(SiteDataset.site_id == site_id)
        .order_by(Dataset.name)
    ).all()
    return [HeldDataset(*row) for row in rows]


def hold_datasets(session: Session, guard: Guard, site: Site, names: Sequence[str]) -> None:
    """Record that ``site`` holds the named datasets (each readable by the caller).

    Raises:
        InvalidInputError: no dataset of that name.
        ConflictError: another site holds it already.
    """
    for name in names:
        dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
        if dataset is None:
            raise InvalidInputError(f"no dataset named {name!r}")
        asset = asset_of(dataset)
        guard.require("read", asset.ref, asset.domain, asset.attributes)
        if session.get(SiteDataset, dataset.id) is not None:
            raise ConflictError(f"dataset {name!r} is held by another site")
        session.add(SiteDataset(dataset_id=dataset.id, site_id=site.id))
    session.flush()


def holder_of(session: Session, dataset_id: str) -> Site | None:
    """The site holding a dataset; None when no site does."""
    held = session.get(SiteDataset, dataset_id)
    return None if held is None else session.get(Site, held.site_id)


def decide_participation(
    session: Session,
    guard: Guard,
    trail: AuditLog,
    site: Site,
    run_id: str,
    decision: Decision,
    comment: str,
) -> SiteParticipation:
    """Record the site operator's decision on a federated run, audited in the same transaction.

    Raises:
        InvalidInputError: no such run (the site in the path exists; the run the body names does
            not).
        ConflictError: the run is not an unfinished federated run, the site holds none of its
            inputs, or the site decided on it already.
    """
    asset = asset_of(site)
    guard.require("approve", asset.ref, asset.domain, asset.attributes)
    run = session.get(Run, run_id)
    if run is None:
        raise InvalidInputError(f"no run {run_id!r}")
    if run.kind != RunKind.FEDERATED_TRAIN or run.state not in (
        RunState.PENDING,
        RunState.RUNNING,
        RunState.AWAITING_APPROVAL,
    ):
        raise ConflictError(f"run {run_id} is not an unfinished federated_train run")
    held = {d.name for d in held_datasets(session, site.id)}
    if not any(ref.removeprefix("dataset:") in held for ref in run.inputs):
        raise ConflictError(f"site {site.name} holds none of the inputs of run {run_id}")
    if session.scalars(
        select(SiteParticipation.id).where(
            SiteParticipation.site_id == site.id, SiteParticipation.run_id == run_id
        )
    ).first():
        raise ConflictError(f"site {site.name} has decided on run {run_id} already")
    row = SiteParticipation(
        site_id=site.id,
        run_id=run_id,
        decision=decision,
        comment=comment,
        decided_by=guard.caller.name,
    )
    session.add(row)
    session.flush()
    trail.append(
        session,
        [
            AuditEvent(
                actor=guard.caller.name,
                action="site.participation",
                resource=asset.ref,
                decision=decision,
                run_id=run_id,
                payload={"site": site.name, "decision": decision, "comment": comment},
            )
        ],
    )
    return row


def site_verdict(
    session: Session,
    site: Site,
    run_id: str,
    purpose: str | None,
    dp: bool,
    peers: int,
) -> str | None:
    """Why ``site``'s local policy keeps it out of a run; None when it may take part.

    Args:
        purpose: the run's purpose.
        dp: whether the run trains with differential privacy.
        peers: how many other sites would take part with it.
    """
    policy = SitePolicy.model_validate(site.policy or {})
    decided = session.scalars(
        select(SiteParticipation).where(
            SiteParticipation.site_id == site.id, SiteParticipation.run_id == run_id
        )
    ).first()
    if decided is not None and decided.decision == "refuse":
        return f"its operator {decided.decided_by} refused: {decided.comment or 'no comment'}"
    if policy.require_approval and decided is None:
        return "its policy requires its operator's approval of the run, and none was given"
    if policy.require_dp and not dp:
        return "its policy requires differential privacy and the run trains without"
    if policy.allowed_purposes is not None and purpose not in policy.allowed_purposes:
        return (
            f"its policy allows the purposes {', '.join(policy.allowed_purposes) or 'none'}, "
            f"not {purpose or 'an unstated purpose'}"
        )
    if peers < policy.min_peers:
        return f"its policy requires at least {policy.min_peers} peers and the run has {peers}"
    return None


def site_view(session: Session, site: Site) -> dict[str, Any]:
    """The site with the datasets it holds, as the API shows it."""
    return {
        "id": site.id,
        "name": site.name,
        "domain": site.domain,
        "operator": site.operator,
        "residency": site.residency,
        "attributes": site.attributes,
        "node_id": site.node_id,
        "policy": SitePolicy.model_validate(site.policy or {}).model_dump(),
        "datasets": [d.__dict__ for d in held_datasets(session, site.id)],
        "created_at": site.created_at,
    }

"""Policy bundles in the store: the active one, proposals, history, and activation.

A bundle change is itself a governed run (``policy_change``): a proposal is stored, a run plans
the gates the *current* bundle requires for it (an approval by default), and
:class:`control_plane.runs.policy_change.PolicyChangeExecutor` activates the proposal only when
the run gets that far.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.errors import ConflictError, InvalidInputError
from control_plane.store import utcnow
from control_plane.store.models import PolicyBundleRow
from control_plane.store.revisions import bump_revision, lock_revision
from policies import BundleError, PolicyBundle


def stored_bundle(session: Session, version: str) -> PolicyBundle:
    """The stored bundle of ``version``, active or not (a run keeps the version it was
    planned under)."""
    return PolicyBundle.from_files(session.get_one(PolicyBundleRow, version).files)


def active_bundle_row(session: Session) -> PolicyBundleRow | None:
    """The active bundle's row, if any."""
    return session.scalars(
        select(PolicyBundleRow).where(PolicyBundleRow.status == "active")
    ).first()


def audit_retention_cutoff(session: Session, now: datetime) -> datetime:
    """The time before which the active bundle's ``audit.yaml`` lets audit records be pruned.

    Raises:
        ConflictError: no bundle is active, or it sets no retention (then nothing is pruned).
    """
    row = active_bundle_row(session)
    if row is None:
        raise ConflictError("no policy bundle is active")
    retention = PolicyBundle.from_files(row.files).audit
    if retention is None:
        raise ConflictError(
            f"the active policy bundle {row.version} has no audit.yaml: it sets no retention, "
            "so no audit record is pruned"
        )
    return now - timedelta(days=retention.retention_days)


def history(session: Session) -> list[PolicyBundleRow]:
    """Every bundle the store has seen, newest first."""
    return list(
        session.scalars(select(PolicyBundleRow).order_by(PolicyBundleRow.created_at.desc()))
    )


def activate_bundle(session: Session, bundle: PolicyBundle, created_by: str | None) -> bool:
    """Make ``bundle`` the active one; returns False if it already was.

    Concurrent activations (run workers on several replicas) are serialized on the ``authz``
    revision row, so exactly one bundle is ever active.
    """
    lock_revision(session)
    previous = active_bundle_row(session)
    if previous is not None and previous.version == bundle.version:
        return False
    if previous is not None:
        previous.status = "superseded"
        session.flush()
    row = session.get(PolicyBundleRow, bundle.version)
    if row is None:
        row = PolicyBundleRow(version=bundle.version, files=dict(bundle.files), status="active")
        row.created_by = created_by
        session.add(row)
    row.status = "active"
    row.activated_at = utcnow()
    bump_revision(session)
    return True


def propose_bundle(session: Session, files: Mapping[str, str], proposed_by: str) -> PolicyBundle:
    """Validate and store a proposed bundle.

    Raises:
        InvalidInputError: the bundle does not validate (the message names the file and problem).
        ConflictError: the proposal is the active bundle.
    """
    try:
        bundle = PolicyBundle.from_files(files)
    except BundleError as exc:
        raise InvalidInputError(f"invalid policy bundle: {exc}") from exc
    row = session.get(PolicyBundleRow, bundle.version)
    if row is not None and row.status == "active":
        raise ConflictError(f"bundle {bundle.version} is already the active bundle")
    if row is None:
        session.add(
            PolicyBundleRow(
                version=bundle.version,
                files=dict(bundle.files),
                status="proposed",
                created_by=proposed_by,
            )
        )
    return bundle

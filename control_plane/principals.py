"""Principals (users and service accounts), their roles per domain, and their API tokens."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.authorization import Guard
from control_plane.errors import ConflictError, InvalidInputError, NotFoundError
from control_plane.identity.tokens import issue_token
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.store import utcnow
from control_plane.store.models import Principal, RoleAssignment
from control_plane.store.revisions import bump_revision
from policies import PolicyBundle


def create_principal(
    session: Session,
    bundle: PolicyBundle,
    name: str,
    kind: str,
    roles: Iterable[tuple[str, str]],
    attributes: Mapping[str, Any],
    oidc_subject: str | None = None,
) -> Principal:
    """Store a principal with its roles; roles must be ones the active bundle defines."""
    roles = sorted(set(roles))
    unknown = sorted({role for role, _ in roles} - set(bundle.roles))
    if unknown:
        raise InvalidInputError(
            f"unknown roles {', '.join(unknown)}; the active bundle defines: "
            + ", ".join(sorted(bundle.roles))
        )
    if session.scalars(select(Principal.id).where(Principal.name == name)).first():
        raise ConflictError(f"a principal named {name!r} exists")
    if (
        oidc_subject
        and session.scalars(
            select(Principal.id).where(Principal.oidc_subject == oidc_subject)
        ).first()
    ):
        raise ConflictError(f"OIDC subject {oidc_subject!r} is bound to another principal")
    principal = Principal(
        name=name, kind=kind, attributes=dict(attributes), oidc_subject=oidc_subject
    )
    session.add(principal)
    session.flush()
    session.add_all(
        RoleAssignment(principal_id=principal.id, role=role, domain=domain)
        for role, domain in roles
    )
    bump_revision(session)
    return principal


def roles_of(session: Session, principal_id: str) -> list[tuple[str, str]]:
    """The (role, domain) pairs of a principal, sorted."""
    rows = session.execute(
        select(RoleAssignment.role, RoleAssignment.domain)
        .where(RoleAssignment.principal_id == principal_id)
        .order_by(RoleAssignment.domain, RoleAssignment.role)
    )
    return [(role, domain) for role, domain in rows]


def principal_for_oidc_subject(session: Session, subject: str) -> Principal | None:
    """The principal bound to an OIDC ``sub``, if any."""
    return session.scalars(select(Principal).where(Principal.oidc_subject == subject)).first()


def authorized_principal(
    session: Session, guard: Guard, principal_id: str, action: str
) -> Principal:
    """The principal ``principal_id`` if the caller may ``action`` it (404 / 403 otherwise)."""
    principal = session.get(Principal, principal_id)
    if principal is None:
        raise NotFoundError(f"no principal {principal_id}")
    guard.require(action, f"principal:{principal.name}", PLATFORM_DOMAIN)
    return principal


def new_token(
    session: Session, principal: Principal, expires_in_days: int | None
) -> tuple[str, datetime | None]:
    """Issue a token for ``principal``; returns it (shown once) and its expiry."""
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    return issue_token(session, principal.id, expires_at), expires_at

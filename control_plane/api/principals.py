"""``/principals``: users and service accounts, roles per domain, attributes, API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from pydantic import Field
from sqlalchemy import select

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import (
    NO_NUL,
    Attributes,
    Domain,
    Name,
    PathKey,
    RequestModel,
    ResponseModel,
)
from control_plane.api.pagination import Cursor, Limit, Page, fetch_page
from control_plane.audit_trail import action_event
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.principals import authorized_principal, create_principal, new_token, roles_of
from control_plane.store.models import Principal

router = APIRouter(prefix="/principals", tags=["principals"])


class RoleBinding(RequestModel):
    role: Name
    domain: Domain


class PrincipalCreate(RequestModel):
    name: Name
    kind: Literal["user", "service"]
    roles: Annotated[list[RoleBinding], Field(max_length=64)] = []
    attributes: Attributes = {}
    oidc_subject: Annotated[str, Field(min_length=1, max_length=512, pattern=NO_NUL)] | None = None


class RoleOut(ResponseModel):
    role: str
    domain: str


class PrincipalOut(ResponseModel):
    id: str
    name: str
    kind: str
    roles: list[RoleOut]
    attributes: dict[str, str | int | float | bool]
    oidc_subject: str | None
    created_at: datetime


class TokenCreate(RequestModel):
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class TokenOut(ResponseModel):
    token: str
    expires_at: datetime | None


def _out(principal: Principal, roles: list[tuple[str, str]]) -> PrincipalOut:
    return PrincipalOut(
        id=principal.id,
        name=principal.name,
        kind=principal.kind,
        roles=[RoleOut(role=role, domain=domain) for role, domain in roles],
        attributes=principal.attributes,
        oidc_subject=principal.oidc_subject,
        created_at=principal.created_at,
    )


@router.post("", status_code=201)
def create(body: PrincipalCreate, services: ServicesDep, guard: GuardDep) -> PrincipalOut:
    guard.require("create", f"principal:{body.name}", PLATFORM_DOMAIN)
    roles = [(binding.role, binding.domain) for binding in body.roles]
    with services.db.session(write=True) as session:
        principal = create_principal(
            session, guard.bundle, body.name, body.kind, roles, body.attributes, body.oidc_subject
        )
        created = {
            "id": principal.id,
            "kind": body.kind,
            "roles": [f"{role}@{domain}" for role, domain in sorted(roles)],
            "attributes": dict(body.attributes),
            "oidc_subject": body.oidc_subject,
        }
        event = action_event(guard, "principal.create", f"principal:{body.name}", created)
        services.audit.append(session, [event])
        return _out(principal, roles_of(session, principal.id))


@router.get("")
def list_principals(
    services: ServicesDep,
    guard: GuardDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    kind: Annotated[Literal["user", "service"] | None, Query()] = None,
) -> Page[PrincipalOut]:
    statement = select(Principal)
    if kind is not None:
        statement = statement.where(Principal.kind == kind)
    with services.db.session() as session:
        rows, next_cursor = fetch_page(
            session,
            statement,
            Principal.id,
            limit,
            cursor,
            lambda p: guard.decide("read", f"principal:{p.name}", PLATFORM_DOMAIN).allowed,
        )
        return Page(items=[_out(p, roles_of(session, p.id)) for p in rows], next_cursor=next_cursor)


@router.get("/{principal_id}")
def get(principal_id: PathKey, services: ServicesDep, guard: GuardDep) -> PrincipalOut:
    with services.db.session() as session:
        principal = authorized_principal(session, guard, principal_id, "read")
        return _out(principal, roles_of(session, principal.id))


@router.post("/{principal_id}/tokens", status_code=201)
def create_token(
    principal_id: PathKey,
    services: ServicesDep,
    guard: GuardDep,
    body: Annotated[TokenCreate | None, Body()] = None,
) -> TokenOut:
    with services.db.session(write=True) as session:
        principal = authorized_principal(session, guard, principal_id, "issue_token")
        days = body.expires_in_days if body else None
        token, expires_at = new_token(session, principal, days)
        issued = {"token": token, "expires_at": expires_at.isoformat() if expires_at else None}
        event = action_event(guard, "token.issue", f"principal:{principal.name}", issued)
        services.audit.append(session, [event])
    return TokenOut(token=token, expires_at=expires_at)

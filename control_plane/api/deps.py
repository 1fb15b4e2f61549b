"""Request dependencies: the app's services, the authenticated caller and its guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from connectors.lake import Lake
from connectors.serving import LocalScoringServers
from control_plane.approvals import ApprovalWorkflow, WebhookDeliverer
from control_plane.audit_trail import AuditLog, DecisionAudit
from control_plane.authorization import Authorization, Caller, Guard
from control_plane.errors import UnauthenticatedError
from control_plane.identity.oidc import InvalidTokenError, OidcVerifier
from control_plane.identity.tokens import TOKEN_PREFIX, principal_for_token
from control_plane.lineage import LineageDeliverer, LineageRecorder, LineageWriter
from control_plane.principals import principal_for_oidc_subject
from control_plane.privacy_ledger import PrivacyLedger
from control_plane.runs import RunEngine, RunWorker
from control_plane.settings import Settings
from control_plane.store import Database, new_id
from control_plane.store.models import Principal


@dataclass(frozen=True)
class Services:
    """Everything ``create_app`` builds, shared by the handlers."""

    settings: Settings
    db: Database
    authorization: Authorization
    runs: RunEngine
    worker: RunWorker | None
    oidc: OidcVerifier | None
    audit: AuditLog
    lineage_writer: LineageWriter
    lineage_recorder: LineageRecorder
    lineage_deliverer: LineageDeliverer | None
    privacy_ledger: PrivacyLedger
    lake: Lake
    approvals: ApprovalWorkflow
    webhook_deliverer: WebhookDeliverer | None
    local_serving: LocalScoringServers


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


# Declares the scheme in the OpenAPI schema; the guard itself answers a missing token with 401.
_BEARER = HTTPBearer(
    auto_error=False, description="A govplane API token (`gp_...`) or, when enabled, an OIDC JWT."
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]


def _caller(session: Session, services: Services, token: str) -> Caller:
    if token.startswith(TOKEN_PREFIX):
        principal_id = principal_for_token(session, token)
        principal = session.get(Principal, principal_id) if principal_id else None
        if principal is None:
            raise UnauthenticatedError("the API token is unknown, revoked or expired")
    elif services.oidc is not None:
        try:
            identity = services.oidc.verify(token)
        except InvalidTokenError as exc:
            raise UnauthenticatedError(f"invalid bearer JWT: {exc}") from exc
        principal = principal_for_oidc_subject(session, identity.subject)
        if principal is None:
            raise UnauthenticatedError(f"no principal is bound to OIDC subject {identity.subject}")
    else:
        raise UnauthenticatedError("the bearer token is not a govplane API token")
    return caller_of(principal)


def caller_of(principal: Principal) -> Caller:
    """The caller a stored principal acts as."""
    return Caller(principal.id, principal.name, principal.kind, dict(principal.attributes))


def bind_guard(request: Request, services: Services, session: Session, caller: Caller) -> Guard:
    """A guard for ``caller`` on the current policy, auditing its decisions under the request."""
    engine = services.authorization.engine(session)
    return Guard(engine, caller, DecisionAudit(services.audit), request_id(request))


def request_id(request: Request) -> str:
    """The client's ``X-Request-ID`` when it is a plausible id, else a new one."""
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return new_id()


def get_guard(request: Request, services: ServicesDep, bearer: BearerDep) -> Guard:
    """Authenticate the request and bind a guard, which audits its decisions, to the policy."""
    token = bearer.credentials.strip() if bearer is not None else ""
    if not token:
        raise UnauthenticatedError("a bearer token is required (Authorization: Bearer <token>)")
    with services.db.session() as session:
        return bind_guard(request, services, session, _caller(session, services, token))


GuardDep = Annotated[Guard, Depends(get_guard)]

"""The control plane's policy decision point: the active bundle and the store's role assignments.

Each replica keeps a :class:`policies.PolicyEngine` in memory and reloads it when the store's
``authz`` revision moves (a role assignment or the active bundle changed, perhaps on another
replica), so decisions stay fast and never act on stale policy for longer than one request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.bundles import active_bundle_row
from control_plane.errors import ForbiddenError, ProblemError
from control_plane.store.models import Principal
from control_plane.store.models import RoleAssignment as RoleRow
from control_plane.store.revisions import current_revision
from policies import AuthzRequest, Decision, PolicyBundle, PolicyEngine, RoleAssignment


@dataclass(frozen=True)
class Caller:
    """The authenticated principal behind a request."""

    id: str
    name: str
    kind: str
    attributes: Mapping[str, Any]


class DecisionLog(Protocol):
    """Where a guard records the decisions it enforces (the audit trail)."""

    def allowed(
        self, caller: Caller, request_id: str | None, request: AuthzRequest, decision: Decision
    ) -> None:
        """Record an allow decision before the action proceeds; raise to refuse the action."""
        ...

    def denied(
        self, caller: Caller, request_id: str | None, request: AuthzRequest, decision: Decision
    ) -> Callable[[], None]:
        """What records a deny decision once the refused request's transaction is over."""
        ...


class Authorization:
    """Decides requests with the active bundle, kept in step with the store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: PolicyEngine | None = None
        self._revision: int | None = None

    def engine(self, session: Session) -> PolicyEngine:
        """The engine for the store's current revision, reloading it if it moved.

        Raises:
            ProblemError: 503 when the store has no active bundle (decisions fail closed).
        """
        revision = current_revision(session)
        with self._lock:
            if self._engine is not None and revision == self._revision:
                return self._engine
            row = active_bundle_row(session)
            if row is None:
                raise ProblemError(
                    503, "Service Unavailable", "no active policy bundle: run `govplane init`"
                )
            bundle = PolicyBundle.from_files(row.files)
            assignments = [
                RoleAssignment(subject=name, role=role, domain=domain)
                for name, role, domain in session.execute(
                    select(Principal.name, RoleRow.role, RoleRow.domain).join(
                        RoleRow, RoleRow.principal_id == Principal.id
                    )
                )
            ]
            if self._engine is None or self._engine.bundle.version != bundle.version:
                self._engine = PolicyEngine(bundle, assignments)
            else:
                self._engine.replace_assignments(assignments)
            self._revision = revision
            return self._engine


class Guard:
    """Authorizes one caller's actions with one engine snapshot; bound to a request.

    Attributes merge in order of trust: the caller's request attributes, then the caller's own
    attributes, then the resource's, so a client can never override what the store knows.
    Every decision :meth:`require` enforces is written to ``log`` when one is given.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        caller: Caller,
        log: DecisionLog | None = None,
        request_id: str | None = None,
    ) -> None:
        self._engine = engine
        self.caller = caller
        self.log = log
        self.request_id = request_id

    @property
    def engine(self) -> PolicyEngine:
        """The engine snapshot this guard decides with."""
        return self._engine

    @property
    def bundle(self) -> PolicyBundle:
        """The bundle this guard decides with."""
        return self._engine.bundle

    def decide(
        self,
        action: str,
        obj: str,
        domain: str,
        resource: Mapping[str, Any] | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The decision on the caller doing ``action`` on ``obj`` in ``domain``."""
        return self._engine.decide(self._request(action, obj, domain, resource, request))

    def _request(
        self,
        action: str,
        obj: str,
        domain: str,
        resource: Mapping[str, Any] | None,
        request: Mapping[str, Any] | None,
    ) -> AuthzRequest:
        attributes = {**(request or {}), **self.caller.attributes, **(resource or {})}
        scalars = {k: v for k, v in attributes.items() if isinstance(v, str | int | float | bool)}
        return AuthzRequest(
            subject=self.caller.name, domain=domain, object=obj, action=action, attributes=scalars
        )

    def require(
        self,
        action: str,
        obj: str,
        domain: str,
        resource: Mapping[str, Any] | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Like :meth:`decide`, raising 403 with the deciding rule when denied.

        The decision is recorded (allowed: before this returns; denied: before the 403 is
        answered); a decision that cannot be recorded refuses the request with 503.
        """
        authz = self._request(action, obj, domain, resource, request)
        decision = self._engine.decide(authz)
        if decision.allowed:
            if self.log is not None:
                self.log.allowed(self.caller, self.request_id, authz, decision)
            return decision
        error = ForbiddenError(
            f"{self.caller.name} may not {action} {obj} in domain {domain}",
            rule=decision.rule,
            bundle_version=decision.bundle_version,
        )
        if self.log is not None:
            error.before_response = self.log.denied(self.caller, self.request_id, authz, decision)
        raise error

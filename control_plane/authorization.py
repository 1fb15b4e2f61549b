"""The control plane's policy decision point: the active bundle and the store's role assignments.

Each replica keeps a :class:`policies.PolicyEngine` in memory and reloads it when the store's
``authz`` revision moves (a role assignment or the active bundle changed, perhaps on another
replica), so decisions stay fast and never act on stale policy for longer than one request.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    """

    def __init__(self, engine: PolicyEngine, caller: Caller) -> None:
        self._engine = engine
        self.caller = caller

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
        attributes = {**(request or {}), **self.caller.attributes, **(resource or {})}
        scalars = {k: v for k, v in attributes.items() if isinstance(v, str | int | float | bool)}
        return self._engine.decide(
            AuthzRequest(
                subject=self.caller.name,
                domain=domain,
                object=obj,
                action=action,
                attributes=scalars,
            ),
        )

    def require(
        self,
        action: str,
        obj: str,
        domain: str,
        resource: Mapping[str, Any] | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Like :meth:`decide`, raising 403 with the deciding rule when denied."""
        decision = self.decide(action, obj, domain, resource, request)
        if not decision.allowed:
            raise ForbiddenError(
                f"{self.caller.name} may not {action} {obj} in domain {domain}",
                rule=decision.rule,
                bundle_version=decision.bundle_version,
            )
        return decision

"""The executor of ``policy_change`` runs: activate the proposed bundle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.audit_trail import AuditLog
from control_plane.bundles import activate_bundle, stored_bundle
from control_plane.runs.executors import ExecutionContext
from control_plane.runs.states import RunKind
from control_plane.store import Database


class PolicyChangeExecutor:
    """Activates the proposed bundle a ``policy_change`` run targets (``policy:VERSION``)."""

    kind = RunKind.POLICY_CHANGE

    def __init__(self, db: Database, trail: AuditLog) -> None:
        self._db = db
        self._trail = trail

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        version = context.target.removeprefix("policy:")
        with self._db.session(write=True) as session:
            bundle = stored_bundle(session, version)
            activate_bundle(session, bundle, context.submitted_by)
            self._trail.append(
                session,
                [
                    context.audit_event(
                        "policy.activate", {"version": version, "files": sorted(bundle.files)}
                    )
                ],
            )
        return {"activated": version}

"""Refusals of executors that guard a release: the reason is audited before the run fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from control_plane.audit_trail import AuditLog
from control_plane.runs.executors import ExecutionContext
from control_plane.store import Database


class ExecutionRefusedError(RuntimeError):
    """The executor refused the run (the reason is in the audit trail)."""


def refuse(
    db: Database,
    trail: AuditLog,
    context: ExecutionContext,
    action: str,
    reason: str,
    payload: Mapping[str, Any],
) -> NoReturn:
    """Audit that ``action`` was refused for ``reason``, then fail the run with it.

    If the refusal cannot be audited the run fails all the same (with the audit error).
    """
    with db.session(write=True) as session:
        trail.append(session, [context.audit_event(action, payload, refused=reason)])
    raise ExecutionRefusedError(reason)

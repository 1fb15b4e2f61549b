"""The control plane's audit trail: the ``audit`` library over the SQL store."""

from control_plane.audit_trail.keys import AuditKeys, ensure_audit_keys, load_audit_keys
from control_plane.audit_trail.log import AuditLog, AuditUnavailableError, CheckpointCadence
from control_plane.audit_trail.recorders import (
    DecisionAudit,
    RunTransitionAudit,
    action_event,
    decision_event,
)

__all__ = [
    "AuditKeys",
    "AuditLog",
    "AuditUnavailableError",
    "CheckpointCadence",
    "DecisionAudit",
    "RunTransitionAudit",
    "action_event",
    "decision_event",
    "ensure_audit_keys",
    "load_audit_keys",
]

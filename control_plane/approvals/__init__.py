"""The approval workflow: quorum, separation of duties, expiry, revocation and webhooks."""

from control_plane.approvals.quorum import Outcome, Vote, tally
from control_plane.approvals.separation import excluded_approvers
from control_plane.approvals.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    ApprovalRequestNotifier,
    WebhookDeliverer,
    WebhookNotifier,
    ensure_webhook_secret,
    load_webhook_secret,
    sign,
    verify_signature,
)
from control_plane.approvals.workflow import (
    ApprovalWorkflow,
    Decided,
    DecisionKind,
    Notifier,
    may_decide,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "ApprovalRequestNotifier",
    "ApprovalWorkflow",
    "Decided",
    "DecisionKind",
    "Notifier",
    "Outcome",
    "Vote",
    "WebhookDeliverer",
    "WebhookNotifier",
    "ensure_webhook_secret",
    "excluded_approvers",
    "load_webhook_secret",
    "may_decide",
    "sign",
    "tally",
    "verify_signature",
]

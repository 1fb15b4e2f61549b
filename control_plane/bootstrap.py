"""``govplane init``: create the embedded default and a bootstrap admin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from audit import AuditEvent
from control_plane.approvals import ensure_webhook_secret
from control_plane.audit_trail import AuditLog, ensure_audit_keys, load_audit_keys
from control_plane.bundles import activate_bundle, active_bundle_row
from control_plane.identity.tokens import issue_token
from control_plane.ingest import ensure_lake
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.inventory.releases import ensure_release_key
from control_plane.principals import create_principal
from control_plane.settings import Settings
from control_plane.store import Database, upgrade
from control_plane.store.models import Principal
from policies import DEFAULT_BUNDLE_DIR, PolicyBundle, load_bundle

BOOTSTRAP_ADMIN = "admin"


@dataclass(frozen=True)
class Initialized:
    """What ``init`` did: the bundle in force and a fresh admin token."""

    data_dir: Path
    database_url: str
    bundle_version: str
    admin_token: str
    created: bool


def initialize(settings: Settings, bundle_dir: Path | None = None) -> Initialized:
    """Create (or bring up to date) the store, install a bundle, and issue an admin token.

    Safe to run again: migrations are idempotent, an active bundle, the audit keys, the lake, the
    pseudonymization key and the webhook secret are kept,
    and the existing bootstrap admin gets a new token (whoever can run this already controls
    the data directory). Each step is recorded in the audit trail.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    ensure_audit_keys(settings)
    ensure_release_key(settings)
    ensure_lake(settings)
    ensure_webhook_secret(settings)
    db = Database(settings.sqlalchemy_url)
    trail = AuditLog(db, load_audit_keys(settings))
    events: list[AuditEvent] = []
    try:
        with db.session(write=True) as session:
            active = active_bundle_row(session)
            if active is None:
                bundle = load_bundle(bundle_dir or DEFAULT_BUNDLE_DIR)
                activate_bundle(session, bundle, created_by=None)
                events.append(_event("policy.activate", f"policy:{bundle.version}", {}))
            else:
                bundle = PolicyBundle.from_files(active.files)
            admin = session.scalars(
                select(Principal).where(Principal.name == BOOTSTRAP_ADMIN)
            ).first()
            created = admin is None
            if admin is None:
                admin = create_principal(
                    session, bundle, BOOTSTRAP_ADMIN, "user", [("admin", PLATFORM_DOMAIN)], {}
                )
                roles = {"roles": [f"admin@{PLATFORM_DOMAIN}"]}
                events.append(_event("principal.create", f"principal:{BOOTSTRAP_ADMIN}", roles))
            token = issue_token(session, admin.id)
            events.append(_event("token.issue", f"principal:{BOOTSTRAP_ADMIN}", {"token": token}))
            trail.append(session, events)
    finally:
        trail.close()
        db.dispose()
    return Initialized(settings.data_dir, settings.sqlalchemy_url, bundle.version, token, created)


def _event(action: str, resource: str, payload: Mapping[str, Any]) -> AuditEvent:
    return AuditEvent(
        actor="system:init", action=action, resource=resource, decision="ok", payload=payload
    )

"""``govplane init``: create the embedded default and a bootstrap admin."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from control_plane.bundles import activate_bundle, active_bundle_row
from control_plane.identity.tokens import issue_token
from control_plane.inventory.assets import PLATFORM_DOMAIN
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

    Safe to run again: migrations are idempotent, an active bundle is kept, and the existing
    bootstrap admin gets a new token (whoever can run this already controls the data directory).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        with db.session(write=True) as session:
            active = active_bundle_row(session)
            if active is None:
                bundle = load_bundle(bundle_dir or DEFAULT_BUNDLE_DIR)
                activate_bundle(session, bundle, created_by=None)
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
            token = issue_token(session, admin.id)
    finally:
        db.dispose()
    return Initialized(settings.data_dir, settings.sqlalchemy_url, bundle.version, token, created)

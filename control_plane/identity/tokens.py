"""API tokens: random, shown once, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.store import utcnow
from control_plane.store.models import ApiToken

TOKEN_PREFIX = "gp_"  # noqa: S105 (a prefix, not a secret)


def hash_token(token: str) -> str:
    """The stored digest of ``token``.

    Tokens carry 256 random bits, so a plain SHA-256 (no salt, no stretching) cannot be
    brute-forced and lets a token be found by its digest in one indexed lookup.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, principal_id: str, expires_at: datetime | None = None) -> str:
    """Create a token for a principal and return it; only its digest is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(principal_id=principal_id, token_hash=hash_token(token), expires_at=expires_at)
    )
    return token


def principal_for_token(session: Session, token: str) -> str | None:
    """The id of the principal a valid, unexpired token belongs to, else None."""
    return principal_for_token_hash(session, hash_token(token))


def principal_for_token_hash(session: Session, token_hash: str) -> str | None:
    """Like :func:`principal_for_token`, from the token's digest (what a web session keeps)."""
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return row.principal_id

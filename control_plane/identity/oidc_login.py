"""Logging people in with OIDC: the authorization code flow with PKCE, state and nonce.

:meth:`OidcLogin.start` gives the provider URL to send the browser to and the secrets to keep
until it comes back (the dashboard keeps them in a signed cookie); :meth:`OidcLogin.finish`
checks the returned ``state``, redeems the code at the token endpoint with the PKCE verifier,
and verifies the ID token (signature against the issuer's JWKS, issuer, audience = the client
id, expiry, and the ``nonce``). Anything that does not check out is an :class:`OidcLoginError`:
the login fails closed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from control_plane.identity.oidc import InvalidTokenError, OidcIdentity, OidcVerifier


class OidcLoginError(Exception):
    """The provider's answer cannot log anyone in; the message says why."""


@dataclass(frozen=True)
class PendingLogin:
    """What a login in progress must keep until the provider sends the browser back."""

    state: str
    nonce: str
    code_verifier: str

    def to_json(self) -> dict[str, str]:
        return {"state": self.state, "nonce": self.nonce, "code_verifier": self.code_verifier}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingLogin:
        return cls(str(data["state"]), str(data["nonce"]), str(data["code_verifier"]))


@dataclass(frozen=True)
class OidcLogin:
    """One OIDC client (this control plane) of one provider.

    Attributes:
        client_id: the client id the provider knows this control plane by.
        client_secret: its secret (sent with HTTP Basic), or None for a public client.
        authorization_url: the provider's authorization endpoint.
        token_url: the provider's token endpoint.
        verifier: verifies ID tokens: the provider's issuer and JWKS, audience = ``client_id``.
    """

    client_id: str
    client_secret: str | None
    authorization_url: str
    token_url: str
    verifier: OidcVerifier

    def start(self, redirect_uri: str) -> tuple[str, PendingLogin]:
        """The URL to send the browser to, and what to keep until it comes back."""
        pending = PendingLogin(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        )
        challenge = _s256(pending.code_verifier)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid",
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in self.authorization_url else "?"
        return f"{self.authorization_url}{separator}{query}", pending

    def finish(
        self, pending: PendingLogin, state: str, code: str, redirect_uri: str
    ) -> tuple[OidcIdentity, int]:
        """The identity the provider vouches for, and when its ID token expires (epoch s).

        Raises:
            OidcLoginError: the state differs, the code is refused, or the ID token does not
                verify or was not issued for this login.
        """
        if not hmac.compare_digest(pending.state.encode(), state.encode()):
            raise OidcLoginError("the login's state does not match; start the login again")
        auth = (self.client_id, self.client_secret) if self.client_secret else None
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": pending.code_verifier,
        }
        try:
            answer = httpx.post(self.token_url, data=form, auth=auth, timeout=10)
        except httpx.HTTPError as exc:
            raise OidcLoginError(f"the token endpoint is unreachable: {exc}") from exc
        if answer.status_code != 200:
            raise OidcLoginError(f"the token endpoint refused the code ({answer.status_code})")
        try:
            id_token = answer.json()["id_token"]
        except (ValueError, KeyError, TypeError) as exc:
            raise OidcLoginError("the token endpoint returned no ID token") from exc
        if not isinstance(id_token, str):
            raise OidcLoginError("the token endpoint returned no ID token")
        try:
            identity = self.verifier.verify(id_token)
        except InvalidTokenError as exc:
            raise OidcLoginError(f"invalid ID token: {exc}") from exc
        nonce = identity.claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), pending.nonce.encode()
        ):
            raise OidcLoginError("the ID token was not issued for this login (nonce)")
        return identity, int(identity.claims["exp"])


def _s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

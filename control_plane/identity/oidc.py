"""OIDC bearer JWTs verified against the issuer's JWKS.

Checks the signature with the key the token's ``kid`` names, an algorithm allow-list that
admits only asymmetric algorithms (so ``none`` and HMAC confusion with a public key are
impossible), the issuer, the audience, ``exp`` (required), ``nbf`` and ``iat``. The JWKS is
cached; an unknown ``kid`` (key rotation) triggers a refetch. Anything that cannot be checked,
including an unreachable JWKS, is an invalid token: authentication fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from pydantic import BaseModel, ConfigDict, Field, field_validator

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class InvalidTokenError(Exception):
    """The bearer JWT cannot be trusted; the message says why."""


class OidcConfig(BaseModel):
    """Where the issuer's keys are and what a token must say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str = Field(pattern=r"^https?://")
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    subject_claim: str = "sub"
    jwks_cache_seconds: int = Field(default=300, ge=1)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        refused = sorted(set(algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused or not algorithms:
            raise ValueError(
                f"algorithms {refused or '(none)'} are not allowed; "
                f"choose from {sorted(ASYMMETRIC_ALGORITHMS)}"
            )
        return algorithms


@dataclass(frozen=True)
class OidcIdentity:
    """Who a verified token speaks for."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]


class OidcVerifier:
    """Verifies bearer JWTs for one issuer; thread-safe."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._jwks = jwt.PyJWKClient(
            config.jwks_url,
            lifespan=config.jwks_cache_seconds,
            timeout=5,
            cooldown_duration=0,
        )

    def verify(self, token: str) -> OidcIdentity:
        """The identity in ``token``.

        Raises:
            InvalidTokenError: the token is malformed, forged, expired, for someone else, or
                its keys cannot be fetched.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(f"not a JWT: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in self.config.algorithms:
            raise InvalidTokenError(f"algorithm {algorithm} not allowed")
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise InvalidTokenError(f"JWKS unavailable: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise InvalidTokenError(f"unknown signing key: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(f"not a JWT: {exc}") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", self.config.subject_claim]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidTokenError("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidTokenError("token not yet valid") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidTokenError("issuer mismatch") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidTokenError("audience mismatch") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidTokenError("signature verification failed") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(str(exc)) from exc
        except (TypeError, ValueError) as exc:  # PyJWT's word for a key of another type
            raise InvalidTokenError(f"signing key {key.key_id} does not fit {algorithm}") from exc
        subject = claims.get(self.config.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidTokenError(f"claim {self.config.subject_claim} is not a non-empty string")
        return OidcIdentity(issuer=self.config.issuer, subject=subject, claims=claims)

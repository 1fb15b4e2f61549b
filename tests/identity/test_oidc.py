"""OIDC bearer JWTs: accepted only when every check passes, against a real JWKS endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from control_plane.identity.oidc import InvalidTokenError, OidcConfig, OidcVerifier
from tests.identity.conftest import AUDIENCE, ISSUER, Issuer


def _verifier(issuer: Issuer, **overrides: object) -> OidcVerifier:
    config = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": issuer.url, **overrides}
    return OidcVerifier(OidcConfig.model_validate(config))


def _refused(verifier: OidcVerifier, token: str, reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        verifier.verify(token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handmade(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT assembled by hand, as an attacker would: HMAC-signed with ``secret`` or unsigned."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return f"{signing_input}."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 60, **overrides}


def test_a_valid_rsa_token_yields_its_subject(issuer: Issuer) -> None:
    identity = _verifier(issuer).verify(issuer.token(sub="alice", groups=["risk"]))
    assert identity.subject == "alice"
    assert identity.issuer == ISSUER
    assert identity.claims["groups"] == ["risk"]


def test_a_valid_ec_token_verifies(issuer: Issuer) -> None:
    token = issuer.token(kid="ec-1", key=issuer.ec_key, algorithm="ES256")
    assert _verifier(issuer).verify(token).subject == "user-1"


def test_alg_none_is_refused(issuer: Issuer) -> None:
    token = _handmade({"alg": "none", "kid": "rsa-1"}, _claims(), None)
    _refused(_verifier(issuer), token, "algorithm none not allowed")


def test_hmac_keyed_with_the_public_key_is_refused(issuer: Issuer) -> None:
    # The algorithm-confusion attack: HS256 keyed with the published RSA public key
    public_pem = issuer.rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = _handmade({"alg": "HS256", "kid": "rsa-1"}, _claims(), public_pem)
    _refused(_verifier(issuer), token, "algorithm HS256 not allowed")


def test_symmetric_algorithms_cannot_be_configured(issuer: Issuer) -> None:
    with pytest.raises(ValidationError, match="HS256"):
        _verifier(issuer, algorithms=("RS256", "HS256"))


def test_a_key_of_the_wrong_type_for_the_algorithm_is_refused(issuer: Issuer) -> None:
    # An ES256 header pointing at the RSA key
    token = issuer.token(kid="rsa-1", key=issuer.ec_key, algorithm="ES256")
    with pytest.raises(InvalidTokenError):
        _verifier(issuer).verify(token)


def test_wrong_issuer_or_audience_is_refused(issuer: Issuer) -> None:
    _refused(_verifier(issuer), issuer.token(iss="https://evil.test/"), "issuer mismatch")
    _refused(_verifier(issuer), issuer.token(aud="another-app"), "audience mismatch")


def test_expired_and_not_yet_valid_tokens_are_refused(issuer: Issuer) -> None:
    now = int(time.time())
    _refused(_verifier(issuer), issuer.token(exp=now - 120), "token expired")
    _refused(_verifier(issuer), issuer.token(nbf=now + 600), "not yet valid")


def test_leeway_tolerates_small_clock_skew(issuer: Issuer) -> None:
    token = issuer.token(exp=int(time.time()) - 5)
    assert _verifier(issuer, leeway_seconds=30).verify(token).subject == "user-1"


def test_missing_exp_or_sub_is_refused(issuer: Issuer) -> None:
    _refused(_verifier(issuer), issuer.token(exp=None), "exp")
    _refused(_verifier(issuer), issuer.token(sub=None), "sub")
    _refused(_verifier(issuer), issuer.token(sub=""), "sub")


def test_a_tampered_payload_fails_the_signature(issuer: Issuer) -> None:
    header, _, signature = issuer.token(sub="alice").split(".")
    forged_body = _b64(json.dumps(_claims(sub="admin")).encode())
    _refused(_verifier(issuer), f"{header}.{forged_body}.{signature}", "signature")


def test_a_key_outside_the_jwks_is_refused(issuer: Issuer) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(_verifier(issuer), issuer.token(kid="rsa-1", key=stranger), "signature")
    _refused(_verifier(issuer), issuer.token(kid="nobody", key=stranger), "unknown signing key")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "e30.e30.", "x" * 5000])
def test_garbage_is_refused(issuer: Issuer, garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        _verifier(issuer).verify(garbage)


def test_a_rotated_key_is_fetched_once(issuer: Issuer) -> None:
    # Given a verifier that has cached the key set
    verifier = _verifier(issuer)
    verifier.verify(issuer.token())
    fetches = issuer.jwks.fetches
    # When the issuer rotates to a new key
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.jwks.publish("rsa-2", rotated)
    token = issuer.token(kid="rsa-2", key=rotated)
    # Then tokens signed with it verify after one refetch, and later ones hit the cache
    assert verifier.verify(token).subject == "user-1"
    assert verifier.verify(token).subject == "user-1"
    assert verifier.verify(issuer.token()).subject == "user-1"
    assert issuer.jwks.fetches == fetches + 1


def test_an_unreachable_jwks_fails_closed(issuer: Issuer) -> None:
    issuer.jwks.up = False
    _refused(_verifier(issuer), issuer.token(), "JWKS unavailable")
    verifier = OidcVerifier(
        OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://127.0.0.1:1/jwks")
    )
    _refused(verifier, issuer.token(), "JWKS unavailable")

"""Dashboard login with OIDC: the authorization code flow with PKCE against a provider on
loopback.

No OIDC provider runs on this machine, so :class:`FakeProvider` is a small one serving the
three endpoints the flow uses over real HTTP (uvicorn on loopback): ``/authorize`` (logs in its
current user at once and redirects back with a code), ``/token`` (redeems a code once, checking
the client secret, the redirect URI and the PKCE verifier) and ``/jwks``. Its ID tokens are real
signed JWTs.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from control_plane.app import create_app
from control_plane.runs import RunKind
from control_plane.settings import Settings
from tests.conftest import RecordingExecutor
from tests.identity.conftest import ISSUER, Jwks
from tests.loopback import serve_on_loopback

CLIENT_ID = "govplane-dashboard"
CLIENT_SECRET = "s3cret-of-the-dashboard"


@dataclass
class FakeProvider:
    """An OIDC provider's authorize, token and JWKS endpoints; tests steer its answers."""

    key: Any
    jwks: Jwks
    url: str = ""
    user: str = "alice-sub"
    audience: str = CLIENT_ID
    nonce: str | None = None  # sign this nonce instead of the one asked for
    lifetime_seconds: int = 300
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return 400, {}
        code = secrets.token_urlsafe(16)
        self.codes[code] = {**query, "sub": self.user}
        back = urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": f"{query['redirect_uri']}?{back}"}

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        asked = self.codes.pop(form.get("code", ""), None)  # a code is redeemed once
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if (
            asked is None
            or form.get("redirect_uri") != asked["redirect_uri"]
            or challenge != asked["code_challenge"]
        ):
            return 400, {"error": "invalid_grant"}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": self.audience,
            "sub": asked["sub"],
            "nonce": self.nonce or asked["nonce"],
            "iat": now,
            "exp": now + self.lifetime_seconds,
        }
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "rsa-1"})
        return 200, {"id_token": id_token, "access_token": "opaque", "token_type": "Bearer"}


def _endpoints(idp: FakeProvider) -> Starlette:
    """The provider's endpoints over HTTP."""

    async def authorize(request: Request) -> Response:
        status, headers = idp.authorize(dict(request.query_params))
        return Response(status_code=status, headers=headers)

    async def token(request: Request) -> Response:
        form = {name: str(value) for name, value in (await request.form()).items()}
        status, body = idp.token(form, request.headers.get("authorization", ""))
        return JSONResponse(body, status)

    async def jwks(request: Request) -> Response:
        return Response(idp.jwks.document(), media_type="application/json")

    return Starlette(
        routes=[
            Route("/authorize", authorize),
            Route("/token", token, methods=["POST"]),
            Route("/jwks", jwks),
        ]
    )


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = Jwks()
    jwks.publish("rsa-1", key)
    idp = FakeProvider(key, jwks)
    with serve_on_loopback(_endpoints(idp)) as url:
        idp.url = url
        yield idp


@pytest.fixture
def settings(settings: Settings, provider: FakeProvider) -> Settings:
    """The test settings, with bearer JWTs and the dashboard's OIDC client configured."""
    return settings.model_copy(
        update={
            "oidc_issuer": ISSUER,
            "oidc_audience": "govplane",
            "oidc_jwks_url": f"{provider.url}/jwks",
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": SecretStr(CLIENT_SECRET),
            "oidc_authorization_url": f"{provider.url}/authorize",
            "oidc_token_url": f"{provider.url}/token",
        }
    )


@pytest.fixture
def browser(
    client: TestClient, settings: Settings, executors: dict[RunKind, RecordingExecutor]
) -> Iterator[TestClient]:
    """A browser (cookies, no bearer token); alice's principal is bound to her OIDC subject."""
    created = client.post(
        "/api/v1/principals",
        json={
            "name": "alice",
            "kind": "user",
            "roles": [{"role": "auditor", "domain": "*"}],
            "oidc_subject": "alice-sub",
        },
    )
    assert created.status_code == 201, created.text
    with TestClient(create_app(settings, executors), raise_server_exceptions=False) as web:
        yield web


def _to_provider(browser: TestClient) -> str:
    """Start the login; returns the provider URL the dashboard sends the browser to."""
    started = browser.get("/login/oidc", follow_redirects=False)
    assert started.status_code == 303, started.text
    location: str = started.headers["location"]
    return location


def _back_from_provider(browser: TestClient, authorize_url: str) -> Any:
    """The provider logs its user in and sends the browser back to the dashboard."""
    answered = httpx.get(authorize_url, follow_redirects=False)
    assert answered.status_code == 302, answered.text
    back = urlsplit(answered.headers["location"])
    return browser.get(f"{back.path}?{back.query}", follow_redirects=False)


def test_a_person_logs_in_with_oidc_and_sees_the_dashboard(
    browser: TestClient, provider: FakeProvider
) -> None:
    # Given the login page, which offers OIDC
    assert "/login/oidc" in browser.get("/login").text
    # When alice goes to the provider, which sends her back with a code
    authorize_url = _to_provider(browser)
    asked = parse_qs(urlsplit(authorize_url).query)
    landed = _back_from_provider(browser, authorize_url)
    # Then the dashboard asked for a PKCE S256 code with state and nonce, started a strict
    # session (not carrying the ID token) and moves on to the inventory by itself
    assert authorize_url.startswith(f"{provider.url}/authorize?")
    assert asked["code_challenge_method"] == ["S256"]
    assert asked["redirect_uri"] == ["http://testserver/login/oidc/callback"]
    assert asked["state"]
    assert asked["nonce"]
    assert landed.status_code == 200, landed.text
    assert 'http-equiv="refresh"' in landed.text
    cookie = next(
        c for c in landed.headers.get_list("set-cookie") if c.startswith("govplane_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    page = browser.get("/", follow_redirects=False)
    assert page.status_code == 200
    assert "alice" in page.text
    assert browser.get("/audit", follow_redirects=False).status_code == 200


def test_the_session_ends_when_the_id_token_expires(
    browser: TestClient, provider: FakeProvider
) -> None:
    provider.lifetime_seconds = 2
    assert _back_from_provider(browser, _to_provider(browser)).status_code == 200
    assert browser.get("/", follow_redirects=False).status_code == 200
    time.sleep(2.5)
    assert browser.get("/", follow_redirects=False).headers["location"] == "/login"


@pytest.mark.parametrize(
    ("steer", "problem"),
    [
        (lambda idp: setattr(idp, "user", "mallory-sub"), "no principal is bound to OIDC"),
        (lambda idp: setattr(idp, "nonce", "replayed"), "not issued for this login (nonce)"),
        (lambda idp: setattr(idp, "audience", "another-app"), "audience mismatch"),
        (lambda idp: setattr(idp, "lifetime_seconds", -3600), "token expired"),
    ],
    ids=["unbound-subject", "other-nonce", "other-audience", "expired"],
)
def test_an_id_token_that_does_not_check_out_logs_nobody_in(
    browser: TestClient, provider: FakeProvider, steer: Any, problem: str
) -> None:
    steer(provider)
    refused = _back_from_provider(browser, _to_provider(browser))
    assert refused.status_code == 401
    assert problem in refused.text
    assert browser.get("/", follow_redirects=False).headers["location"] == "/login"


def test_a_callback_that_is_not_the_login_started_here_is_refused(
    browser: TestClient, provider: FakeProvider
) -> None:
    # A changed state (login CSRF), no login in progress, and the provider's own refusal each
    # log nobody in
    answered = httpx.get(_to_provider(browser), follow_redirects=False)
    back = parse_qs(urlsplit(answered.headers["location"]).query)
    forged = browser.get(
        "/login/oidc/callback", params={"code": back["code"][0], "state": "forged"}
    )
    assert forged.status_code == 401
    assert "state does not match" in forged.text
    with TestClient(browser.app, raise_server_exceptions=False) as stranger:
        unstarted = stranger.get("/login/oidc/callback", params=back)
        assert unstarted.status_code == 401
        assert "no OIDC login was started here" in unstarted.text
    _to_provider(browser)
    denied = browser.get("/login/oidc/callback", params={"error": "access_denied"})
    assert denied.status_code == 401
    assert "access_denied" in denied.text
    assert browser.get("/", follow_redirects=False).headers["location"] == "/login"


def test_a_code_is_redeemed_once(browser: TestClient, provider: FakeProvider) -> None:
    # Given a login completed with its code
    answered = httpx.get(_to_provider(browser), follow_redirects=False)
    back = parse_qs(urlsplit(answered.headers["location"]).query)
    assert browser.get("/login/oidc/callback", params=back).status_code == 200
    # When the same code comes back with the state of a new login
    state = parse_qs(urlsplit(_to_provider(browser)).query)["state"][0]
    replayed = browser.get("/login/oidc/callback", params={"code": back["code"][0], "state": state})
    # Then the provider refuses it, and the refusal says so
    assert replayed.status_code == 401
    assert "token endpoint refused the code (400)" in replayed.text


def test_without_an_oidc_client_the_dashboard_offers_tokens_only(
    client: TestClient, settings: Settings, executors: dict[RunKind, RecordingExecutor]
) -> None:
    plain = settings.model_copy(update={"oidc_client_id": None})
    with TestClient(create_app(plain, executors), raise_server_exceptions=False) as web:
        assert "/login/oidc" not in web.get("/login").text
        assert web.get("/login/oidc", follow_redirects=False).status_code == 404

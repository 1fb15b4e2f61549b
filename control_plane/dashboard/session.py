"""Dashboard sessions: a signed cookie that names who logged in, by API token or by OIDC.

The cookie holds the token's digest (never the token), or the OIDC subject and when its ID
token expires, and a CSRF secret, signed with the session key and dated. Each page looks the
viewer up again, so a revoked or expired token, or a principal no longer bound to the subject,
ends its sessions at once; an OIDC session ends when its ID token expires. Every form carries
the CSRF secret; a POST without it is refused. An OIDC login in progress keeps its state, nonce
and PKCE verifier in a short-lived signed cookie of its own.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from control_plane.api.deps import Services, bind_guard, caller_of
from control_plane.authorization import Guard
from control_plane.errors import ProblemError
from control_plane.identity.oidc_login import PendingLogin
from control_plane.identity.tokens import hash_token, principal_for_token, principal_for_token_hash
from control_plane.principals import principal_for_oidc_subject
from control_plane.store.models import Principal

SESSION_COOKIE = "govplane_session"
LOGIN_COOKIE = "govplane_login"
FLASH_COOKIE = "govplane_flash"
OIDC_COOKIE = "govplane_oidc"
_SALT = "govplane.dashboard.session"
_FLASH_SALT = "govplane.dashboard.flash"
_OIDC_SALT = "govplane.dashboard.oidc"
_FLASH_SECONDS = 120
_OIDC_SECONDS = 600


class LoginRequiredError(ProblemError):
    """No valid session: the dashboard sends the viewer to the login page."""

    def __init__(self) -> None:
        super().__init__(401, "Unauthorized", "log in with an API token")


class CsrfError(ProblemError):
    """A form came without the session's CSRF secret."""

    def __init__(self) -> None:
        super().__init__(403, "Forbidden", "the form's CSRF token is missing or wrong")


@dataclass(frozen=True)
class Viewer:
    """The logged-in viewer of a page: its guard and the CSRF secret its forms carry."""

    guard: Guard
    csrf: str


@dataclass(frozen=True)
class Flash:
    """The outcome of a form, shown once on the page the form redirects to."""

    message: str
    ok: bool


class Sessions:
    """Signs, reads and ends dashboard sessions."""

    def __init__(self, secret: str | None, max_age_seconds: int) -> None:
        key = secret or secrets.token_hex(32)
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)
        self._flashes = URLSafeTimedSerializer(key, salt=_FLASH_SALT)
        self._pending = URLSafeTimedSerializer(key, salt=_OIDC_SALT)
        self._max_age = max_age_seconds

    def login(self, request: Request, response: Response, services: Services, token: str) -> bool:
        """Start a session for ``token`` if it is a valid API token; False otherwise."""
        with services.db.session() as session:
            if principal_for_token(session, token.strip()) is None:
                return False
        value = self._serializer.dumps(
            {"token": hash_token(token.strip()), "csrf": secrets.token_urlsafe(32)}
        )
        _set_cookie(request, response, SESSION_COOKIE, value, self._max_age)
        return True

    def login_oidc(
        self, request: Request, response: Response, services: Services, subject: str, until: int
    ) -> bool:
        """Start a session for the principal bound to OIDC ``subject``, ending at ``until``
        (epoch seconds) at the latest; False if no principal is bound to it."""
        with services.db.session() as session:
            if principal_for_oidc_subject(session, subject) is None:
                return False
        value = self._serializer.dumps(
            {"oidc": subject, "until": until, "csrf": secrets.token_urlsafe(32)}
        )
        age = max(1, min(self._max_age, until - int(time.time())))
        _set_cookie(request, response, SESSION_COOKIE, value, age)
        return True

    def viewer(self, request: Request, services: Services) -> Viewer:
        """The session's viewer.

        Raises:
            LoginRequiredError: no session, a bad or old signature, or a token no longer valid.
        """
        try:
            data = self._serializer.loads(
                request.cookies.get(SESSION_COOKIE, ""), max_age=self._max_age
            )
        except BadSignature as exc:
            raise LoginRequiredError() from exc
        with services.db.session() as session:
            if "oidc" in data:
                subject, expired = str(data["oidc"]), int(data.get("until", 0)) <= time.time()
                principal = None if expired else principal_for_oidc_subject(session, subject)
            else:
                principal_id = principal_for_token_hash(session, str(data.get("token", "")))
                principal = session.get(Principal, principal_id) if principal_id else None
            if principal is None:
                raise LoginRequiredError()
            guard = bind_guard(request, services, session, caller_of(principal))
        return Viewer(guard, str(data["csrf"]))

    @staticmethod
    def logout(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")

    def keep_pending(self, request: Request, response: Response, pending: PendingLogin) -> None:
        """Keep an OIDC login in progress until the provider sends the browser back. The
        cookie is ``SameSite=Lax``: the way back is a navigation from the provider's site."""
        value = self._pending.dumps(pending.to_json())
        _set_cookie(request, response, OIDC_COOKIE, value, _OIDC_SECONDS, samesite="lax")

    def pending(self, request: Request) -> PendingLogin | None:
        """The OIDC login in progress, if one was started here in the last ten minutes."""
        try:
            data = self._pending.loads(request.cookies.get(OIDC_COOKIE, ""), max_age=_OIDC_SECONDS)
        except BadSignature:
            return None
        return PendingLogin.from_json(data)

    def flash(self, request: Request, response: Response, flash: Flash) -> None:
        """Keep ``flash`` for the next page, signed so only the control plane can say it."""
        value = self._flashes.dumps({"message": flash.message, "ok": flash.ok})
        _set_cookie(request, response, FLASH_COOKIE, value, _FLASH_SECONDS)

    def flashed(self, request: Request) -> Flash | None:
        """The flash kept for this page, if any (the page deletes the cookie)."""
        try:
            data = self._flashes.loads(
                request.cookies.get(FLASH_COOKIE, ""), max_age=_FLASH_SECONDS
            )
        except BadSignature:
            return None
        return Flash(str(data["message"]), bool(data["ok"]))


def check_csrf(expected: str, given: str) -> None:
    """Refuse a form whose CSRF token is not the expected one."""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfError()


def login_page(request: Request, render: Callable[[str], Response]) -> Response:
    """The login form, rendered with its CSRF secret, which its own cookie keeps until login
    (a double submit: a cross-site page can neither read nor set that cookie)."""
    value = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = render(value)
    _set_cookie(request, response, LOGIN_COOKIE, value, 3600)
    return response


def _set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    age: int,
    samesite: Literal["strict", "lax"] = "strict",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/",
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https",
    )

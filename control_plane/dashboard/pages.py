"""The dashboard's pages: server-rendered HTML behind the same login and policy as the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from audit import MEDIA_TYPES, ExportFilter, ExportFormat
from control_plane.api.approvals import record_decision
from control_plane.api.deps import ServicesDep
from control_plane.api.fields import PathKey, Text
from control_plane.api.lineage import visible_graph
from control_plane.api.pagination import Cursor
from control_plane.approvals import DecisionKind
from control_plane.dashboard import queries
from control_plane.dashboard.pictures import (
    BAR_WIDTH,
    NODE_HEIGHT,
    NODE_WIDTH,
    bars,
    lineage_picture,
)
from control_plane.dashboard.session import (
    FLASH_COOKIE,
    LOGIN_COOKIE,
    OIDC_COOKIE,
    Flash,
    LoginRequiredError,
    Sessions,
    Viewer,
    check_csrf,
    login_page,
)
from control_plane.errors import ConflictError, ForbiddenError, NotFoundError, ProblemError
from control_plane.identity.oidc_login import OidcLogin, OidcLoginError
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.maturity import readable_rubrics, score
from lineage import Direction

TAG = "dashboard"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
_ENV.globals.update(node_width=NODE_WIDTH, node_height=NODE_HEIGHT, bar_width=BAR_WIDTH)

router = APIRouter(tags=[TAG], include_in_schema=False, default_response_class=HTMLResponse)


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def get_viewer(request: Request, services: ServicesDep) -> Viewer:
    return _sessions(request).viewer(request, services)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(name).render(**context), status_code=status_code)


def _page(viewer: Viewer, name: str, **context: Any) -> HTMLResponse:
    return render(name, viewer=viewer.guard.caller, csrf=viewer.csrf, **context)


def render_problem(request: Request, exc: ProblemError) -> Response | None:
    """The dashboard's answer to an error on one of its pages; None for API routes."""
    route = request.scope.get("route")
    if TAG not in getattr(route, "tags", ()):
        return None
    if isinstance(exc, LoginRequiredError):
        return RedirectResponse("/login", status_code=303)
    return render("error.html", exc.status, status=exc.status, title=exc.title, detail=exc.detail)


def _oidc_login(request: Request) -> OidcLogin:
    oidc: OidcLogin | None = request.app.state.oidc_login
    if oidc is None:
        raise NotFoundError("OIDC login is not configured")
    return oidc


def _login_form(request: Request, status_code: int = 200, error: str | None = None) -> Response:
    oidc = request.app.state.oidc_login is not None
    return login_page(
        request, lambda csrf: render("login.html", status_code, csrf=csrf, oidc=oidc, error=error)
    )


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_form(request)


@router.get("/login/oidc")
def oidc_login(request: Request) -> Response:
    """Send the browser to the OIDC provider, keeping the login's secrets in a cookie."""
    url, pending = _oidc_login(request).start(str(request.url_for("oidc_callback")))
    response = RedirectResponse(url, status_code=303)
    _sessions(request).keep_pending(request, response, pending)
    return response


@router.get("/login/oidc/callback", name="oidc_callback")
def oidc_callback(
    request: Request,
    services: ServicesDep,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """Where the provider sends the browser back: check the login, then start a session."""
    oidc, sessions = _oidc_login(request), _sessions(request)
    pending = sessions.pending(request)
    try:
        if error is not None:
            raise OidcLoginError(f"the identity provider answered {error!r}")
        if pending is None:
            raise OidcLoginError("no OIDC login was started here in the last ten minutes")
        if code is None or state is None:
            raise OidcLoginError("the identity provider sent no code")
        identity, until = oidc.finish(pending, state, code, str(request.url_for("oidc_callback")))
        # A page that moves on by itself: a redirect would carry on the provider's cross-site
        # navigation, on which the browser does not send the strict session cookie.
        response: Response = render("signed_in.html")
        if not sessions.login_oidc(request, response, services, identity.subject, until):
            raise OidcLoginError(f"no principal is bound to OIDC subject {identity.subject}")
    except OidcLoginError as exc:
        response = _login_form(request, 401, str(exc))
    response.delete_cookie(OIDC_COOKIE, path="/")
    return response


@router.post("/login")
def login(
    request: Request,
    services: ServicesDep,
    token: Annotated[str, Form(max_length=512)],
    csrf: Annotated[str, Form(max_length=128)],
) -> Response:
    check_csrf(request.cookies.get(LOGIN_COOKIE, ""), csrf)
    response = RedirectResponse("/", status_code=303)
    if not _sessions(request).login(request, response, services, token):
        return _login_form(request, 401, "unknown, revoked or expired token")
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(viewer: ViewerDep, csrf: Annotated[str, Form(max_length=128)]) -> Response:
    check_csrf(viewer.csrf, csrf)
    response = RedirectResponse("/login", status_code=303)
    Sessions.logout(response)
    return response


@router.get("/")
def inventory(
    services: ServicesDep,
    viewer: ViewerDep,
    datasets_after: Cursor = None,
    models_after: Cursor = None,
    runs_after: Cursor = None,
) -> HTMLResponse:
    guard = viewer.guard
    with services.db.session() as session:
        datasets = queries.datasets(session, guard, datasets_after)
        models, versions = queries.models(session, guard, models_after)
        runs = queries.runs(session, guard, runs_after)
        return _page(
            viewer,
            "inventory.html",
            datasets=datasets,
            models=models,
            versions=versions,
            runs=runs,
        )


@router.get("/runs/{run_id}")
def run_page(
    run_id: Annotated[str, PathParam(max_length=32)],
    services: ServicesDep,
    viewer: ViewerDep,
) -> HTMLResponse:
    with services.db.session() as session:
        detail = queries.run_detail(session, viewer.guard, run_id)
        return _page(viewer, "run.html", detail=detail)


@router.get("/approvals")
def approvals(
    request: Request, services: ServicesDep, viewer: ViewerDep, after: Cursor = None
) -> HTMLResponse:
    flash = _sessions(request).flashed(request)
    with services.db.session() as session:
        pending = queries.pending_approvals(session, viewer.guard, after)
        page = _page(viewer, "approvals.html", pending=pending, flash=flash)
    if flash is not None:
        page.delete_cookie(FLASH_COOKIE, path="/")  # shown once
    return page


@router.post("/approvals/{approval_id}/decisions")
def decide_approval(
    request: Request,
    approval_id: PathKey,
    services: ServicesDep,
    viewer: ViewerDep,
    decision: Annotated[DecisionKind, Form()],
    csrf: Annotated[str, Form(max_length=128)],
    comment: Annotated[Text, Form()] = "",
) -> Response:
    """Decide through the API's own path; the outcome or the refusal is shown on the list."""
    check_csrf(viewer.csrf, csrf)
    try:
        result, _ = record_decision(services, viewer.guard, approval_id, decision, comment)
    except (ForbiddenError, ConflictError) as refusal:
        if refusal.before_response is not None:
            refusal.before_response()  # the refusal is on record before it is shown
        flash = Flash(f"Refused: {refusal.detail}", ok=False)
    else:
        approval = result.approval
        flash = Flash(
            f"You decided {result.decision.decision} on {approval.target}: "
            f"the approval is {approval.status}",
            ok=True,
        )
    response = RedirectResponse("/approvals", status_code=303)
    _sessions(request).flash(request, response, flash)
    return response


@router.get("/privacy")
def privacy(services: ServicesDep, viewer: ViewerDep, after: Cursor = None) -> HTMLResponse:
    with services.db.session() as session:
        lines = queries.budgets(session, viewer.guard, after)
        return _page(viewer, "privacy.html", budgets=lines)


@router.get("/lineage")
def lineage_page(
    services: ServicesDep,
    viewer: ViewerDep,
    node: Annotated[str | None, Query(max_length=2000)] = None,
    depth: Annotated[int, Query(ge=1, le=10)] = 3,
) -> HTMLResponse:
    picture, hidden = None, 0
    if node:
        found, visible = visible_graph(services, viewer.guard, node, Direction.BOTH, depth, None)
        nodes = [n for n in found.nodes if n.ref.id in visible]
        picture = lineage_picture(node, nodes, found.edges)
        hidden = len(found.nodes) - len(nodes)
    return _page(
        viewer, "lineage.html", node=node or "", depth=depth, picture=picture, hidden=hidden
    )


@router.get("/maturity")
def maturity_page(services: ServicesDep, viewer: ViewerDep) -> HTMLResponse:
    rubrics = readable_rubrics(viewer.guard)
    with services.db.session() as session:
        scored = score(session, viewer.guard.bundle, rubrics)
    charts = {
        name: {
            "levels": bars(
                [
                    (d, float(n), float(scored[name]["of"]))
                    for d, n in scored[name]["dimensions"].items()
                ]
                or [("overall", float(scored[name]["reached"]), float(scored[name]["of"]))]
            ),
            "nist": bars(
                (f, float(c["met"]), float(c["total"])) for f, c in scored[name]["nist"].items()
            ),
            "eu": bars(
                (a, float(c["met"]), float(c["total"]))
                for a, c in scored[name]["eu_ai_act"].items()
                if c["total"]
            ),
        }
        for name in rubrics
    }
    return _page(viewer, "maturity.html", scored=scored, rubrics=rubrics, charts=charts)


@router.get("/audit")
def audit_page(services: ServicesDep, viewer: ViewerDep) -> HTMLResponse:
    guard = viewer.guard
    guard.require("read", "audit:*", PLATFORM_DOMAIN)
    verification = services.audit.verify_recorded(guard.caller.name, guard.request_id)
    checkpoint = services.audit.checkpoint()
    return _page(viewer, "audit.html", verification=verification, checkpoint=checkpoint)


@router.get("/audit/export")
def audit_export(
    services: ServicesDep, viewer: ViewerDep, format: ExportFormat = "jsonl"
) -> StreamingResponse:
    viewer.guard.require("read", "audit:*", PLATFORM_DOMAIN)
    return StreamingResponse(
        services.audit.export(format, ExportFilter(None, None, None, None, None)),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
    )

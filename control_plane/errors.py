"""RFC 9457 problem details: the one error shape of the API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger(__name__)


class Problem(BaseModel):
    """The problem+json body, as the OpenAPI schema documents it."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the problem+json answers a route may give, by status."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


class ProblemError(Exception):
    """An error the API reports as problem+json.

    Args:
        status: HTTP status code.
        title: short, fixed summary of the problem type.
        detail: what went wrong in this occurrence.
        extensions: extra members (for example the policy rule that denied a request).

    Attributes:
        before_response: work that must succeed before the error is answered (recording a
            refusal in the audit trail); if it raises a ``ProblemError``, that is answered.
    """

    def __init__(self, status: int, title: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extensions = extensions
        self.before_response: Callable[[], object] | None = None


class NotFoundError(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(404, "Not Found", detail)


class ConflictError(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, "Conflict", detail)


class InvalidInputError(ProblemError):
    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(422, "Unprocessable Content", detail, **extensions)


class UnauthenticatedError(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(401, "Unauthorized", detail)


class ForbiddenError(ProblemError):
    def __init__(self, detail: str, rule: str, bundle_version: str) -> None:
        super().__init__(403, "Forbidden", detail, rule=rule, bundle_version=bundle_version)


def problem_response(
    request: Request, status: int, title: str, detail: str, **extensions: Any
) -> JSONResponse:
    """A problem+json response for ``request``."""
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


def install_problem_handlers(
    app: FastAPI, pages: Callable[[Request, ProblemError], Response | None] | None = None
) -> None:
    """Render every error of ``app`` as problem+json.

    Args:
        app: the application.
        pages: answers a problem on a web page instead, when it returns a response.
    """

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        if exc.before_response is not None:
            try:
                await run_in_threadpool(exc.before_response)
            except ProblemError as failure:
                exc = failure
        page = pages(request, exc) if pages is not None else None
        if page is not None:
            return page
        return problem_response(request, exc.status, exc.title, exc.detail, **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(error["type"] == "json_invalid" for error in errors):
            return problem_response(
                request, 400, "Bad Request", "the request body is not valid JSON", errors=errors
            )
        detail = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors
        )
        return problem_response(request, 422, "Unprocessable Content", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return problem_response(request, exc.status_code, title, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            request, 500, "Internal Server Error", "the server could not complete the request"
        )

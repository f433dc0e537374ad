"""Every 4xx/5xx leaves firewatch as RFC 9457 ``application/problem+json``.

Handlers never echo exception text or request input: validation errors name the
field and the rule, not the rejected value (which may be a secret), and unexpected
errors are logged server-side and answered with a bare 500.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import asyncpg
import redis.exceptions
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from firewatch.errors import PROBLEM_BASE, FirewatchError
from firewatch.http.responses import ProblemResponse
from firewatch.http.security import response_headers
from firewatch.runtime.database import CONNECTION_LOST_ERRORS, connection_lost

log = structlog.get_logger(__name__)

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation",
    428: "precondition-required",
    429: "rate-limited",
    500: "internal",
    503: "unavailable",
}


# How errors are described in /openapi.json: every 4xx/5xx of every route is a problem
# ("default"), and every 422 names the fields it refuses (``errors``, at least one;
# UnprocessableError cannot be raised without), so that a client generated from the
# description parses an error as what it is (FastAPI's own 422 is application/json
# with a ``detail`` list, which firewatch never sends).
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}
_FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["field"],
    "properties": {"field": {"type": "string"}},
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Invalid request: RFC 9457 problem, naming each invalid field",
        "content": {
            "application/problem+json": {
                "schema": {
                    **_PROBLEM_SCHEMA,
                    "required": [*_PROBLEM_SCHEMA["required"], "errors"],
                    "properties": {
                        **_PROBLEM_SCHEMA["properties"],
                        "errors": {
                            "type": "array",
                            "minItems": 1,
                            "items": _FIELD_ERROR_SCHEMA,
                            "description": "What was refused: field is the dotted location "
                            "(body.password, query.from, header.if-match, path.name, "
                            "body.alerts.0.labels)",
                        },
                    },
                }
            }
        },
    },
    "default": {
        "description": "Any other error: RFC 9457 problem details",
        "content": {"application/problem+json": {"schema": _PROBLEM_SCHEMA}},
    },
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _SLUGS.get(status, "error")),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


async def _firewatch_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, FirewatchError)
    headers = dict(exc.headers)
    if "retry_after" in exc.extensions:
        headers["Retry-After"] = str(exc.extensions["retry_after"])
    return problem(
        exc.status,
        exc.detail,
        title=exc.title,
        slug=exc.slug,
        instance=request.url.path,
        headers=headers or None,
        **exc.extensions,
    )


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(
        exc.status_code,
        detail,
        instance=request.url.path,
        headers=dict(exc.headers) if exc.headers else None,
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            {"loc": loc, "field": ".".join(loc), "type": err.get("type"), "msg": err.get("msg")}
        )
    return out


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(
            400,
            "the request body is not valid JSON",
            slug="malformed-json",
            instance=request.url.path,
        )
    return problem(
        422,
        f"{len(errors)} field(s) failed validation",
        title="Invalid request",
        slug="validation",
        instance=request.url.path,
        errors=errors,
    )


async def _unavailable(request: Request, exc: Exception) -> ProblemResponse:
    if isinstance(exc, _MISUSE_PRONE) and not connection_lost(exc):
        return await _unexpected(request, exc)  # our bug, not a backend that went away
    log.warning("dependency unavailable", error_type=type(exc).__name__, path=request.url.path)
    return problem(
        503,
        "a backing service is unavailable or overloaded; retry shortly",
        slug="unavailable",
        instance=request.url.path,
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> ProblemResponse:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    # Starlette sends this answer from its outermost layer, past SecurityHeadersMiddleware:
    # it must carry the security headers itself.
    settings = request.app.state.settings
    headers = response_headers(
        request.scope,
        trusted_proxies=settings.trusted_proxies,
        hsts_max_age=settings.hsts_max_age,
    )
    response = problem(500, "an unexpected error occurred", instance=request.url.path)
    for name, value in headers:
        response.headers[name.decode()] = value.decode()
    return response


# Registered as unavailable, but a 503 only when they say the connection is gone.
_MISUSE_PRONE = (asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError)

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    *CONNECTION_LOST_ERRORS,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
)


def install(app: FastAPI) -> None:
    app.add_exception_handler(FirewatchError, _firewatch_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
